"""Per-stage settings files for make: each pipeline stage reruns only when its own settings changed."""

from __future__ import annotations

from pathlib import Path

import yaml

from seq2seq.config.schema import Config
from seq2seq.fileio import atomic_write_text

# The settings each pipeline stage depends on; make reruns a stage when its stamp changes.
STAGE_KEYS = {
    "data": ["data"],
    "spm": ["data", "spm"],
    "train": ["data", "spm", "model", "train"],
    "eval": ["data", "spm", "model", "train", "decode"],
}


def write_stamps(cfg: Config, folder: Path) -> None:
    """``<folder>/<stage>.yaml`` with the settings of that stage, rewritten only when they changed."""
    values = cfg.to_dict()
    folder = Path(folder)
    for stage, sections in STAGE_KEYS.items():
        text = yaml.safe_dump({s: values[s] for s in sections}, sort_keys=True, allow_unicode=True)
        path = folder / f"{stage}.yaml"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
