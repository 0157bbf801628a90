"""A run written by checkpoint format version 1 (tests/fixtures/old_run_v1, made by
tests/fixtures/make_old_run.py) still loads and translates exactly as it did when it was written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq import Translator
from seq2seq.runs import checkpoint as ckpt_io

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD_RUNS = sorted(FIXTURES.glob("old_run_v*"))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_a_fixture_for_the_current_format_exists():
    versions = {int((run / "FORMAT_VERSION").read_text()) for run in OLD_RUNS}
    assert ckpt_io.FORMAT_VERSION in versions


@pytest.mark.parametrize("run", OLD_RUNS, ids=lambda p: p.name)
def test_old_run_loads_and_translates_identically(run: Path):
    ckpt = ckpt_io.load(run / "checkpoints" / "best.pt")
    assert ckpt["format_version"] == int((run / "FORMAT_VERSION").read_text())
    translator = Translator.load(run)
    assert translator.translate(lines(run / "sources.txt")) == lines(run / "expected.txt")


@pytest.mark.parametrize("run", OLD_RUNS, ids=lambda p: p.name)
def test_old_run_through_the_command_line(run: Path, tmp_path: Path):
    out = tmp_path / "out.txt"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq",
            "translate",
            str(run),
            "-i",
            str(run / "sources.txt"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert lines(out) == lines(run / "expected.txt")
