"""Per-stage settings files for make: each pipeline stage reruns only when its own settings changed."""

from __future__ import annotations

from pathlib import Path

import yaml

from seq2seq.config.schema import SPM_SAMPLING_KEYS, Config
from seq2seq.fileio import atomic_write_text

# The settings each pipeline stage depends on; make reruns a stage when its stamp changes.
STAGE_KEYS = {
    "data": ["data"],
    "spm": ["data", "spm"],
    "train": ["data", "spm", "model", "train"],
    "eval": ["data", "spm", "model", "train", "decode"],
}


def stage_settings(cfg: Config, stage: str) -> dict:
    """The settings ``stage`` depends on: its sections of ``cfg``; the spm stage leaves out the keys
    of subword sampling (SPM_SAMPLING_KEYS), which shape training and not the tokenizer model."""
    values = cfg.to_dict()
    out = {s: values[s] for s in STAGE_KEYS[stage]}
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
