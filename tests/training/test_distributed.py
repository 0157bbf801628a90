"""torchrun with 2 gloo processes trains to the same parameters as one process accumulating the same batches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
import torch
import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.load import load_config
from seq2seq.data.corpus import download
from seq2seq.data.tokenizer import train_tokenizers
from seq2seq.runs import checkpoint as ckpt_io

QUIET = lambda *_: None  # noqa: E731
# dropout off: each rank draws its own masks, so only the deterministic model can match exactly
TRAIN = {"max_steps": 4, "valid_every": 4, "log_every": 2, "batch_tokens": 600, "lr": 0.001, "device": "cpu"}
MODEL = {"dropout": 0.0}


def _recipe(tmp: Path, name: str, **train) -> Path:
    recipe = tiny_recipe_dict(tmp, train={**TRAIN, **train}, model=MODEL)
    recipe["run_dir"] = str(tmp / name)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(args: list[str], nproc: int = 1, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """``seq2seq *args`` in ``nproc`` processes (torchrun) with ``env`` added to this one's."""
    # PYTHONFAULTHANDLER: an abort shows every thread
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
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
def test_two_gloo_processes_match_one_process_accumulating_two_batches(prepared: Path):
    """batch_tokens is per device: each rank takes whole batches of its own, so a step of 2 processes
    sees 2 x batch_tokens, exactly the batches one process accumulates with accum_steps=2."""
    single = _run(["train", str(_recipe(prepared, "single", accum_steps=2))])
    ddp = _run(["train", str(_recipe(prepared, "ddp"))], nproc=2)
    assert "x 2 processes" in ddp.stdout
    assert "global batch 1,200 tokens = 600 per device x 2 devices x 1 accumulation step" in ddp.stdout
    assert "global batch 1,200 tokens = 600 per device x 1 device x 2 accumulation steps" in single.stdout
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
@pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None, reason="inductor needs a C++ compiler (g++ or $CXX)"
)
def test_two_gloo_processes_train_the_compiled_loop_as_one_eager_process(prepared: Path, tmp_path: Path):
    """train.compile=default (inductor, generating C++ on the CPU) under DDP: its graphs' own compile,
    validation through them, and the same parameters as one eager process accumulating the 2 batches."""
    steps = {"max_steps": 2, "valid_every": 2}
    _run(["train", str(_with_spm(prepared, "eager2", accum_steps=2, **steps))])
    recipe = _with_spm(prepared, "compiled2", compile="default", **steps)
    _run(["train", str(recipe)], nproc=2, env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path)})  # compiles anew
    a, b = _params(prepared / "eager2"), _params(prepared / "compiled2")
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    assert any(tmp_path.rglob("*.so")), "inductor built its C++ kernels"


@pytest.mark.slow
def test_gradient_accumulation_matches_a_batch_twice_as_large(prepared: Path):
    """accum_steps=2 over batches of N tokens = one step over the union of those two batches."""
    cfg = load_config(_recipe(prepared, "accum", accum_steps=2))
    from seq2seq.training.setup import build_trainer

    trainer = build_trainer(cfg, log=QUIET)
    from seq2seq.data.batches import make_batches

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


# ---- several processes on the GPU path's rules (gloo stands in for NCCL) -------------------------
# The ranks are started as torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), but
# one by one, so that a test can signal one of them, give each its own run directory (two nodes
# without a shared filesystem) and read each one's exit status and output.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(commands: list[list[str]], folder: Path, name: str) -> list[subprocess.Popen]:
    """One process per command line (rank r of len(commands)); stdout/stderr in folder/name.rank<r>.*"""
    port, procs = _free_port(), []
    for rank, args in enumerate(commands):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONFAULTHANDLER": "1",
            "WORLD_SIZE": str(len(commands)),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(len(commands)),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        with (
            open(folder / f"{name}.rank{rank}.out", "w") as out,
            open(folder / f"{name}.rank{rank}.err", "w") as err,
        ):
            procs.append(
                subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, text=True, env=env)
            )
    return procs


def _finish(procs: list[subprocess.Popen], folder: Path, name: str, timeout: float = 300) -> list[tuple]:
    """(exit status, stdout, stderr) of every rank; a rank still running after ``timeout`` fails the test
    (a hang is what these tests exist to catch) and is killed."""
    deadline = time.time() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"{name}: a rank hung (exit statuses {[p.poll() for p in procs]})")
    read = lambda rank, kind: (folder / f"{name}.rank{rank}.{kind}").read_text()  # noqa: E731
    return [(p.returncode, read(r, "out"), read(r, "err")) for r, p in enumerate(procs)]


def _wait_for(path: Path, text: str, procs: list[subprocess.Popen], timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not (path.is_file() and text in path.read_text()):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for proc in procs:
                proc.kill()
            pytest.fail(f"{text!r} never appeared in {path}")
        time.sleep(0.1)


def _with_spm(prepared: Path, name: str, **train) -> Path:
    recipe = _recipe(prepared, name, **train)
    shutil.copytree(prepared / "single" / "spm", prepared / name / "spm")
    return recipe


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="sends signals")
@pytest.mark.parametrize("signum,to_rank,status", [(signal.SIGTERM, 1, 143), (signal.SIGINT, 0, 130)])
def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step(prepared, signum, to_rank, status):
    """Each rank may see a signal at another step, or only one rank sees it: all agree after every step,
    rank 0 saves once and every rank exits with the signal's status (no rank left waiting in a collective;
    resuming under DDP: test_ranks_draw_different_masks_after_a_resume)."""
    name = f"sig{int(signum)}"
    recipe = _with_spm(prepared, name, max_steps=100000, valid_every=100000, log_every=1)
    command = ["-m", "seq2seq", "train", str(recipe)]
    procs = _start([command, command], prepared, name)
    _wait_for(prepared / name / "train.log", "step 3 ", procs)
    procs[to_rank].send_signal(signum)
    results = _finish(procs, prepared, name)
    assert [r[0] for r in results] == [status, status], results
    assert not any("Traceback" in err for _, _, err in results), results
    words = "interrupted" if signum == signal.SIGINT else "terminated by SIGTERM"
    (line,) = [x for x in results[0][1].splitlines() if f"{words} at step" in x]
    saved = ckpt_io.load(prepared / name / "checkpoints" / "last.pt")
    step = saved["progress"]["step"]
    assert f"at step {step}:" in line and len(saved["rng"]) == 2
    if signum == signal.SIGINT:
        assert [err.strip().splitlines() for _, _, err in results] == [["interrupted"], ["interrupted"]]


@pytest.mark.slow
def test_a_run_dir_that_is_not_shared_stops_every_rank_with_one_line(prepared):
    """Two nodes, each with its own disk at run_dir: only rank 0 would build bin/ and write checkpoints.
    Every rank stops before training, with the same one-line error."""
    node0, node1 = (
        _with_spm(prepared, "node0"),
        _with_spm(prepared, "node1"),
    )  # one path each, as on two disks
    procs = _start(
        [["-m", "seq2seq", "train", str(node0)], ["-m", "seq2seq", "train", str(node1)]], prepared, "nodes"
    )
    results = _finish(procs, prepared, "nodes")
    assert [r[0] for r in results] == [2, 2], results
    for _, _, err in results:
        (line,) = err.strip().splitlines()
        assert line.startswith("error: run_dir ") and "is not shared between the processes: rank 1 " in line
        assert "Traceback" not in err
    assert not (prepared / "node0" / "checkpoints").exists() and not (prepared / "node1" / "bin").exists()
    assert not list((prepared / "node0").glob(".shared-check-*")), "the marker is removed"


@pytest.mark.slow
def test_ranks_draw_different_masks_after_a_resume(prepared):
    """Each rank saves its own generator state and restores it: after a resume the ranks' dropout and
    word-dropout masks differ (restoring rank 0's state everywhere made them identical)."""
    recipe = tiny_recipe_dict(
        prepared,
        train={**TRAIN, "max_steps": 2, "valid_every": 2},
        model={"dropout": 0.3, "word_dropout": 0.2},
    )
    recipe["run_dir"] = str(prepared / "masks")
    path = prepared / "masks.yaml"
    path.write_text(yaml.safe_dump(recipe))
    shutil.copytree(prepared / "single" / "spm", prepared / "masks" / "spm")
    train = ["-m", "seq2seq", "train", str(path)]
    assert [r[0] for r in _finish(_start([train, train], prepared, "masks"), prepared, "masks")] == [0, 0]
    draw = [str(Path(__file__).parents[1] / "fixtures" / "rank_masks.py"), str(path), str(prepared)]
    results = _finish(_start([draw, draw], prepared, "draw"), prepared, "draw")
    assert [r[0] for r in results] == [0, 0], results
    ranks = [json.loads((prepared / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["resumed"] and r["restored"] for r in ranks), "each rank restored its own saved state"
    assert ranks[0]["dropout"] != ranks[1]["dropout"] and ranks[0]["word"] != ranks[1]["word"]
    assert 0 < sum(ranks[1]["dropout"]) < 256 and any(ranks[1]["word"])
