"""Fine-tuning (``train.init_from``): a new run that starts from another run's trained weights with a
fresh optimizer and learning-rate schedule, e.g. to adapt a model to a new domain.

The new run uses its parent's SentencePiece models (the spm stage copies them instead of training)
and the parent's architecture; only ``model.dropout`` and ``model.word_dropout`` may differ. A run
that already has its own ``last.pt`` resumes from it instead (the parent is not read again).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from seq2seq import checkpoint as ckpt_io
from seq2seq.config import Config
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_bytes
from seq2seq.tokenizer import spm_paths

FREE_MODEL_KEYS = ("dropout", "word_dropout")  # what a fine-tuning run may change in model


def parent_checkpoint(cfg: Config) -> Path:
    """The checkpoint ``train.init_from`` names: RUN_DIR (its best.pt) or a checkpoint file."""
    where = Path(cfg.train.init_from)
    if where.is_dir():
        return ckpt_io.resolve(where, "best")
    if where.is_file():
        return where
    raise UserError(f"config key 'train.init_from': {where} is neither a run directory nor a checkpoint file")


def parent_run(cfg: Config) -> Path:
    """The run directory of the parent checkpoint (RUN_DIR for RUN_DIR/checkpoints/X.pt)."""
    path = parent_checkpoint(cfg)
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def copy_parent_tokenizers(cfg: Config, log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Copy the parent run's SentencePiece models into this run's spm/ (what the spm stage does when
    fine-tuning): the same vocabulary is what makes the parent's weights usable."""
    parent = parent_run(cfg)
    src, tgt = spm_paths(parent)
    if not src.is_file() or not tgt.is_file():
        raise UserError(f"{parent} has no SentencePiece models in spm/: train.init_from needs a trained run")
    out = cfg.run_path / "spm"
    for stale in ("joint", "src", "tgt"):
        for ext in (".model", ".vocab"):
            (out / (stale + ext)).unlink(missing_ok=True)
    for model in {src, tgt}:
        for ext in (".model", ".vocab"):
            piece = model.with_suffix(ext)
            if piece.is_file():
                atomic_write_bytes(out / piece.name, piece.read_bytes())
    log(f"fine-tuning from {parent}: copied its SentencePiece models into {out}")
    return spm_paths(cfg.run_path)


def parent_weights(cfg: Config, fingerprint: str, log: Callable[[str], None] = print) -> dict:
    """The parent's parameters, after checking that this run has the same tokenizers (``fingerprint``:
    :func:`~seq2seq.tokenizer.tokenizers_fingerprint`) and the same architecture."""
    path = parent_checkpoint(cfg)
    ckpt = ckpt_io.load(path)
    if ckpt.get("tokenizers") != fingerprint:
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
