"""The train stage: :mod:`~seq2seq.training.setup` builds the parts (process group, tokenizers, model,
optimizer, schedule, data), :mod:`~seq2seq.training.loop` uses them (steps, validation, checkpoints,
early stopping, signals)."""

from __future__ import annotations

from seq2seq.training.loop import Trainer
from seq2seq.training.setup import build_trainer, train

__all__ = ["train", "build_trainer", "Trainer"]
