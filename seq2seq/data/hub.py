"""Hugging Face Hub datasets: the files of a local mirror, or the Hub itself through ``datasets``.

A mirror is a folder as the Hub's own tools leave it, found without configuration:

* ``hf download NAME --repo-type dataset --local-dir DIR`` (``huggingface-cli download`` before
  huggingface_hub 1.0): the repository's files,
  e.g. ``data/train-00000-of-00002.parquet`` or, per config, ``de-en/validation-00000-of-00001.parquet``;
* the same command without ``--local-dir`` (the Hub cache): ``DIR/datasets--OWNER--NAME/snapshots/REV/...``;
* the Hub's parquet conversion (``refs/convert/parquet``): ``de-en/train/0000.parquet`` or
  ``de-en/NAME-train.parquet``;
* plain files per split: ``train.jsonl``, ``validation.parquet`` (or ``data.file_pattern``).

Split names are the dataset's own (``validation``); ``data.splits`` maps ours to them. Parquet is
read with pyarrow in row batches, JSON lines line by line: nothing is copied into a cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, Optional

from seq2seq.config.schema import SourceConfig
from seq2seq.errors import UserError
from seq2seq.data.sources import jsonl_rows

EXTENSIONS = (".parquet", ".jsonl", ".jsonl.gz", ".json", ".json.gz")
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.")
# where a split's files may lie in one folder, in order of preference
LAYOUTS = ("{s}-[0-9]*-of-[0-9]*", "{s}", "{s}/*", "*-{s}", "*-{s}-[0-9]*-of-[0-9]*")


def _snapshot(repo: Path) -> Optional[Path]:
    """The snapshot of a Hub-cache repository folder (``refs/main``'s, else the newest)."""
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file() and (snaps / ref.read_text().strip()).is_dir():
        return snaps / ref.read_text().strip()
    found = sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _bases(mirror: Path, dc: SourceConfig) -> list[Path]:
    """Folders that may hold the split files, most specific first."""
    roots = [mirror]
    for repo in (mirror, mirror / ("datasets--" + dc.dataset.replace("/", "--"))):
        snap = _snapshot(repo)
        if snap is not None:
            roots.insert(0, snap)
    bases = []
    for root in roots:
        if dc.dataset_config:
            bases += [root / dc.dataset_config, root / "data" / dc.dataset_config]
        bases += [root / "data", root]
    return [b for b in bases if b.is_dir()]


def _match(base: Path, split: str, pattern: str) -> list[Path]:
    globs = [pattern.format(split=split)] if pattern and "{lang}" not in pattern else []
    globs += [layout.format(s=split) + ext for layout in LAYOUTS for ext in EXTENSIONS]
    for g in globs:
        found = sorted(p for p in base.glob(g) if p.is_file())
        if found:
            return found
    return []


def _check_shards(files: list[Path], split: str) -> None:
    """Every shard of a sharded split must be there: a half-finished download loses no rows silently."""
    shards = [SHARD.search(p.name) for p in files]
    if files and all(shards):
        total = int(shards[0].group(2))
        have = {int(m.group(1)) for m in shards}
        missing = sorted(set(range(total)) - have)
        if missing:
            example = SHARD.sub(f"-{missing[0]:05d}-of-{total:05d}.", files[0].name)
            raise UserError(
                f"mirror holds {len(have)} of {total} shards of split '{split}': {example} is missing "
                f"from {files[0].parent}"
            )


def _available(base: Path) -> list[str]:
    """The split names a folder seems to hold (for the error message)."""
    names = set()
    for p in base.rglob("*"):
        if p.is_file() and p.name.endswith(EXTENSIONS):
            stem = SHARD.split(p.name)[0] if SHARD.search(p.name) else p.name.split(".")[0]
            names.add(p.parent.name if re.fullmatch(r"\d+", stem) else stem)
    return sorted(names)


def mirror_files(mirror: Path, dc: SourceConfig, split: str) -> list[Path]:
    """The files of ``split`` (the dataset's own split name) of hub dataset ``dc.dataset`` in ``mirror``."""
    bases = _bases(mirror, dc)
    for base in bases:
        files = _match(base, split, dc.file_pattern)
        if files:
            _check_shards(files, split)
            return files
    where = ", ".join(str(b) for b in bases) or str(mirror)
    have = sorted({s for b in bases[:1] for s in _available(b)})
    configs = (
        sorted(p.name for p in mirror.iterdir() if p.is_dir() and _available(p)) if mirror.is_dir() else []
    )
    hint = f"; files there are for: {', '.join(have)}" if have else ""
    if configs and not dc.dataset_config:
        hint += f"; config folders: {', '.join(configs)} (set data.dataset_config)"
    raise UserError(
        f"no files for split '{split}' of {dc.dataset} in mirror {mirror} (looked for {split}.parquet, "
        f"{split}-00000-of-N.parquet, {split}/*.parquet, {split}.jsonl in {where}){hint}"
    )


def parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """("<file>: row N", row) of a parquet file, read in batches of rows."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        number = 0
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield f"{path}: row {number}", row
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"could not read {path}: {str(e).splitlines()[0]}") from None


def file_rows(paths: list[Path]) -> Iterator[tuple[str, dict]]:
    """The rows of a split's files (parquet or JSON lines), file after file."""
    for path in paths:
        yield from parquet_rows(path) if path.name.endswith(".parquet") else jsonl_rows(str(path))


# ---------------------------------------------------------------- the Hub itself


def _offline_reason(dataset: str) -> Optional[str]:
    """Why the Hub is not to be asked (offline settings, or it cannot be reached), or None."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var} is set"
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        huggingface_hub.HfApi().dataset_info(dataset, timeout=10)
    except RepositoryNotFoundError:
        raise UserError(
            f"no dataset '{dataset}' on the Hugging Face Hub (or it is private: hf auth login)"
        ) from None
    except HfHubHTTPError:
        return None  # reachable (gated, rate-limited, ...): datasets says what it needs
    except Exception as e:  # no network: fail now, not after a minute of retries
        return f"the Hub cannot be reached ({str(e).strip().splitlines()[0] if str(e).strip() else e})"
    return None


def load_hub(dc: SourceConfig):
    """``datasets.load_dataset(dataset, dataset_config)``; offline, only what the Hugging Face cache
    holds (``HF_HOME``, default ``~/.cache/huggingface``), with one clear error when it holds nothing."""
    import datasets
    import huggingface_hub.constants as hub_constants

    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    reason = _offline_reason(dc.dataset)
    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    if reason:  # the cache only: an immediate answer instead of retries
        datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(dc.dataset, dc.dataset_config)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if reason:
            msg = f"{reason} and the Hugging Face cache does not hold it"
        raise UserError(
            f"could not load hub dataset {dc.dataset}: {msg} (offline? download it elsewhere with "
            f"`hf download {dc.dataset} --repo-type dataset --local-dir DIR` and pass --mirror DIR / MIRROR=DIR)"
        ) from None
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved
