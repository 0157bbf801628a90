"""Loading a recipe: YAML plus ``key=value`` overrides into a validated :class:`~seq2seq.config.schema.Config`.

An override names a key either fully (``train.max_steps=200``) or by its bare name when that name is
unique across sections (``max_steps=200``); a key of one corpus of ``data.sources`` by the corpus's
name (``data.sources.bt.weight=0.5`` or ``sources.bt.weight=0.5``). Unknown keys and values of the
wrong type are a :class:`UserError` that names the key.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from seq2seq.config.paths import resolve_recipe_paths
from seq2seq.config.rules import validate
from seq2seq.config.schema import LIST_SECTIONS, SECTIONS, SINGLE_SOURCE_KEYS, Config
from seq2seq.config.values import build, merge, nest_overrides, read_yaml
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_text


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict:
    """Turn ``["max_steps=200", "model.dropout=0.1"]`` into a nested dict."""
    return nest_overrides(overrides, SECTIONS, Config, LIST_SECTIONS)


def from_dict(values: dict) -> Config:
    cfg = build(Config, values, "", SECTIONS)
    validate(cfg)
    return cfg


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a recipe YAML, apply overrides, validate. ``name`` defaults to the file's stem; paths in the
    file are relative to its folder (:mod:`seq2seq.config.paths`), those in overrides to the working one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    values = resolve_recipe_paths(read_yaml(path, "recipe"), path)
    values.setdefault("name", path.stem)
    extra = parse_overrides(overrides)
    cfg = from_dict(merge(values, extra, SECTIONS))
    cfg.given_keys = frozenset(
        f"{s}.{k}" for v in (values, extra) for s in SECTIONS if isinstance(v.get(s), dict) for k in v[s]
    )
    mixed = sorted(k for k in SINGLE_SOURCE_KEYS if f"data.{k}" in cfg.given_keys) if cfg.data.sources else []
    if mixed:
        key = "kind" if mixed[0] == "source" else mixed[0]
        raise UserError(
            f"config key 'data.{mixed[0]}' is not used with data.sources: give it in the source it is for "
            f"(data.sources.NAME.{key})"
        )
    cfg.recipe_path = path.resolve()
    cfg.overrides = tuple(overrides)
    return cfg


def with_decode(cfg: Config, **overrides) -> Config:
    """``cfg`` with some decode settings replaced (None keeps the value), typed and validated exactly as a
    recipe is: the one check behind the CLI's decoding options and the Python API's keywords."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if not values:
        return cfg
    return from_dict(merge(cfg.to_dict(), {"decode": values}, SECTIONS))


def save_config(cfg: Config, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
