"""Fine-tuning (``train.init_from``): a new run that starts from another run's trained weights with a
fresh optimizer and learning-rate schedule, e.g. to adapt a model to a new domain.

The new run uses its parent's SentencePiece models (the spm stage copies them instead of training)
and the parent's architecture; only ``model.dropout`` and ``model.word_dropout`` may differ. A run
that already has its own ``last.pt`` resumes from it instead (the parent is not read again).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from seq2seq.config.schema import Config
from seq2seq.data.tokenizer import Tokenizer, fingerprint_matches
from seq2seq.errors import UserError
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs.checkpoint import parent_checkpoint

FREE_MODEL_KEYS = ("dropout", "word_dropout")  # what a fine-tuning run may change in model


def parent_weights(
    cfg: Config, toks: tuple[Tokenizer, Tokenizer], log: Callable[[str], None] = print
) -> dict:
    """The parent's parameters, after checking that this run has the same tokenizers (``toks``, source and
    target) and the same architecture."""
    path = parent_checkpoint(cfg)
    ckpt = ckpt_io.load(path)
    if not fingerprint_matches(ckpt.get("tokenizers"), *toks):
        raise UserError(
            f"{path} was trained with other SentencePiece models than {cfg.run_path / 'spm'}: fine-tuning "
            f"needs the parent's (delete {cfg.run_path / 'spm'} and run seq2seq spm with train.init_from set)"
        )
    theirs, ours = ckpt["config"]["model"], dataclasses.asdict(cfg.model)
    for key, value in ours.items():
        if key not in FREE_MODEL_KEYS and theirs.get(key) != value:
            raise UserError(
                f"config key 'model.{key}': {value!r} here, {theirs.get(key)!r} in {path}; fine-tuning keeps "
                f"the architecture (only model.{' and model.'.join(FREE_MODEL_KEYS)} may change)"
            )
    step = ckpt.get("progress", {}).get("step", "?")
    log(f"fine-tuning from {path} (trained {step} steps): its weights, a fresh optimizer and schedule")
    return ckpt["model"]
