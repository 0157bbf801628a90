"""The loop with subword sampling (exact resume across epochs) and its end: train.average_last."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.load import load_config
from seq2seq.data.corpus import download
from seq2seq.data.tokenizer import train_tokenizers
from seq2seq.decode.loading import load_run
from seq2seq.errors import UserError
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.training.setup import train

QUIET = lambda *_: None  # noqa: E731


def _recipe(tmp: Path, **sections) -> Path:
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tmp, **sections)), encoding="utf-8")
    return path


def _prepare(recipe: Path, overrides=(), spm_from: Path | None = None):
    cfg = load_config(recipe, list(overrides))
    if not (cfg.data_dir / "manifest.json").is_file():
        download(cfg, log=QUIET)
    if spm_from is not None:
        shutil.copytree(spm_from / "spm", cfg.run_path / "spm", dirs_exist_ok=True)
    else:
        train_tokenizers(cfg, log=QUIET)
    return cfg


def _model(run: Path, name: str) -> dict:
    return ckpt_io.load(run / "checkpoints" / f"{name}.pt")["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- subword sampling ----------------------------------------------------------------------------

SAMPLING = {
    "spm": {"subword_sampling": True},
    "train": {"batch_tokens": 3000, "max_steps": 10, "valid_every": 5},
}


@pytest.mark.slow
def test_resume_with_sampling_is_exact_across_epochs(tmp_path):
    """A run stopped at step 5 and resumed equals the uninterrupted one bit for bit (several epochs:
    each epoch samples afresh), and sampling changes what is trained."""
    recipe = _recipe(tmp_path, **SAMPLING)
    cfg_a = _prepare(recipe)
    assert train(cfg_a, log=QUIET).epoch >= 2
    cfg_b = _prepare(recipe, [f"run_dir={tmp_path / 'B'}", "max_steps=5"], spm_from=cfg_a.run_path)
    train(cfg_b, log=QUIET)
    cfg_b = load_config(recipe, [f"run_dir={tmp_path / 'B'}"])
    assert train(cfg_b, log=QUIET).step == 10
    assert _same(_model(cfg_a.run_path, "last"), _model(cfg_b.run_path, "last"))
    cfg_c = _prepare(
        recipe, [f"run_dir={tmp_path / 'C'}", "spm.subword_sampling=false"], spm_from=cfg_a.run_path
    )
    train(cfg_c, log=QUIET)
    assert not _same(_model(cfg_a.run_path, "last"), _model(cfg_c.run_path, "last"))


# ---- train.average_last --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("averaged")
    recipe = _recipe(tmp, train={"max_steps": 12, "valid_every": 4, "keep_checkpoints": 3, "average_last": 2})
    cfg = _prepare(recipe)
    lines: list[str] = []
    train(cfg, log=lines.append)
    return recipe, cfg, lines


def test_average_last_equals_seq2seq_average_of_the_same_files(averaged_run, tmp_path):
    _, cfg, lines = averaged_run
    folder = cfg.run_path / "checkpoints"
    assert [p.name for p in ckpt_io.step_checkpoints(folder)] == [f"step-0000000{s}.pt" for s in (4, 8)] + [
        "step-00000012.pt"
    ]
    expected = ckpt_io.average(ckpt_io.step_checkpoints(folder)[-2:], tmp_path / "mine.pt")
    got = ckpt_io.load(folder / "averaged.pt")
    assert _same(got["model"], expected["model"])
    assert got["averaged_from"] == ["step-00000008.pt", "step-00000012.pt"]
    assert not _same(got["model"], _model(cfg.run_path, "last"))


def test_the_dev_bleu_of_the_average_is_logged_and_recorded(averaged_run):
    _, cfg, lines = averaged_run
    said = [x for x in lines if x.startswith("averaged 2 checkpoints")]
    assert len(said) == 1 and "averaged.pt" in said[0] and "BLEU" in said[0]
    assert lines.index(said[0]) > next(i for i, x in enumerate(lines) if x.startswith("finished at step 12"))
    metrics = [json.loads(x) for x in (cfg.run_path / "metrics.jsonl").read_text().splitlines()]
    averaged = [m for m in metrics if m["kind"] == "averaged"]
    assert len(averaged) == 1 and averaged[0]["step"] == 12 and averaged[0]["checkpoints"] == 2
    assert f"{averaged[0]['bleu']:.2f}" in said[0]
    from seq2seq.inspect.info import format_info, run_info

    info = run_info(cfg.run_path)
    assert info["averaged_dev_bleu"] == averaged[0]["bleu"]
    assert "averaged.pt (train.average_last 2): dev BLEU" in format_info(info)


def test_decode_checkpoint_averaged_names_it(averaged_run):
    _, cfg, _ = averaged_run
    _, model = load_run(cfg.run_path, "averaged")
    assert _same(model.state_dict(), _model(cfg.run_path, "averaged"))
    with pytest.raises(UserError, match="belongs to training"):
        ckpt_io.average_run(cfg.run_path, [], 2, "averaged")


def test_a_rerun_after_it_is_complete_does_nothing_and_one_stopped_before_it_writes_it(
    averaged_run, tmp_path
):
    recipe, cfg, _ = averaged_run
    run = tmp_path / "copy"
    shutil.copytree(cfg.run_path, run)
    again = load_config(recipe, [f"run_dir={run}"])
    averaged, metrics = run / "checkpoints" / "averaged.pt", run / "metrics.jsonl"
    before = averaged.read_bytes(), averaged.stat().st_mtime_ns, metrics.read_text()
    lines: list[str] = []
    train(again, log=lines.append)
    assert (averaged.read_bytes(), averaged.stat().st_mtime_ns, metrics.read_text()) == before
    assert any(x.startswith("nothing to do") for x in lines) and not any(
        x.startswith("averaged") for x in lines
    )
    averaged.unlink()  # as if stopped between the last validation and the average
    lines.clear()
    train(again, log=lines.append)
    assert _same(
        ckpt_io.load(averaged)["model"], ckpt_io.load(cfg.run_path / "checkpoints" / "averaged.pt")["model"]
    )
    assert any(x.startswith("averaged 2 checkpoints") for x in lines)


def test_average_last_needs_as_many_kept_checkpoints(tmp_path):
    recipe = _recipe(tmp_path, train={"keep_checkpoints": 2, "average_last": 3})
    with pytest.raises(UserError, match=r"train\.average_last.*keep_checkpoints >= 3"):
        load_config(recipe)
    assert load_config(recipe, ["keep_checkpoints=3"]).train.average_last == 3


def test_switching_subword_sampling_keeps_the_tokenizer_of_a_trained_run(averaged_run, tmp_path):
    """The sampling keys shape training, not the SentencePiece models: the spm stage of a run with
    checkpoints accepts them changed (other spm keys are refused there)."""
    recipe, cfg, _ = averaged_run
    run = tmp_path / "copy"
    shutil.copytree(cfg.run_path, run)
    model = (run / "spm" / "joint.model").read_bytes()
    train_tokenizers(load_config(recipe, [f"run_dir={run}", "spm.subword_sampling=true"]), log=QUIET)
    assert (run / "spm" / "joint.model").read_bytes() == model
    with pytest.raises(UserError, match="other settings"):
        train_tokenizers(load_config(recipe, [f"run_dir={run}", "spm.vocab_size=100"]), log=QUIET)
