"""End to end through the real CLI (subprocesses): the embedded corpus, and Multi30k via a mirror."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe_dict


def s2s(*args, input: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow
def test_embedded_pipeline_end_to_end(tiny_recipe: Path, tmp_path: Path):
    ok(s2s("download", tiny_recipe))
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert manifest["files"]["train.en"]["lines"] == 400
    ok(s2s("spm", tiny_recipe))
    assert (tmp_path / "run" / "spm" / "joint.model").is_file()
    train = ok(s2s("train", tiny_recipe, "max_steps=8", "valid_every=4"))
    assert "validation step 8" in train.stdout
    for name in ("best.pt", "last.pt"):
        assert (tmp_path / "run" / "checkpoints" / name).is_file()
    evaluation = ok(s2s("evaluate", tiny_recipe, "beam_size=2"))
    assert "BLEU" in evaluation.stdout and "nrefs:1|case:mixed|eff:no|tok:13a" in evaluation.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    test = results["tests"]["test"]
    assert 0.0 <= test["bleu"] <= 100.0 and test["sentences"] == 20
    assert test["bleu_signature"].startswith("nrefs:1") and "chrf_signature" in test
    assert results["decode"]["beam_size"] == 2 and results["checkpoint"].endswith("best.pt")
    hyp = (tmp_path / "run" / "hyp.test.de").read_text(encoding="utf-8").split("\n")
    assert len(hyp) == 21 and hyp[-1] == ""

    # translate needs only the run directory: file -> file, then stdin -> stdout, empty lines kept
    src = tmp_path / "in.en"
    src.write_text("two plus three is five\n\nI have forty-two cats.\n", encoding="utf-8")
    out = tmp_path / "out.de"
    ok(
        s2s(
            "translate", tmp_path / "run", "-i", src, "-o", out, "--beam-size", "3", "--length-penalty", "0.6"
        )
    )
    lines = out.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""
    piped = ok(s2s("translate", tmp_path / "run", "-b", "3", "-a", "0.6", input="two plus three is five\n"))
    assert piped.stdout == lines[0] + "\n"  # same settings, same output, from stdin to stdout
    nbest = ok(
        s2s(
            "translate",
            tmp_path / "run",
            "--n-best",
            "2",
            "--format",
            "json",
            input="two plus three is five\n",
        )
    )
    record = json.loads(nbest.stdout)
    assert len(record["hypotheses"]) == 2
    assert record["hypotheses"][0]["score"] >= record["hypotheses"][1]["score"]

    # a second train with the same budget has nothing to do and keeps the checkpoint
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    again = ok(s2s("train", tiny_recipe, "max_steps=8", "valid_every=4"))
    assert "nothing to do" in again.stdout
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before


def test_help_lists_every_stage():
    out = ok(s2s("--help")).stdout
    for command in ("download", "spm", "train", "evaluate", "translate"):
        assert command in out
    assert "--beam-size" in ok(s2s("translate", "--help")).stdout


@pytest.mark.parametrize(
    "override, needle",
    [
        ("no_such_key=1", "'no_such_key'"),
        ("train.nope=1", "'train.nope'"),
        ("max_steps=abc", "'train.max_steps'"),
        ("attention=cosine", "'model.attention'"),
        ("dropout=1.5", "'model.dropout'"),
        ("max_steps", "key=value"),
    ],
)
def test_bad_overrides_are_one_line_errors(tiny_recipe: Path, override: str, needle: str):
    one_line_error(s2s("download", tiny_recipe, override), 2, needle)


def test_unknown_key_in_recipe_file(tmp_path: Path):
    recipe = tiny_recipe_dict(tmp_path)
    recipe["model"]["hiden"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe))
    one_line_error(s2s("train", path), 2, "'model.hiden'")


def test_missing_recipe_and_missing_run(tmp_path: Path):
    one_line_error(s2s("train", tmp_path / "nope.yaml"), 2, "nope.yaml")
    one_line_error(s2s("translate", tmp_path / "norun", input="hello\n"), 2, "norun")


@pytest.mark.slow
def test_multi30k_through_mirror(multi30k_dir: Path, tmp_path: Path):
    """download + spm + a few training steps + translate of test_2016_flickr.de on the real files."""
    root = Path(__file__).resolve().parents[2]
    recipe = root / "recipes" / "multi30k-de-en.yaml"
    args = [
        f"run_dir={tmp_path / 'run'}",
        f"data.dir={tmp_path / 'corpus'}",
        "vocab_size=1000",
        "emb_dim=32",
        "enc_hidden=32",
        "enc_layers=1",
        "dec_hidden=48",
        "attn_dim=32",
        "batch_tokens=1500",
        "max_steps=3",
        "valid_every=3",
        "max_len_offset=2",
        "max_len_ratio=1.2",
    ]
    proc = ok(s2s("download", recipe, *args, "--mirror", multi30k_dir))
    assert "train: 29000 pairs" in proc.stdout and "test2017: 1000 pairs" in proc.stdout
    ok(s2s("spm", recipe, *args))
    ok(s2s("train", recipe, *args))
    src = tmp_path / "corpus" / "test.de"
    out = tmp_path / "test.hyp.en"
    ok(s2s("translate", tmp_path / "run", "-i", src, "-o", out, "--beam-size", "2", "--batch-size", "200"))
    assert len(out.read_text(encoding="utf-8").split("\n")) == 1001
