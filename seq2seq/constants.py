"""What every layer shares: the special token ids, and the layout of a recipe's folder ``data/<name>/``.

A recipe named ``NAME`` (its file's stem unless the recipe sets ``name``) keeps everything under
``data/NAME/``::

    data/NAME/corpus/        the download stage's text files per split and language, manifest.json
    data/NAME/corpus/downloads/   files fetched from URLs
    data/NAME/corpus/dropped.tsv  the training pairs that cleaning dropped (a ``clean`` rule on)
    data/NAME/run/           the run directory (``run_dir`` moves it):
        config.yaml          the settings the run was trained with
        spm/                 SentencePiece models (joint.model, or src.model + tgt.model)
        checkpoints/         best.pt, last.pt, step-N.pt, averaged.pt (train.average_last), other averages
        train.log, metrics.jsonl, tensorboard/
        results.json, results.txt, hyp.<split>.<lang>
        stamps/              the settings each stage last succeeded with (``seq2seq run`` compares them)
"""

from __future__ import annotations

import os
from pathlib import Path

VERSION = "0.1.0"  # the package's version (pyproject.toml reads it here)

# special ids: every SentencePiece model is trained with these, and the model relies on them
PAD, UNK, BOS, EOS = 0, 1, 2, 3

WORK_ROOT = "data"
CORPUS = "corpus"
RUN = "run"
STAMPS = "stamps"

# in a corpus folder
MANIFEST = "manifest.json"
DOWNLOADS = "downloads"
DROPPED = "dropped.tsv"  # the training pairs the clean section's rules dropped (rule, source, target)

# beside the files of back-translations (<stem>.back-translation.json): what made them
BACK_TRANSLATION_RECORD = "back-translation.json"

# in a run directory
CONFIG = "config.yaml"
SPM = "spm"
CHECKPOINTS = "checkpoints"
TRAIN_LOG = "train.log"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
RESULTS_JSON = "results.json"
RESULTS_TXT = "results.txt"
CHECKPOINT_SUFFIX = ".pt"
AVERAGED = "averaged"  # checkpoints/averaged.pt: train.average_last's average of the last step checkpoints

# in either: who owns the folder, and the stage lock
LOCK = ".lock"
OWNER = "owner.json"


def corpus_dir(name: str) -> Path:
    return Path(WORK_ROOT, name, CORPUS)


def run_dir(name: str) -> Path:
    return Path(WORK_ROOT, name, RUN)


def checkpoints_dir(run: str | os.PathLike) -> Path:
    return Path(run) / CHECKPOINTS


def spm_dir(run: str | os.PathLike) -> Path:
    return Path(run) / SPM


def stamps_dir(run: str | os.PathLike) -> Path:
    return Path(run) / STAMPS


def checkpoint_file(run: str | os.PathLike, name: str) -> Path:
    """RUN/checkpoints/NAME.pt (``name`` is a checked name, no suffix)."""
    return checkpoints_dir(run) / f"{name}{CHECKPOINT_SUFFIX}"
