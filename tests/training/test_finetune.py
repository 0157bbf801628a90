"""Fine-tuning with train.init_from: the parent's weights and tokenizers, a fresh optimizer and schedule,
its own resume, and the checks that refuse another vocabulary or architecture."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.config.load import load_config
from seq2seq.data.tokenizer import train_tokenizers
from seq2seq.errors import UserError
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.training.setup import build_trainer, train


def quiet(*_):
    pass


def child(recipe: Path, run: Path, init_from, *extra):
    return load_config(
        recipe, [f"run_dir={run}", f"train.init_from={init_from}", "max_steps=3", "valid_every=3", *extra]
    )


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_starts_from_the_parents_weights_with_a_fresh_optimizer(trained_run, tmp_path):
    parent, recipe = trained_run
    cfg = child(recipe, tmp_path / "child", parent.run_path, "dropout=0.2", "lr=0.0005")
    train_tokenizers(cfg, log=quiet)  # the spm stage copies the parent's models
    for name in ("joint.model", "joint.vocab"):
        assert (cfg.run_path / "spm" / name).read_bytes() == (parent.run_path / "spm" / name).read_bytes()
    messages: list[str] = []
    trainer = build_trainer(cfg, log=messages.append)
    best = ckpt_io.load(parent.run_path / "checkpoints" / "best.pt")
    assert same_tensors(trainer.model.state_dict(), best["model"])
    assert (
        not trainer.resumed and trainer.progress.step == 0 and trainer.optimizer.state_dict()["state"] == {}
    )
    assert any(m.startswith("fine-tuning from") for m in messages)
    trainer.train()
    last = ckpt_io.load(cfg.run_path / "checkpoints" / "last.pt")
    assert last["progress"]["step"] == 3
    assert {int(s["step"]) for s in last["optimizer"]["state"].values()} == {3}  # Adam counts only this run
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0005)
    assert last["config"]["train"]["init_from"] == str(parent.run_path)
    assert not same_tensors(last["model"], best["model"])


def test_a_checkpoint_file_and_resume_keeping_priority(trained_run, tmp_path):
    parent, recipe = trained_run
    copy = Path(shutil.copytree(parent.run_path, tmp_path / "parent"))
    cfg = child(recipe, tmp_path / "child", copy / "checkpoints" / "last.pt")
    trainer = build_trainer(cfg, log=quiet)  # no spm stage run: train copies the tokenizers itself
    assert same_tensors(trainer.model.state_dict(), ckpt_io.load(copy / "checkpoints" / "last.pt")["model"])
    trainer.train()
    shutil.rmtree(copy)  # a fine-tuning run resumes from its own last.pt and never reads its parent again
    more = child(recipe, tmp_path / "child", copy / "checkpoints" / "last.pt", "max_steps=5")
    messages: list[str] = []
    assert train(more, log=messages.append).step == 5
    assert any(m.startswith("resuming at step 3") for m in messages)


def test_other_tokenizers_are_refused(trained_run, tmp_path):
    parent, recipe = trained_run
    own = load_config(recipe, [f"run_dir={tmp_path / 'child'}", "spm.vocab_size=100"])
    train_tokenizers(own, log=quiet)  # this run's own SentencePiece models
    with pytest.raises(UserError, match="other SentencePiece models"):
        build_trainer(child(recipe, tmp_path / "child", parent.run_path), log=quiet)


@pytest.mark.parametrize(
    "override, key", [("emb_dim=24", "model.emb_dim"), ("attention=general", "model.attention")]
)
def test_another_architecture_is_refused(trained_run, tmp_path, override, key):
    parent, recipe = trained_run
    with pytest.raises(UserError, match=key):
        build_trainer(child(recipe, tmp_path / "child", parent.run_path, override), log=quiet)


def test_a_missing_parent_is_one_error(trained_run, tmp_path):
    _, recipe = trained_run
    with pytest.raises(UserError, match="train.init_from"):
        build_trainer(child(recipe, tmp_path / "child", tmp_path / "nope"), log=quiet)


def test_fine_tuning_from_the_command_line(trained_run, tmp_path):
    parent, recipe = trained_run
    args = [
        f"run_dir={tmp_path / 'child'}",
        f"train.init_from={parent.run_path}",
        "max_steps=2",
        "valid_every=2",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", "train", str(recipe), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fine-tuning from" in proc.stdout and "finished at step 2" in proc.stdout


def test_model_keys_the_recipe_leaves_out_come_from_the_parent(trained_run, tmp_path):
    parent, _ = trained_run
    recipe = tmp_path / "ft.yaml"  # no model section at all: the defaults differ from the tiny parent's
    recipe.write_text(
        f"name: ft\nrun_dir: {tmp_path / 'child'}\ndata: {{source: embedded, dir: {parent.data_dir}}}\n"
        f"train: {{init_from: {parent.run_path}, max_steps: 2, valid_every: 2, precision: fp32}}\n"
    )
    lines = []
    train(load_config(recipe), log=lines.append)
    best = ckpt_io.load(tmp_path / "child" / "checkpoints" / "best.pt")
    assert best["config"]["model"] == parent.to_dict()["model"]


def test_keys_set_to_other_values_are_listed_in_one_error(trained_run, tmp_path):
    parent, recipe = trained_run
    with pytest.raises(UserError) as err:
        train(child(recipe, tmp_path / "child", parent.run_path, "emb_dim=24", "dec_hidden=40"), log=quiet)
    assert "model.emb_dim: 24 here" in str(err.value) and "model.dec_hidden: 40 here" in str(err.value)
