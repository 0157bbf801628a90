"""Fine-tuning (``train.init_from``): a new run that starts from another run's trained weights with a
fresh optimizer and learning-rate schedule, e.g. to adapt a model to a new domain.

The new run uses its parent's SentencePiece models (the spm stage copies them instead of training)
and the parent's architecture: the model keys its recipe leaves out come from the parent checkpoint,
and those it sets must agree (every disagreement named in one error); only ``model.dropout`` and
``model.word_dropout`` may differ. A run
that already has its own ``last.pt`` resumes from it instead (the parent is not read again).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from seq2seq.config.load import from_dict
from seq2seq.config.schema import SECTIONS, Config
from seq2seq.config.values import merge
from seq2seq.constants import checkpoint_file
from seq2seq.data.tokenizer import Tokenizer, fingerprint_matches
from seq2seq.errors import UserError
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs.checkpoint import parent_checkpoint

FREE_MODEL_KEYS = ("dropout", "word_dropout")  # what a fine-tuning run may change in model


def _differences(cfg: Config, theirs: dict, path, keys) -> None:
    ours = dataclasses.asdict(cfg.model)
    found = [
        f"model.{k}: {ours[k]!r} here, {theirs.get(k)!r} in {path}" for k in keys if theirs.get(k) != ours[k]
    ]
    if found:
        raise UserError(
            f"fine-tuning keeps the parent's architecture, and the recipe sets other values ({'; '.join(found)}): "
            f"remove these keys to inherit them (only model.{' and model.'.join(FREE_MODEL_KEYS)} may change)"
        )


def inherit_model(cfg: Config, log: Callable[[str], None] = print) -> Config:
    """With ``train.init_from``: ``cfg`` with every model key the recipe does not set taken from the parent
    checkpoint (or, resuming, from the run's own last.pt); keys it sets to other values than the parent's
    are refused, all in one error."""
    if not cfg.train.init_from:
        return cfg
    own = checkpoint_file(cfg.run_path, "last")  # resuming: the run's own checkpoint, the parent unread
    path = own if own.is_file() else parent_checkpoint(cfg)
    theirs = ckpt_io.load(path).get("config", {}).get("model", {})
    given = cfg.given_keys
    names = [f.name for f in dataclasses.fields(cfg.model)]
    set_here = names if given is None else [k for k in names if f"model.{k}" in given]
    _differences(cfg, theirs, path, [k for k in set_here if k not in FREE_MODEL_KEYS])
    inherited = {
        k: theirs[k]
        for k in names
        if k not in set_here and k in theirs and theirs[k] != getattr(cfg.model, k)
    }
    if not inherited:
        return cfg
    new = from_dict(merge(cfg.to_dict(), {"model": inherited}, SECTIONS))
    new.recipe_path, new.overrides, new.given_keys = cfg.recipe_path, cfg.overrides, cfg.given_keys
    log(
        f"fine-tuning: the model settings the recipe leaves out come from {path}: "
        + ", ".join(f"model.{k}={v!r}" for k, v in inherited.items())
    )
    return new


def parent_weights(
    cfg: Config, toks: tuple[Tokenizer, Tokenizer], log: Callable[[str], None] = print
) -> dict:
    """The parent's parameters, after checking that this run has the same tokenizers (``toks``, source and
    target) and the same architecture."""
    path = parent_checkpoint(cfg)
    ckpt = ckpt_io.load(path)
    if ckpt.get("quantization") is not None:
        raise UserError(
            f"config key 'train.init_from': {path} is an int8 checkpoint: fine-tune from an fp32 one"
        )
    if not fingerprint_matches(ckpt.get("tokenizers"), *toks):
        raise UserError(
            f"{path} was trained with other SentencePiece models than {cfg.run_path / 'spm'}: fine-tuning "
            f"needs the parent's (delete {cfg.run_path / 'spm'} and run seq2seq spm with train.init_from set)"
        )
    keys = [f.name for f in dataclasses.fields(cfg.model) if f.name not in FREE_MODEL_KEYS]
    _differences(cfg, ckpt["config"]["model"], path, keys)
    step = ckpt.get("progress", {}).get("step", "?")
    log(f"fine-tuning from {path} (trained {step} steps): its weights, a fresh optimizer and schedule")
    return ckpt["model"]
