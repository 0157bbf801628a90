"""Who may write into a run directory (or a corpus folder): one stage at a time, of one recipe.

:func:`claim` is what every stage that writes into a folder enters first (download for
``data_dir``; spm, train, evaluate, tune-decode and average for ``run_dir``):

* an exclusive lock, ``fcntl.flock`` on ``<folder>/.lock`` (non-blocking): a second process stops at
  once with a one-line error naming the holder's PID and stage, which the lock file records. The
  lock file is removed on release. Under torchrun only rank 0 locks (the other ranks are the same job
  and write nothing).
* an ownership record, ``<folder>/owner.json`` (a corpus folder: the "owner" entry of the
  manifest.json that the download stage writes): the recipe file that first wrote the folder (its
  absolute path, so a copied run stays its own, and its path relative to the folder, so does a
  checkout moved with its runs) and the settings of the stages that wrote it. A stage of another
  recipe file (two recipes with the same file name share ``data/<name>/``) is refused with a message
  saying how to proceed (``run_dir=``); :func:`check_spm` refuses other spm settings while
  checkpoints depend on the tokenizer. A config built in code (no recipe file) is never refused for
  its recipe; the record is written when the stage succeeds.
* stale temporary files of killed writers (see :func:`seq2seq.fileio.remove_stale_temps`) anywhere
  in the folder are removed once the lock is held.

:func:`load_run_config` reads a run's ``config.yaml`` with a one-line error for every kind of damage.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Iterator, Optional

from seq2seq.config.load import from_dict
from seq2seq.config.schema import Config
from seq2seq.config.stamps import STAGE_KEYS, stage_settings
from seq2seq.config.values import read_yaml
from seq2seq.constants import CONFIG, LOCK, MANIFEST, OWNER, checkpoints_dir, spm_dir
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_text, remove_stale_temps


def main_process() -> bool:
    """Rank 0 of a torchrun job (or a plain process): torchrun's RANK, as seq2seq.training.distributed reads it."""
    return int(os.environ.get("RANK", "0")) == 0


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    return f"PID {text[0]}, seq2seq {' '.join(text[1:])}" if text else "PID unknown"


@contextlib.contextmanager
def lock(folder: Path, stage: str) -> Iterator[None]:
    """Hold ``<folder>/.lock`` exclusively while the block runs; UserError if another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UserError(
                f"{folder} is in use by another process ({holder}): wait for it to finish, or give this "
                f"one its own run_dir=..."
            ) from None
        except OSError as e:  # a file system without locks (ENOLCK)
            os.close(fd)
            raise UserError(f"could not lock {path}: {e.strerror or e}") from None
        try:  # the previous holder may have removed the file we opened: lock the one at the path
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {stage}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding it: nobody can have locked the file at the path
        os.close(fd)


def remove_stale(folder: Path) -> None:
    """Temporary files of dead writers in ``folder`` and below (the caller holds the lock)."""
    subs = (p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink() and not p.name.endswith(".tmp"))
    for sub in [folder, *subs]:
        remove_stale_temps(sub, legacy=True)


def load_run_config(run_dir: Path) -> Config:
    """The config.yaml of a run directory; missing, empty or damaged: a one-line UserError saying so."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        if any(checkpoints_dir(run_dir).glob("*.pt")):
            raise UserError(
                f"{path} is missing although the run has checkpoints: restore it (seq2seq config RECIPE > {path})"
            )
        if spm_dir(run_dir).is_dir():
            raise UserError(
                f"{run_dir} has no trained model yet (no config.yaml, no checkpoint): train it first"
            )
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    values = read_yaml(path, "run config")
    if not values:
        raise UserError(f"run config {path} is empty: restore it (seq2seq config RECIPE > {path})")
    try:
        return from_dict(values)
    except UserError as e:
        raise UserError(
            f"run config {path} is damaged ({e}): restore it (seq2seq config RECIPE > {path})"
        ) from None


# ---- ownership -----------------------------------------------------------------------------------
def read_owner(folder: Path, in_manifest: bool = False) -> dict:
    """The ownership record of ``folder``: owner.json, or (a corpus folder) manifest.json's "owner"."""
    path = folder / (MANIFEST if in_manifest else OWNER)
    if not path.is_file():
        return {}
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}  # damaged: treated as unowned, rewritten by the next stage that succeeds
    owner = owner.get("owner") if in_manifest and isinstance(owner, dict) else owner
    return owner if isinstance(owner, dict) else {}


def _recipe(cfg: Optional[Config], folder: Path) -> Optional[dict]:
    """Where ``cfg``'s recipe file is: absolute, and relative to ``folder`` (None: built in code)."""
    path = getattr(cfg, "recipe_path", None)
    if path is None:
        return None
    path = Path(path).resolve()
    return {"path": str(path), "relative": os.path.relpath(path, folder.resolve())}


def check_recipe(folder: Path, cfg: Optional[Config], owner: dict) -> None:
    """The same recipe file: the same absolute path (a run folder copied elsewhere), or the same path
    relative to the folder (recipes and runs moved together, e.g. a renamed checkout)."""
    mine, theirs = _recipe(cfg, folder), owner.get("recipe")
    if mine is None or not isinstance(theirs, dict) or any(mine[k] == theirs.get(k) for k in mine):
        return
    corpus = (folder / MANIFEST).is_file()
    where, record_file = ("data.dir=...", MANIFEST) if corpus else ("run_dir=...", OWNER)
    raise UserError(
        f"{folder} belongs to recipe {theirs.get('path')}, not {mine['path']}: give this recipe its own "
        f"folder ({where}), or delete {folder / record_file} to hand it over"
    )


def owner_entry(cfg: Config, folder: Path, stage: str, in_manifest: bool = False) -> dict:
    """The ownership record of ``folder`` once ``stage`` of ``cfg``'s recipe has written into it (the
    first recipe stays the owner). The download stage puts it into its manifest itself."""
    new = dict(read_owner(folder, in_manifest))
    if new.get("recipe") is None:
        new["recipe"] = _recipe(cfg, folder)
    new["name"] = new.get("name") or cfg.name
    new["stages"] = {
        **new.get("stages", {}),
        stage: stage_settings(cfg, stage) if stage in STAGE_KEYS else {},
    }
    return new


def record(folder: Path, cfg: Optional[Config], stage: str) -> None:
    """Write down (owner.json) that ``stage`` of ``cfg``'s recipe wrote into ``folder``."""
    if cfg is None:
        return
    new = owner_entry(cfg, folder, stage)
    if new != read_owner(folder):
        atomic_write_text(folder / OWNER, json.dumps(new, indent=2, ensure_ascii=False) + "\n")


def remember_overrides(folder: Path, cfg: Config) -> None:
    """Record the ``key=value`` overrides ``cfg`` was loaded with, when training writes the run's
    config.yaml from it: the two always describe the same settings (a finished run trains nothing and
    keeps those it was trained with; :mod:`seq2seq.runs.settings` reads them back)."""
    owner = read_owner(folder)
    overrides = list(getattr(cfg, "overrides", ()))
    if owner.get("overrides") != overrides:  # the same ones: the file stays as it is
        new = {**owner, "overrides": overrides}
        atomic_write_text(folder / OWNER, json.dumps(new, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def claim(
    folder: Path, cfg: Optional[Config], stage: str, create: bool = True, in_manifest: bool = False
) -> Iterator[dict]:
    """Lock ``folder``, check that it is ``cfg``'s recipe's, remove stale temporary files, run the
    block (it gets the ownership record as it was), then record the stage (``in_manifest``: the
    stage writes :func:`owner_entry` into its manifest.json itself). A torchrun rank other than 0
    does none of this; nor does a stage that needs an existing folder (``create`` False) when there
    is none (it fails on its own, and nothing is created)."""
    folder = Path(folder)
    if not main_process() or (not create and not folder.is_dir()):
        yield {}
        return
    with lock(folder, stage):
        owner = read_owner(folder, in_manifest)
        check_recipe(folder, cfg, owner)
        remove_stale(folder)
        yield owner
        if not in_manifest:
            record(folder, cfg, stage)


def check_spm(run_dir: Path, cfg: Config, owner: dict) -> None:
    """Refuse to retrain a tokenizer with other spm settings while checkpoints depend on it."""
    old = owner.get("stages", {}).get("spm", {}).get("spm")
    new = stage_settings(cfg, "spm")["spm"]  # without the sampling keys: they leave the models alone
    if old is None or {k: v for k, v in old.items() if k in new} == new or not has_checkpoints(run_dir):
        return
    changed = ", ".join(f"spm.{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v)
    raise UserError(
        f"{run_dir / 'spm'} was built with other settings ({changed}) and the checkpoints in "
        f"{checkpoints_dir(run_dir)} depend on it: use run_dir=... for the new settings, or delete "
        f"{checkpoints_dir(run_dir)}"
    )


def has_checkpoints(run_dir: Path) -> bool:
    return any(checkpoints_dir(run_dir).glob("*.pt"))
