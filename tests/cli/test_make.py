"""The Makefile drives `seq2seq run` and owns no file of a run: what make may delete, and what it passes.

Most cases use a stub `seq2seq` (S2S=...) that records its arguments and, for `run`, writes best.pt as
training does and then dies the way an interrupted or killed training dies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

STUB = textwrap.dedent(
    """\
    #!{python}
    import json, os, pathlib, signal, sys
    args = sys.argv[1:]
    with open(os.environ["STUB_LOG"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    if args[:2] == ["config", args[1]] and "--run-dir" in args:
        print("data/stub/run")
    elif args and args[0] == "run":
        best = pathlib.Path("data/stub/run/checkpoints/best.pt")
        best.parent.mkdir(parents=True, exist_ok=True)
        best.write_text("weights")
        death = os.environ.get("STUB_DEATH", "")
        if death:  # die by the signal itself (SIGINT may be inherited as ignored from a background shell)
            signal.signal(getattr(signal, death), signal.SIG_DFL) if death != "SIGKILL" else None
            os.kill(os.getpid(), getattr(signal, death))
    """
)


def make(tmp_path: Path, *args: str, s2s: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    if not s2s:
        stub = tmp_path / "stub-seq2seq"
        stub.write_text(STUB.format(python=sys.executable), encoding="utf-8")
        stub.chmod(0o755)
        s2s = str(stub)
    command = [
        "make",
        "--no-print-directory",
        "-f",
        str(ROOT / "Makefile"),
        f"S2S={s2s}",
        "INSTALLED=",
        *args,
    ]
    env = {**os.environ, "STUB_LOG": str(tmp_path / "calls.jsonl"), **(env or {})}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


@pytest.mark.parametrize("death", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_make_never_deletes_best_pt_when_training_dies(tmp_path, death):
    out = make(tmp_path, "train", env={"STUB_DEATH": death})
    assert out.returncode != 0
    assert "Deleting file" not in out.stderr
    assert (tmp_path / "data/stub/run/checkpoints/best.pt").read_text() == "weights"


def test_make_never_deletes_best_pt_when_make_itself_is_signalled(tmp_path):
    stub = tmp_path / "slow-seq2seq"
    stub.write_text(
        "#!/bin/sh\nmkdir -p data/stub/run/checkpoints && echo weights > data/stub/run/checkpoints/best.pt\n"
        "touch started\nexec sleep 30\n"
    )
    stub.chmod(0o755)
    command = ["make", "-f", str(ROOT / "Makefile"), f"S2S={stub}", "INSTALLED=", "train"]
    proc = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for _ in range(200):
            if (tmp_path / "started").exists():
                break
            subprocess.run(["sleep", "0.05"])
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Deleting file" not in err
    assert (tmp_path / "data/stub/run/checkpoints/best.pt").read_text() == "weights\n"


def test_make_train_passes_a_recipe_with_spaces_as_one_argument_and_args(tmp_path):
    out = make(tmp_path, "data", "RECIPE=my dir/sp.yaml", "ARGS=run_dir=data/o2 max_steps=3")
    assert out.returncode == 0, out.stderr
    assert "Circular" not in out.stderr and "circular" not in out.stderr
    assert calls(tmp_path) == [["run", "my dir/sp.yaml", "run_dir=data/o2", "max_steps=3", "--until", "data"]]


def test_make_translate_checks_in_first_and_passes_args(tmp_path):
    out = make(tmp_path, "translate")
    assert out.returncode == 2 and "usage: make translate IN=" in out.stderr
    assert calls(tmp_path) == []  # nothing trained before the usage error

    out = make(tmp_path, "translate", "IN=in put.en", "ARGS=n_best=2")
    assert out.returncode == 0, out.stderr
    assert calls(tmp_path)[-1] == ["translate", "data/stub/run", "n_best=2", "-i", "in put.en"]


@pytest.mark.parametrize("recipe", ["", "recipes/", "/"])
def test_make_clean_refuses_an_empty_or_unsafe_recipe(tmp_path, recipe):
    keep = tmp_path / "data/other/run/checkpoints/best.pt"
    keep.parent.mkdir(parents=True)
    keep.write_text("weights")
    (tmp_path / "recipes").mkdir()
    out = make(tmp_path, "clean", f"RECIPE={recipe}", s2s=f"{sys.executable} -m seq2seq")
    assert out.returncode != 0
    assert keep.read_text() == "weights"


def test_make_clean_removes_only_data_name_of_that_recipe(tmp_path):
    (tmp_path / "important").write_text("precious")
    (tmp_path / "data/old important/run").mkdir(parents=True)
    (tmp_path / "data/old/run").mkdir(parents=True)
    (tmp_path / "old important.yaml").write_text("data: {source: embedded}\n")
    out = make(tmp_path, "clean", "RECIPE=old important.yaml", s2s=f"{sys.executable} -m seq2seq")
    assert out.returncode != 0 and "not a plain name" in out.stderr  # no such run can exist: nothing removed
    assert (tmp_path / "data/old important/run").is_dir() and (tmp_path / "important").is_file()

    (tmp_path / "old important.yaml").write_text("name: old\ndata: {source: embedded}\n")
    out = make(tmp_path, "clean", "RECIPE=old important.yaml", s2s=f"{sys.executable} -m seq2seq")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "data/old").exists()
    assert (tmp_path / "important").read_text() == "precious"
    assert (tmp_path / "data/old important/run").is_dir()
