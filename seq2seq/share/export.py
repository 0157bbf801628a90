"""``seq2seq export RUN_DIR -o DIR``: a run's checkpoint as a self-contained model folder
(format: :mod:`seq2seq.decode.model_folder`).

The folder is built in a temporary folder beside DIR and renamed into place only once complete: an
interrupted export leaves DIR as it was. An existing DIR is replaced only when it is empty or a model
folder itself (never a folder of other files).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

import yaml

from seq2seq.constants import VERSION
from seq2seq.data.tokenizer import spm_paths, tokenizers_fingerprint
from seq2seq.decode import model_folder as mf
from seq2seq.decode.loading import load_run_with_tokenizers
from seq2seq.errors import UserError
from seq2seq.fileio import default_file_mode, file_sha256, temp_prefix
from seq2seq.model.network import count_parameters
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs.ownership import load_run_config
from seq2seq.share.card import card_text, gather


def portable_config(cfg) -> dict:
    """The run's settings without what only made sense on the machine it ran on (local paths)."""
    values = cfg.to_dict()
    values["run_dir"] = ""
    values["data"]["dir"] = ""
    if not str(values["data"].get("url", "")).startswith(("http://", "https://")):
        values["data"]["url"] = ""
    values["train"]["init_from"] = ""
    return values


def export(
    run_dir: Path,
    out: Path,
    checkpoint: Optional[str] = None,
    license: str = "unknown",
    log: Callable[[str], None] = print,
) -> Path:
    """Write the model folder ``out`` from ``run_dir``'s checkpoint ``checkpoint`` (default: the run's
    decode.checkpoint): weights as safetensors, SentencePiece model(s), config.yaml, seq2seq.json and the
    model card README.md. Returns ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    if mf.is_model_folder(run_dir):
        raise UserError(f"{run_dir} is already a model folder: copy it, or export the run it came from")
    which = checkpoint or load_run_config(run_dir).decode.checkpoint
    cfg, model, toks = load_run_with_tokenizers(run_dir, which)  # every consistency check of a run
    path = ckpt_io.resolve(run_dir, which)
    ckpt = ckpt_io.load(path)
    if ckpt.get("quantization") is not None:
        raise UserError(
            f"{path} is an int8 checkpoint; a model folder holds fp32 weights: export the fp32 checkpoint "
            f"it came from, and decode the folder with --precision int8"
        )
    _check_target(out, run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), suffix=".tmp", dir=out.parent))
    mode = default_file_mode()
    os.chmod(staging, mode | ((mode & 0o444) >> 2))  # mkdtemp's 0700 would outlive the rename
    try:
        _write(staging, run_dir, cfg, model, toks, ckpt, which, path, license, out.name)
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"exported {path} to {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return out


def _check_target(out: Path, run_dir: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out} is a file: give a folder")
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise UserError(f"-o {out} is inside the run directory: give a folder outside it")
    if out.is_dir() and any(out.iterdir()) and not (out / mf.MANIFEST).is_file():
        raise UserError(f"-o {out} holds other files and is not a model folder: give a new or empty folder")


def _write(folder: Path, run_dir, cfg, model, toks, ckpt, which, path, license, name) -> None:
    from safetensors.torch import save_model

    model = model.float().cpu()
    save_model(model, str(folder / mf.WEIGHTS), metadata={"format": "pt"})
    (folder / "spm").mkdir()
    spm = sorted({p for p in spm_paths(run_dir)})
    for p in spm:
        shutil.copyfile(p, folder / "spm" / p.name)
    config = portable_config(cfg)
    (folder / mf.CONFIG).write_text(
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8", newline="\n"
    )
    files = [mf.WEIGHTS, mf.CONFIG] + [f"spm/{p.name}" for p in spm]
    progress = ckpt.get("progress") or {}
    manifest = {
        "format": mf.FORMAT,
        "format_version": mf.FORMAT_VERSION,
        "seq2seq_version": VERSION,
        "precision": "fp32",
        "quantization": None,
        "src_vocab": len(toks[0]),
        "tgt_vocab": len(toks[1]),
        "tokenizers": tokenizers_fingerprint(*toks),
        "exported_from": {
            "checkpoint": which,
            "file": path.name,
            "step": progress.get("step"),
            "best_dev_bleu": progress.get("best_bleu"),
        },
        "files": {f: file_sha256(folder / f) for f in files},
    }
    (folder / mf.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    facts = gather(cfg, run_dir, count_parameters(model), (len(toks[0]), len(toks[1])), ckpt, which)
    (folder / mf.CARD).write_text(card_text(cfg, facts, license, name), encoding="utf-8", newline="\n")
    for f in folder.rglob("*"):
        if f.is_file():
            os.chmod(f, default_file_mode())  # safetensors writes 0600
    mf.read(folder)  # what was written loads: every hash and the format checked once more


def _swap_in(staging: Path, out: Path) -> None:
    """Rename the complete ``staging`` folder to ``out``; an old ``out`` is moved aside first and removed
    after (never lost before the new one is in place)."""
    old = None
    if out.is_dir():
        old = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name + ".old"), suffix=".tmp", dir=out.parent))
        os.rmdir(old)
        os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
