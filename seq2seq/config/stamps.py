"""Per-stage settings files for make: each pipeline stage reruns only when its own settings changed."""

from __future__ import annotations

from pathlib import Path

import yaml

from seq2seq.config.schema import SPM_SAMPLING_KEYS, Config
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


def stage_settings(cfg: Config, stage: str) -> dict:
    """The settings ``stage`` depends on, section by section: an optional section at its defaults is left
    out, and the spm stage leaves out the keys of subword sampling (SPM_SAMPLING_KEYS), which shape
    training and not the tokenizer model."""
    values, default = cfg.to_dict(), Config().to_dict()
    out = {s: values[s] for s in STAGE_KEYS[stage] if s not in OPTIONAL_SECTIONS or values[s] != default[s]}
    if stage == "spm":
        out["spm"] = {k: v for k, v in out["spm"].items() if k not in SPM_SAMPLING_KEYS}
    return out


def write_stamps(cfg: Config, folder: Path) -> None:
    """``<folder>/<stage>.yaml`` with the settings of that stage, rewritten only when they changed."""
    folder = Path(folder)
    for stage in STAGE_KEYS:
        text = yaml.safe_dump(stage_settings(cfg, stage), sort_keys=True, allow_unicode=True)
        path = folder / f"{stage}.yaml"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
