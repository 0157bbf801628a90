"""A trained run directory loaded as (config, model, tokenizers), each checked against the others."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch

from seq2seq.config.load import from_dict
from seq2seq.config.schema import ModelConfig
from seq2seq.constants import checkpoints_dir
from seq2seq.data.tokenizer import fingerprint_matches, load_tokenizers
from seq2seq.decode.model_folder import is_model_folder
from seq2seq.decode.model_folder import load as load_model_folder
from seq2seq.errors import UserError
from seq2seq.model.network import build_model
from seq2seq.model.quantized import QUANTIZATION, from_int8_state
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs.ownership import load_run_config


def load_run(run_dir: Path, which: str = "best", device: Optional[torch.device] = None):
    """(config, model in eval mode) from a run directory.

    The checkpoint is the truth for the model: it is built from the checkpoint's own model settings,
    and a config.yaml that disagrees with them is an error; so are tokenizers in spm/ other than those
    the checkpoint was trained with (their fingerprint)."""
    return load_run_with_tokenizers(run_dir, which, device)[:2]


def load_run_with_tokenizers(run_dir: Path, which: str = "best", device: Optional[torch.device] = None):
    """(config, model, (source tokenizer, target tokenizer)) of a run, checked against each other; or
    of a model folder (``seq2seq export``'s, or ``hf://OWNER/NAME[@REVISION]``: decode.model_folder)."""
    if is_model_folder(run_dir):
        return load_model_folder(run_dir, which, device)
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    path = ckpt_io.resolve(run_dir, which, "--checkpoint")
    ckpt = ckpt_io.load(path)
    model_cfg = checkpoint_model_config(ckpt, path)
    disagree = {k: v for k, v in dataclasses.asdict(model_cfg).items() if getattr(cfg.model, k) != v}
    if disagree:
        key, value = next(iter(disagree.items()))
        mine = getattr(cfg.model, key)
        if _foreign(run_dir, path, cfg.model):
            raise UserError(
                f"{path} is a checkpoint of another model (model.{key} {value!r}; this run's is {mine!r}): "
                f"decode it with the run it was trained in (seq2seq translate THAT_RUN --checkpoint ...)"
            )
        raise UserError(
            f"{run_dir / 'config.yaml'} disagrees with {path} on model.{key} ({mine!r} "
            f"there, {value!r} in the checkpoint): restore config.yaml; the checkpoint is what was trained"
        )
    toks = load_tokenizers(run_dir, cfg.spm.joint)
    if (ckpt["src_vocab"], ckpt["tgt_vocab"]) != (len(toks[0]), len(toks[1])):
        raise UserError(
            f"{path}: vocabulary sizes {ckpt['src_vocab']}/{ckpt['tgt_vocab']} do not match the "
            f"tokenizers in {run_dir / 'spm'} ({len(toks[0])}/{len(toks[1])})"
        )
    if ckpt.get("tokenizers") is not None and not fingerprint_matches(ckpt["tokenizers"], *toks):
        raise UserError(
            f"{path} was trained with other tokenizers (SentencePiece models) than those in {run_dir / 'spm'} "
            f"(was the spm stage re-run?): restore spm/, or train again"
        )
    model = build_from_checkpoint(ckpt, model_cfg, path, device)
    return cfg, model.to(device or torch.device("cpu")).eval(), toks


def build_from_checkpoint(ckpt: dict, model_cfg: ModelConfig, path: Path, device: Optional[torch.device]):
    """The model a checkpoint holds: fp32 parameters, or (``quantization`` int8-dynamic, written by
    ``seq2seq quantize``) the int8 model of :mod:`seq2seq.model.quantized`, which decodes on the CPU only."""
    quantization = ckpt.get("quantization")
    if quantization is not None:
        if quantization != QUANTIZATION:
            raise UserError(f"{path} holds {quantization} weights; this seq2seq reads {QUANTIZATION} only")
        if device is not None and device.type != "cpu":
            raise UserError(f"{path} is an int8 checkpoint: it decodes on the CPU only (--device cpu)")
        return from_int8_state(model_cfg, ckpt["model"])
    model = build_model(model_cfg, ckpt["src_vocab"], ckpt["tgt_vocab"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path}: parameters do not match its config ({str(e).splitlines()[0]})") from None
    return model


def _foreign(run_dir: Path, path: Path, model: ModelConfig) -> bool:
    """Whether ``path`` (which disagrees with the run's config.yaml) comes from another run: it lies
    outside the run's checkpoints, or another checkpoint of the run agrees with config.yaml (then
    config.yaml is right, and restoring it would break the run)."""
    own = checkpoints_dir(run_dir)
    if path.resolve().parent != own.resolve():
        return True
    for other in (own / "best.pt", own / "last.pt"):
        if other.is_file() and not other.samefile(path):
            try:
                if checkpoint_model_config(ckpt_io.load(other), other) == model:
                    return True
            except UserError:
                continue
    return False


def checkpoint_model_config(ckpt: dict, path: Path) -> ModelConfig:
    """The model settings a checkpoint was trained with."""
    try:
        return from_dict(ckpt["config"]).model
    except (UserError, KeyError, TypeError) as e:
        raise UserError(f"{path}: its config is not readable by this version ({e})") from None
