"""Per-stage settings files for make: each pipeline stage reruns only when its own settings changed."""

from __future__ import annotations

from pathlib import Path

import yaml

from seq2seq.config.schema import Config
from seq2seq.fileio import atomic_write_text

# The settings each pipeline stage depends on; make reruns a stage when its stamp changes.
STAGE_KEYS = {
    "data": ["data", "clean"],
    "spm": ["data", "clean", "spm"],
    "train": ["data", "clean", "spm", "model", "train"],
    "eval": ["data", "clean", "spm", "model", "train", "decode"],
}
# sections left out of a stage's settings while they hold their defaults: the records and stamps of
# corpora and runs made before the section existed stay those of today's settings
OPTIONAL_SECTIONS = ("clean",)


def stage_values(cfg: Config, stage: str) -> dict:
    """The settings ``stage`` depends on, section by section (an optional section at its defaults left out)."""
    values = cfg.to_dict()
    default = Config().to_dict()
    return {s: values[s] for s in STAGE_KEYS[stage] if s not in OPTIONAL_SECTIONS or values[s] != default[s]}


def write_stamps(cfg: Config, folder: Path) -> None:
    """``<folder>/<stage>.yaml`` with the settings of that stage, rewritten only when they changed."""
    folder = Path(folder)
    for stage in STAGE_KEYS:
        text = yaml.safe_dump(stage_values(cfg, stage), sort_keys=True, allow_unicode=True)
        path = folder / f"{stage}.yaml"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
