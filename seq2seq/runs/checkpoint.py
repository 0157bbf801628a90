"""Versioned checkpoints, written atomically (:mod:`seq2seq.fileio`), that can never execute code on load."""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from seq2seq.config.schema import Config
from seq2seq.config.values import check_name
from seq2seq.constants import CHECKPOINT_SUFFIX, CHECKPOINTS, checkpoint_file, checkpoints_dir
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_bytes
from seq2seq.runs import ownership as rundir

FORMAT_VERSION = 1
TRAINING_OWNS = re.compile(r"best|last|averaged|step-\d+")  # names the train stage writes (and resumes from)
STEP = re.compile(r"step-(\d+)")  # train.keep_checkpoints' files: step-NNNNNNNN.pt


def step_checkpoints(folder: Path) -> list[Path]:
    """The step checkpoints training kept in ``folder`` (``step-N.pt``), oldest first; never anything
    else named ``step-*`` (an average written as ``-o step-final``)."""
    steps = {p: int(m[1]) for p in folder.glob(f"step-*{CHECKPOINT_SUFFIX}") if (m := STEP.fullmatch(p.stem))}
    return sorted(steps, key=steps.__getitem__)


def checkpoint_path(run_dir: str | os.PathLike, name: str, label: str = "checkpoint") -> Path:
    """``<run_dir>/checkpoints/<name>.pt`` for a plain ``name`` (never a path: ``../x`` is refused)."""
    return checkpoint_file(run_dir, check_name(label, name))


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Save a checkpoint dict (tensors, numbers, strings, lists, dicts) atomically, versioned."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def resolve(run_dir: str | os.PathLike, which: str, label: str = "checkpoint") -> Path:
    """The checkpoint file ``which`` names: a file path when it ends in ``.pt`` (a bare ``X.pt`` not in
    the current folder is the run's ``checkpoints/X.pt``), else a plain name (best, last, average,
    step-NNNNNNNN; no path separators, never ``..``) in ``<run_dir>/checkpoints``; it must exist."""
    run_dir = Path(run_dir)
    if which.endswith(".pt"):
        path = Path(which)
        if not path.is_file() and path.parent == Path("."):  # "last.pt": the run's own file of that name
            path = checkpoints_dir(run_dir) / which
        if not path.is_file():
            raise UserError(f"checkpoint file not found: {path}")
        return path
    path = checkpoint_path(run_dir, which, label)  # a plain name: never outside the run (no ../)
    if not path.is_file():
        have = sorted(p.stem for p in checkpoints_dir(run_dir).glob(f"*{CHECKPOINT_SUFFIX}"))
        if not have:
            raise UserError(f"{run_dir} has no checkpoint {path.name}: train it first")
        raise UserError(f"{run_dir} has no checkpoint {path.name} (it has: {', '.join(have)})")
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; any damage is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        if zipfile.is_zipfile(path):  # torch.load never checks the CRCs: damaged tensor bytes load silently
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
            if damaged is not None:
                raise UserError(
                    f"{path} is damaged (checksum mismatch in {damaged}): restore it or train again"
                )
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        KeyError,
        AttributeError,
        TypeError,
        OSError,
    ):
        # torch's own message suggests weights_only=False, the unsafe way: never pass it on
        kind = "truncated or damaged" if zipfile.is_zipfile(path) else "not a checkpoint file"
        raise UserError(
            f"{path} is not a readable seq2seq checkpoint ({kind}): restore it or train again"
        ) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path} is not a seq2seq checkpoint")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {ckpt['format_version']}, this version reads {FORMAT_VERSION}"
        )
    return ckpt


def average(paths: list[Path], out: Path) -> dict[str, Any]:
    """Average the parameters of several checkpoints of one model into ``out`` (saved atomically).

    Optimizer/RNG state is not averaged: the result is for decoding (or for fine-tuning afresh).
    """
    if not paths:
        raise UserError("no checkpoints to average")
    ckpts = [load(p) for p in paths]
    for path, c in zip(paths, ckpts):
        if c.get("quantization") is not None:
            raise UserError(f"{path} is an int8 checkpoint: average the fp32 checkpoints, then quantize")
    first = ckpts[0]["model"]
    for path, c in zip(paths[1:], ckpts[1:]):
        if c["model"].keys() != first.keys() or any(c["model"][k].shape != v.shape for k, v in first.items()):
            raise UserError(f"{path} holds a different model than {paths[0]}: cannot average them")
        if c.get("tokenizers") != ckpts[0].get("tokenizers"):
            raise UserError(f"{path} was trained with other tokenizers than {paths[0]}: cannot average them")
    model = {}
    for key, value in first.items():
        if value.is_floating_point():
            total = torch.stack([c["model"][key].double() for c in ckpts]).sum(0)
            model[key] = (total / len(ckpts)).to(value.dtype)
        else:
            model[key] = value.clone()
    payload = {
        k: v
        for k, v in ckpts[-1].items()
        if k in ("config", "src_vocab", "tgt_vocab", "tokenizers", "progress")
    }
    payload.update(model=model, averaged_from=[str(Path(p).name) for p in paths])
    save(out, payload)
    return payload


def average_run(run_dir: Path, names: list[str], last_n: int, out_name: str) -> tuple[list[Path], Path]:
    """Average the checkpoints ``names`` of a run (default: its newest ``last_n`` step-*.pt) into
    ``checkpoints/<out_name>.pt``, holding the run directory; returns (the averaged files, the output).
    ``out_name`` is never one that training writes (best, last, step-N)."""
    out = checkpoint_path(run_dir, out_name, "-o/--output")
    if TRAINING_OWNS.fullmatch(out_name):
        raise UserError(
            f"-o/--output: {out_name}.pt belongs to training (best, last, averaged and step-N are its own): "
            f"choose another name, e.g. -o average"
        )
    paths = [checkpoint_path(run_dir, n, "--checkpoints") for n in names]
    with rundir.claim(Path(run_dir), None, "average", create=False):
        return _average_run(checkpoints_dir(run_dir), paths, last_n, out)


def _average_run(folder: Path, paths: list[Path], last_n: int, out: Path) -> tuple[list[Path], Path]:
    paths = paths or step_checkpoints(folder)[-last_n:]
    if not paths:
        raise UserError(
            f"no step-*.pt checkpoints in {folder}: train with keep_checkpoints=N, or name them "
            f"with --checkpoints"
        )
    average(paths, out)
    return paths, out


def parent_checkpoint(cfg: Config) -> Path:
    """The checkpoint ``train.init_from`` names: RUN_DIR (its best.pt) or a checkpoint file; never the
    run itself or one of its checkpoints (fine-tuning starts from another run)."""
    where = Path(cfg.train.init_from)
    if not where.exists():
        raise UserError(
            f"config key 'train.init_from': {where} is neither a run directory nor a checkpoint file"
        )
    if (where if where.is_dir() else _run_of(where)).resolve() == cfg.run_path.resolve():
        raise UserError(
            f"config key 'train.init_from': {where} is the run itself ({cfg.run_path}): fine-tuning starts "
            f"from another run; give this one its own run_dir=..."
        )
    return resolve(where, "best") if where.is_dir() else where


def _run_of(checkpoint: Path) -> Path:
    """The run directory of a checkpoint file (RUN_DIR for RUN_DIR/checkpoints/X.pt)."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else checkpoint.parent


def parent_run(cfg: Config) -> Path:
    """The run directory of the parent checkpoint (RUN_DIR for RUN_DIR/checkpoints/X.pt)."""
    return _run_of(parent_checkpoint(cfg))
