"""Run directories: who may write into one (locks, ownership, the recipe it belongs to) and its
checkpoints (versioned, atomic, never executing code on load; averaging)."""

from __future__ import annotations

from seq2seq.runs.checkpoint import average_run, resolve
from seq2seq.runs.ownership import claim, load_run_config

__all__ = ["average_run", "resolve", "claim", "load_run_config"]
