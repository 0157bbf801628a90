"""``seq2seq clean`` (``make clean``): delete ``data/<name>/`` of a recipe, and never anything else."""

from __future__ import annotations

import shutil
from pathlib import Path

from seq2seq.config.schema import Config
from seq2seq.constants import WORK_ROOT
from seq2seq.errors import UserError
from seq2seq.runs.ownership import lock


def clean(cfg: Config) -> str:
    """Remove ``data/<cfg.name>/`` (holding its corpus and run locks: not while a stage writes there);
    a name that is empty or not one plain folder name is refused. Returns what was done."""
    name = cfg.name
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise UserError(f"recipe name {name!r} is not one folder name: nothing removed")
    work = Path(WORK_ROOT, name)
    if work.is_symlink():
        work.unlink()
        return f"removed the link {work}"
    if not work.is_dir():
        return f"nothing to remove: {work} does not exist"
    for folder in (cfg.data_dir, cfg.run_path):
        if folder.is_dir() and folder.resolve().is_relative_to(work.resolve()):
            with lock(folder, "clean"):
                pass  # fails at once, naming the holder, while a stage writes there
    shutil.rmtree(work)
    return f"removed {work}"
