"""The loop with subword sampling: exact resume across epochs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.load import load_config
from seq2seq.data.corpus import download
from seq2seq.data.tokenizer import train_tokenizers
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
