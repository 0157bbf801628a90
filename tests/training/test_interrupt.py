"""Ctrl-C during training saves a checkpoint at a step boundary; the resumed run ends exactly where an
uninterrupted one does."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_recipe_dict

import seq2seq.training.loop as loop
import seq2seq.training.setup as training
from seq2seq.config.load import load_config
from seq2seq.data.corpus import download
from seq2seq.data.tokenizer import train_tokenizers
from seq2seq.runs import checkpoint as ckpt_io

QUIET = lambda *_: None  # noqa: E731


def _prepared(tmp: Path, name: str, **train) -> Path:
    recipe = tiny_recipe_dict(tmp, train={"max_steps": 12, "valid_every": 6, **train})
    recipe["run_dir"] = str(tmp / name)
    recipe["data"]["dir"] = str(tmp / "corpus")
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cfg = load_config(path)
    if not (tmp / "corpus" / "manifest.json").is_file():
        download(cfg, log=QUIET)
    train_tokenizers(cfg, log=QUIET)
    return path


def test_interrupt_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    plain = load_config(_prepared(tmp_path, "plain"))
    training.train(plain, log=QUIET)

    cut = load_config(_prepared(tmp_path, "cut"))
    trainer = training.build_trainer(cut, log=QUIET)

    class FlagAtStep4:  # what SIGINT sets, raised deterministically after step 4
        signum = signal.SIGINT

        def is_set(self):
            return trainer.progress.step == 4

    monkeypatch.setattr(loop, "_interrupt_flag", lambda: contextlib.nullcontext(FlagAtStep4()))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    saved = ckpt_io.load(cut.run_path / "checkpoints" / "last.pt")
    assert saved["progress"]["step"] == 4 and "optimizer" in saved
    monkeypatch.undo()
    training.train(cut, log=QUIET)  # resumes at step 4

    a = ckpt_io.load(plain.run_path / "checkpoints" / "last.pt")
    b = ckpt_io.load(cut.run_path / "checkpoints" / "last.pt")
    assert a["progress"] == b["progress"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_sigint_saves_and_exits_130(tmp_path):
    recipe = _prepared(tmp_path, "sig", max_steps=100000, valid_every=100000, log_every=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq", "train", str(recipe)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    log = tmp_path / "sig" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and "step 3 " in log.read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted"] and "Traceback" not in err
    assert "interrupted at step" in out
    step = ckpt_io.load(tmp_path / "sig" / "checkpoints" / "last.pt")["progress"]["step"]
    assert step >= 3
    again = subprocess.run(
        [sys.executable, "-m", "seq2seq", "train", str(recipe), f"max_steps={step + 2}", "valid_every=1000"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert again.returncode == 0, again.stderr
    assert f"resuming at step {step}" in again.stdout and f"finished at step {step + 2}" in again.stdout


@pytest.mark.skipif(os.name != "posix", reason="sends SIGTERM")
def test_sigterm_saves_once_and_exits_143(tmp_path):
    """What Slurm, Kubernetes and torchrun send: handled as SIGINT is (one save at a step boundary),
    with the exit status of a process ended by SIGTERM (128 + 15)."""
    recipe = _prepared(tmp_path, "term", max_steps=100000, valid_every=100000, log_every=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq", "train", str(recipe)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    log = tmp_path / "term" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and "step 3 " in log.read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    (line,) = [x for x in out.splitlines() if "terminated by SIGTERM at step" in x]
    step = ckpt_io.load(tmp_path / "term" / "checkpoints" / "last.pt")["progress"]["step"]
    assert f"at step {step}:" in line and step >= 3
    assert not list((tmp_path / "term" / "checkpoints").glob("best.pt")), "no validation ran: only last.pt"
    resumed = training.train(load_config(recipe, [f"max_steps={step + 1}", "valid_every=1000"]), log=QUIET)
    assert resumed.step == step + 1


@pytest.mark.skipif(os.name != "posix", reason="sends signals to itself")
def test_stop_flag_takes_sigint_and_sigterm_and_restores_the_handlers():
    from seq2seq.training.signals import EXIT_STATUS, exit_for, stop_flag

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with stop_flag() as flag:
        assert not flag.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert flag.is_set() and flag.signum == signal.SIGINT
        os.kill(os.getpid(), signal.SIGTERM)  # would end the process without the flag
        time.sleep(0.05)
        assert flag.signum == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before
    assert EXIT_STATUS == {signal.SIGINT: 130, signal.SIGTERM: 143}
    with pytest.raises(KeyboardInterrupt):
        exit_for(signal.SIGINT)
    with pytest.raises(SystemExit) as e:
        exit_for(signal.SIGTERM)
    assert e.value.code == 143


def test_a_signal_at_a_validation_step_writes_last_pt_once(tmp_path, monkeypatch):
    """A signal at a validation step saves last.pt before anything else (and skips that validation)."""
    cfg = load_config(_prepared(tmp_path, "once"))  # validates at step 6
    trainer = training.build_trainer(cfg, log=QUIET)

    class TermAtStep6:
        signum = signal.SIGTERM

        def is_set(self):
            return trainer.progress.step == 6

    writes = []
    real_save = loop.ckpt_io.save
    monkeypatch.setattr(loop, "_interrupt_flag", lambda: contextlib.nullcontext(TermAtStep6()))
    monkeypatch.setattr(
        loop.ckpt_io, "save", lambda path, p: writes.append(Path(path).name) or real_save(path, p)
    )
    with pytest.raises(SystemExit) as e:
        trainer.train()
    assert e.value.code == 143
    # save first: torchrun kills the workers ~30 s after the signal, so the validation due at step 6 waits
    assert writes == ["last.pt"], writes
    saved = ckpt_io.load(cfg.run_path / "checkpoints" / "last.pt")["progress"]
    assert saved["step"] == 6 and saved["best_bleu"] == -1.0  # not validated: last.pt came first
