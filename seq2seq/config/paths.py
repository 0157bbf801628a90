"""Paths in a recipe are relative to the recipe file's folder, so a recipe and its corpus travel together
and work from any working folder. Absolute paths and URLs are kept as written, and so is every path
of a recipe read from its own folder.

A recipe written for the old rule (paths relative to the working folder) keeps working: a path that
exists only that way is read that way, with a one-line warning naming the key and the fix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

LOCAL_SOURCES = ("text", "tsv", "jsonl")


def _is_relative_path(value) -> bool:
    return isinstance(value, str) and value != "" and "://" not in value and not os.path.isabs(value)


def _choose(key: str, value: str, base: Path, exists: Callable[[Path], bool], warn) -> str:
    """``value`` relative to ``base`` (the recipe's folder), or the old reading when only it exists."""
    new = Path(os.path.normpath(base / value))
    if exists(Path(value)) and not exists(new):
        warn(
            f"warning: {key} '{value}' is found relative to the working folder only; paths in a recipe are "
            f"relative to the recipe file: write '{os.path.relpath(Path(value).resolve(), base)}' (or an "
            f"absolute path)"
        )
        return value
    return str(new)


def resolve_recipe_paths(values: dict, recipe: Path, warn: Callable[[str], None] | None = None) -> dict:
    """The recipe's ``values`` (as read from its YAML, before overrides) with relative paths made
    relative to ``recipe``'s folder; unchanged when that folder is the working folder."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    base = recipe.resolve().parent
    if base == Path.cwd().resolve():
        return values
    values = dict(values)
    data = dict(values.get("data") or {}) if isinstance(values.get("data"), dict) else None
    train = dict(values.get("train") or {}) if isinstance(values.get("train"), dict) else None
    if _is_relative_path(values.get("run_dir")):
        values["run_dir"] = _choose("run_dir", values["run_dir"], base, Path.exists, warn)
    if train is not None and _is_relative_path(train.get("init_from")):
        train["init_from"] = _choose("train.init_from", train["init_from"], base, Path.exists, warn)
        values["train"] = train
    if data is not None:
        if _is_relative_path(data.get("dir")):
            data["dir"] = _choose("data.dir", data["dir"], base, Path.exists, warn)
        local = data.get("source", "embedded") in LOCAL_SOURCES
        if local and _is_relative_path(data.get("url")):
            data["url"] = _choose("data.url", data["url"], base, Path.exists, warn)
        elif local and not data.get("url") and isinstance(data.get("splits"), dict):
            pattern = str(data.get("file_pattern") or "{split}.{lang}")

            def split_exists(prefix: Path) -> bool:  # any file of the split, whatever the language
                try:
                    name = pattern.format(split=prefix, lang="*")
                except (KeyError, IndexError, ValueError):
                    return False
                return any(Path(name).parent.glob(Path(name).name))

            data["splits"] = {
                s: _choose(f"data.splits.{s}", v, base, split_exists, warn) if _is_relative_path(v) else v
                for s, v in data["splits"].items()
            }
        if isinstance(data.get("sources"), list):
            data["sources"] = [_source_paths(s, i, base, warn) for i, s in enumerate(data["sources"])]
        values["data"] = data
    return values


def _source_paths(source, index: int, base: Path, warn) -> dict:
    """One corpus of ``data.sources`` with its relative ``url`` made relative to the recipe's folder."""
    if not isinstance(source, dict) or source.get("kind", "text") not in LOCAL_SOURCES:
        return source
    if not _is_relative_path(source.get("url")):
        return source
    key = f"data.sources[{index + 1}].url"
    return {**source, "url": _choose(key, source["url"], base, Path.exists, warn)}
