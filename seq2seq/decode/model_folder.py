"""A self-contained model folder: what ``seq2seq export`` writes and what ``seq2seq push`` publishes.

Everything in it is data; loading one runs no code and unpickles nothing::

    DIR/
      seq2seq.json        the manifest: format name and version, vocabulary sizes, the tokenizers'
                          fingerprint, precision/quantization, and the sha256 of every file below
      config.yaml         the run's settings (model, decode, train.max_len, languages, spm.joint),
                          local paths removed
      weights.safetensors the parameters (safetensors: a JSON header and raw tensor bytes)
      spm/joint.model     the SentencePiece model(s): joint.model, or src.model and tgt.model
      README.md           the model card (not hashed: it may be edited)

A folder is checked before anything is built from it: the manifest must name this format and a
version this code reads, and every file must be there with the recorded sha256 (a truncated or
edited weights file, a missing tokenizer: one-line errors). ``precision`` is "fp32" and
``quantization`` null today; another value (an int8 export) needs a seq2seq that reads it, and this one
says so instead of loading wrong numbers.

``hf://OWNER/NAME[@REVISION]`` names a folder on the Hugging Face Hub: it is fetched with
``huggingface_hub.snapshot_download`` into the Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``).
Offline (``HF_HUB_OFFLINE=1``, or the Hub cannot be reached) a cached snapshot is used, and its absence
is one line saying so. The snapshot's commit is recorded (:func:`describe`), so an output names the exact
revision it came from.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

import torch

from seq2seq.config.load import from_dict
from seq2seq.config.schema import Config
from seq2seq.config.values import read_yaml
from seq2seq.data.tokenizer import fingerprint_matches, load_tokenizers
from seq2seq.errors import UserError
from seq2seq.fileio import file_sha256
from seq2seq.model.network import build_model

MANIFEST = "seq2seq.json"
FORMAT = "seq2seq-model-folder"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
CONFIG = "config.yaml"
CARD = "README.md"
PRECISIONS = ("fp32",)  # what this version reads; an int8 export adds its own value
HUB = re.compile(r"hf:/+(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+?)(?:@(?P<revision>[^/@\s]+))?/?")


@dataclass
class ModelFolder:
    """A checked model folder: where it is, its manifest and config, and (from the Hub) its pin."""

    path: Path
    manifest: dict
    cfg: Config
    hub: Optional[str] = None  # "hf://OWNER/NAME@COMMIT" when it came from the Hub
    files: dict = field(default_factory=dict)


def is_hub(ref) -> bool:
    """``ref`` is an ``hf://OWNER/NAME[@REVISION]`` reference (also after Path() made it ``hf:/...``)."""
    return HUB.fullmatch(str(ref)) is not None


def is_model_folder(ref) -> bool:
    """``ref`` names a model folder (a folder with seq2seq.json, or a hub reference), not a run directory."""
    return is_hub(ref) or (Path(ref) / MANIFEST).is_file()


_resolved: dict[str, tuple[Path, str]] = {}  # hub reference -> (snapshot folder, pinned reference)


def _offline() -> bool:
    import huggingface_hub.constants as hub_constants

    env = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    return bool(hub_constants.HF_HUB_OFFLINE) or env


def resolve(ref) -> tuple[Path, Optional[str]]:
    """(local folder, pinned hub reference or None) of a folder path or an ``hf://`` reference."""
    m = HUB.fullmatch(str(ref))
    if m is None:
        return Path(ref), None
    key = str(ref)
    if key not in _resolved:
        _resolved[key] = _download(m["repo"], m["revision"])
    return _resolved[key]


def _download(repo: str, revision: Optional[str]) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    name = f"hf://{repo}" + (f"@{revision}" if revision else "")
    offline = _offline()
    try:
        path = Path(snapshot_download(repo, revision=revision, local_files_only=offline))
    except (RepositoryNotFoundError, GatedRepoError):
        raise UserError(
            f"{name}: no such model repository on the Hugging Face Hub (or it is private or gated: "
            f"hf auth login)"
        ) from None
    except RevisionNotFoundError:
        raise UserError(f"{name}: the repository has no revision '{revision}'") from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub cannot be reached"
        raise UserError(
            f"{name}: {why} and the Hugging Face cache holds no snapshot of it (download it once with "
            f"network, or copy the folder and give its path)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{name}: could not download it ({first})") from None
    return path, f"hf://{repo}@{path.name}"  # a cache snapshot folder is named by its commit


def describe(ref) -> str:
    """What an output records as the model: the folder's path, or the hub reference pinned to its commit."""
    path, pinned = resolve(ref)
    return pinned or str(path)


def _safe_name(name) -> bool:
    """A manifest's file name: relative, inside the folder (no .., no absolute path)."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts


def read(ref) -> ModelFolder:
    """The model folder ``ref`` (a path or ``hf://``), its manifest and every file checked; nothing is
    executed or unpickled (JSON, YAML read with safe_load, and hashes)."""
    path, pinned = resolve(ref)
    name = pinned or str(path)
    if not path.is_dir():
        raise UserError(f"model folder not found: {path}")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(
            f"{name} is not a seq2seq model folder (no {MANIFEST}; make one with seq2seq export RUN_DIR -o DIR)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{name}: {MANIFEST} is damaged (not JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(
            f"{name} is not a seq2seq model folder ({MANIFEST} does not name the format {FORMAT})"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"{name} has model-folder format version {version!r}; this seq2seq reads version {FORMAT_VERSION}"
            + (" (upgrade seq2seq)" if isinstance(version, int) and version > FORMAT_VERSION else "")
        )
    precision, quantization = manifest.get("precision", "fp32"), manifest.get("quantization")
    if precision not in PRECISIONS or quantization is not None:
        raise UserError(
            f"{name} holds {quantization or precision} weights; this seq2seq reads {', '.join(PRECISIONS)} "
            f"only (upgrade seq2seq)"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or WEIGHTS not in files or CONFIG not in files:
        raise UserError(f"{name}: {MANIFEST} lists no {WEIGHTS} and {CONFIG}: the folder is damaged")
    for rel, digest in files.items():
        if not _safe_name(rel):
            raise UserError(f"{name}: {MANIFEST} names a file outside the folder ({rel!r})")
        f = path / rel
        if not f.is_file():
            raise UserError(
                f"{name}: {rel} is missing: the folder is incomplete (export or download it again)"
            )
        if file_sha256(f) != digest:
            raise UserError(
                f"{name}: {rel} is damaged or was changed (sha256 differs from {MANIFEST}): export or "
                f"download it again"
            )
    try:
        cfg = from_dict(read_yaml(path / CONFIG, "model config"))
    except UserError as e:
        raise UserError(f"{name}: {e}") from None
    return ModelFolder(path, manifest, cfg, pinned, files)


def load(ref, which: Optional[str] = None, device: Optional[torch.device] = None):
    """(config, model in eval mode, (source tokenizer, target tokenizer)) of a model folder, as
    :func:`seq2seq.decode.loading.load_run_with_tokenizers` gives them for a run directory. ``which``: a
    folder holds one set of weights; only the default names (None, best, the exported one) fit it."""
    folder = read(ref)
    name, m = folder.hub or str(folder.path), folder.manifest
    exported = str(m.get("exported_from", {}).get("checkpoint", "best"))
    if which not in (None, "best", exported, folder.cfg.decode.checkpoint):
        raise UserError(
            f"{name} is a model folder with one set of weights (exported from checkpoint {exported}): "
            f"drop --checkpoint {which}"
        )
    cfg = folder.cfg
    toks = load_tokenizers(folder.path, cfg.spm.joint)
    try:
        src_vocab, tgt_vocab = int(m["src_vocab"]), int(m["tgt_vocab"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{name}: {MANIFEST} has no vocabulary sizes: the folder is damaged") from None
    if (src_vocab, tgt_vocab) != (len(toks[0]), len(toks[1])) or not fingerprint_matches(
        m.get("tokenizers"), *toks
    ):
        raise UserError(f"{name}: the SentencePiece models are not those the weights were trained with")
    model = build_model(cfg.model, src_vocab, tgt_vocab)
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        load_model(model, folder.path / WEIGHTS, strict=True)
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{name}: {WEIGHTS} does not hold this model's parameters ({first})") from None
    return cfg, model.to(device or torch.device("cpu")).eval(), toks
