"""torchrun with 2 gloo processes trains to the same parameters as one process on the same global batches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_recipe_dict

from seq2seq import checkpoint as ckpt_io
from seq2seq.config import load_config
from seq2seq.data import download
from seq2seq.tokenizer import train_tokenizers

QUIET = lambda *_: None  # noqa: E731
# dropout off: each rank draws its own masks, so only the deterministic model can match exactly
TRAIN = {"max_steps": 4, "valid_every": 4, "log_every": 2, "batch_tokens": 600, "lr": 0.001}
MODEL = {"dropout": 0.0}


def _recipe(tmp: Path, name: str, **train) -> Path:
    recipe = tiny_recipe_dict(tmp, train={**TRAIN, **train}, model=MODEL)
    recipe["run_dir"] = str(tmp / name)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = (
        [sys.executable, "-m", "seq2seq", *args]
        if nproc == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "seq2seq",
            *args,
        ]
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = load_config(_recipe(tmp, "single"))
    download(cfg, log=QUIET)
    train_tokenizers(cfg, log=QUIET)
    for name in ("ddp", "accum"):  # same tokenizer for every run
        shutil.copytree(tmp / "single" / "spm", tmp / name / "spm")
    return tmp


def _params(run: Path) -> dict[str, torch.Tensor]:
    return ckpt_io.load(run / "checkpoints" / "last.pt")["model"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(prepared: Path):
    single = _run(["train", str(_recipe(prepared, "single"))])
    ddp = _run(["train", str(_recipe(prepared, "ddp"))], nproc=2)
    assert "x 2 processes" in ddp.stdout
    a, b = _params(prepared / "single"), _params(prepared / "ddp")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    pa = ckpt_io.load(prepared / "single" / "checkpoints" / "last.pt")["progress"]
    pb = ckpt_io.load(prepared / "ddp" / "checkpoints" / "last.pt")["progress"]
    assert (pa["step"], pa["epoch"], pa["batch"]) == (pb["step"], pb["epoch"], pb["batch"])
    # the dev loss, computed on rank 0 alone, agrees too
    dev = lambda out: [x for x in out.splitlines() if x.startswith("validation step 4")][0]  # noqa: E731
    assert dev(single.stdout).split("BLEU")[0][:40] == dev(ddp.stdout).split("BLEU")[0][:40]


@pytest.mark.slow
def test_gradient_accumulation_matches_a_batch_twice_as_large(prepared: Path):
    """accum_steps=2 over batches of N tokens = one step over the union of those two batches."""
    cfg = load_config(_recipe(prepared, "accum", accum_steps=2))
    from seq2seq.training import build_trainer

    trainer = build_trainer(cfg, log=QUIET)
    from seq2seq.batches import make_batches

    src_lens = [len(s) for s in trainer.data.train_src]
    tgt_lens = [len(t) for t in trainer.data.train_tgt]
    batches = make_batches(src_lens, tgt_lens, cfg.train.batch_tokens, cfg.train.seed, 0)
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.train()
    trainer._train_step(batches[:2])
    two = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.load_state_dict(before)
    trainer.parts.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=cfg.train.lr)
    trainer._train_step([batches[0] + batches[1]])
    one = trainer.model.state_dict()
    worst = max((two[k] - one[k]).abs().max().item() for k in one)
    assert worst < 1e-6, worst
