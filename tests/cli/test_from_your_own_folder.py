"""Issue 35's "done when", as a user does it in a folder of their own (outside the checkout): two text
files, new-recipe --size cpu, seq2seq run to a BLEU score, one decode key changed (only evaluate
reruns), then fine-tuning with a recipe that names no model key. No file is edited by hand (the decode
key is changed the way an editor would)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# tiny, so that the whole sequence takes seconds: the CPU recipe's model on a 100-piece vocabulary
SMALL = ["vocab_size=100", "max_steps=4", "valid_every=2", "batch_tokens=600", "max_len_ratio=1", "threads=1"]


def seq2seq(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def stages(out: str) -> dict[str, str]:
    return {
        line.split(":")[0]: line.split(": ", 1)[1]
        for line in out.splitlines()
        if line.split(":")[0] in ("data", "spm", "train", "eval") and ": " in line
    }


def test_from_two_files_to_bleu_then_only_evaluate_then_fine_tuning(tmp_path):
    assert not tmp_path.resolve().is_relative_to(ROOT)
    rng = random.Random(1)
    words = {"cat": "chat", "dog": "chien", "red": "rouge", "big": "grand", "house": "maison", "the": "le"}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n in (("train", 200), ("dev", 12)):
        rows = []
        for _ in range(n):
            en = rng.choices(list(words), k=rng.randint(2, 5))
            rows.append(" ".join(en) + "\t" + " ".join(words[w] for w in en))
        (corpus / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    made = seq2seq(
        tmp_path,
        "new-recipe",
        "mine",
        "--src-lang",
        "en",
        "--tgt-lang",
        "fr",
        "--size",
        "cpu",
        "--train",
        "corpus/train.tsv",
        "--dev",
        "corpus/dev.tsv",
        "--test",
        "corpus/dev.tsv",
    )
    assert "settings: cpu (--size cpu)" in made.stdout
    assert made.stdout.splitlines()[-1] == "wrote mine.yaml; next: seq2seq run mine.yaml"

    first = seq2seq(tmp_path, "run", "mine.yaml", *SMALL)
    assert "test: BLEU" in first.stdout and "nrefs:1" in first.stdout
    assert all(v.startswith("running") for v in stages(first.stdout).values())

    recipe = tmp_path / "mine.yaml"
    text = recipe.read_text(encoding="utf-8")
    beam = re.search(r"\n  beam_size: (\d+)", text)  # the shipped CPU recipe's, whatever dev picked
    assert beam and beam.group(1) != "2"
    recipe.write_text(text.replace(beam.group(0), "\n  beam_size: 2", 1), encoding="utf-8")
    again = seq2seq(tmp_path, "run", "mine.yaml")  # the run remembers its overrides
    assert stages(again.stdout) == {
        "data": "up to date",
        "spm": "up to date",
        "train": "up to date",
        "eval": "running (eval settings changed)",
    }
    assert "beam 2" in again.stdout and "(kept)" in again.stderr

    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "ft.yaml").write_text(
        "data: {source: tsv, src_lang: en, tgt_lang: fr, url: ../corpus, file_pattern: '{split}.tsv',\n"
        "       src_field: '0', tgt_field: '1', splits: {train: train, dev: dev, test: dev}}\n"
        "train: {init_from: ../data/mine/run, max_steps: 2, valid_every: 2, lr: 0.0003}\n",
        encoding="utf-8",
    )
    tuned = seq2seq(tmp_path, "run", "tune/ft.yaml")
    assert "model settings the recipe leaves out come from" in tuned.stdout
    assert "test: BLEU" in tuned.stdout
