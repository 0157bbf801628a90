"""Typed values from YAML: a recipe's plain values converted to the types of dataclass fields, with a
one-line error naming the key; nested sections built from mappings."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from seq2seq.errors import UserError


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases (``*name``): a few lines of aliases can expand to billions of values (an
    "alias bomb"), and a recipe never needs them. A key given twice in one mapping (``train:`` twice)
    is an error naming both lines: plain YAML keeps the last one and silently drops the first."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    line = first.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if line != key_node.start_mark.line + 1:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {line})", key_node.start_mark
                    )
        return super().construct_mapping(node, deep)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a recipe", event.start_mark
            )
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` without aliases: the one way recipe values are parsed (files and overrides)."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_error(e: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where it is."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem:
        mark = e.problem_mark
        return f"{e.problem}" + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else "")
    return str(e).splitlines()[0] if str(e) else type(e).__name__


NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a file name: no separators, no "..", not hidden


def check_name(label: str, value) -> str:
    """``value`` if it can be used as (part of) a file name in a run directory, else a UserError."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise UserError(
            f"{label}: {value!r} is not a plain name (letters, digits, '_', '-', '.'; no path separators or '..')"
        )
    return value


def coerce(key: str, value: Any, typ: Any) -> Any:
    """Convert ``value`` to ``typ`` or raise a UserError naming ``key``."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        (typ,) = [a for a in typing.get_args(typ) if a is not type(None)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise UserError(f"config key '{key}': expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise UserError(f"config key '{key}': expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value))
        except ValueError:
            raise UserError(f"config key '{key}': expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise UserError(f"config key '{key}': expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"config key '{key}': expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise UserError(f"config key '{key}': expected a finite number, got {value!r}")
        return number
    if typ is str:
        if value is None or isinstance(value, (dict, list)):
            raise UserError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    if origin is list:  # a list of mappings, each built into the item dataclass (data.sources)
        value = _parse_mapping(key, value, "a list") if isinstance(value, str) else value
        if not isinstance(value, list):
            raise UserError(f"config key '{key}': expected a list, got {value!r}")
        (item,) = typing.get_args(typ)
        for i, entry in enumerate(value):
            if not isinstance(entry, (dict, item)):
                raise UserError(f"config key '{key}': item {i + 1} must be a mapping, got {entry!r}")
        return [e if isinstance(e, item) else build(item, e, f"{key}.", {}) for e in value]
    if typ is dict:
        value = _parse_mapping(key, value) if isinstance(value, str) else value
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}': expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    raise AssertionError(f"unsupported config type {typ} for {key}")


def _parse_mapping(key: str, text: str, what: str = "a mapping"):
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise UserError(f"config key '{key}': expected {what}, not valid YAML: {yaml_error(e)}") from None


def build(cls, values: dict, prefix: str, sections: dict):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise unknown_key(full, [f"{prefix}{n}" for n in names])
        if key in sections and not prefix:
            if not isinstance(value, dict):
                raise UserError(f"config key '{key}': expected a section (mapping), got {value!r}")
            kwargs[key] = build(sections[key], value, f"{key}.", sections)
        else:
            kwargs[key] = coerce(full, value, hints[key])
    return cls(**kwargs)


def resolve_key(key: str, sections: dict, top_level: tuple[str, ...]) -> tuple[str, ...]:
    """``max_steps`` -> ("train", "max_steps"); ``train.max_steps`` stays; unknown raises."""
    parts = tuple(key.split("."))
    if len(parts) == 2 and parts[0] in sections:
        if parts[1] not in {f.name for f in dataclasses.fields(sections[parts[0]])}:
            raise unknown_key(key, _all_keys(sections, top_level))
        return parts
    if len(parts) == 1:
        if parts[0] in top_level:
            return parts
        owners = [s for s, cls in sections.items() if parts[0] in {f.name for f in dataclasses.fields(cls)}]
        if len(owners) == 1:
            return (owners[0], parts[0])
        if len(owners) > 1:
            raise UserError(
                f"config key '{key}' is ambiguous: write one of " + ", ".join(f"{o}.{key}" for o in owners)
            )
    bare = [k.split(".")[-1] for k in _all_keys(sections, top_level)]
    raise unknown_key(key, _all_keys(sections, top_level) + (bare if len(parts) == 1 else []))


def _all_keys(sections: dict, top_level: tuple[str, ...]) -> list[str]:
    return [*top_level, *(f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls))]


def unknown_key(key: str, known: list[str]) -> UserError:
    """The error of an unknown key, with the closest known names ("did you mean train.max_steps?")."""
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.75)
    hint = f" (did you mean {' or '.join(dict.fromkeys(close))}?)" if close else ""
    return UserError(f"unknown config key '{key}'{hint}")


class ItemOverrides(dict):
    """Overrides of the items of a list key by name (``data.sources.bt.weight=0.5``): item name ->
    {key: value}, applied by :func:`merge` to the item of that ``name``."""

    def apply(self, items, key: str) -> list:
        items = list(items or [])
        names = [i.get("name") if isinstance(i, dict) else None for i in items]
        for name, values in self.items():
            if name not in names:
                have = ", ".join(str(n) for n in names) or "none"
                raise UserError(
                    f"override of {key}.{name}: no item of {key} is named '{name}' (names: {have})"
                )
            at = names.index(name)
            items[at] = {**items[at], **values}
        return items


def _item_override(key: str, raw: str, lists: dict):
    """(list key, item name, field, value) of an override ``data.sources.NAME.FIELD=value``, else None."""
    for list_key, cls in lists.items():
        section, name = list_key.split(".")
        for prefix in (f"{list_key}.", f"{name}."):
            rest = key[len(prefix) :] if key.startswith(prefix) else ""
            if rest.count(".") == 1:
                item, field_name = rest.split(".")
                value = (
                    raw if typing.get_type_hints(cls).get(field_name) is str else _override_value(raw, key)
                )
                return list_key, item, field_name, value
    return None


def _override_value(raw: str, item: str):
    try:
        return load_yaml(raw) if raw.strip() else ""
    except yaml.composer.ComposerError as e:  # an alias
        raise UserError(f"override '{item}': {yaml_error(e)}") from None
    except yaml.YAMLError:
        return raw  # not YAML ("{split}.{lang}"): the text itself, checked by type below


def nest_overrides(overrides, sections: dict, root, lists: dict | None = None) -> dict:
    """Turn ``["max_steps=200", "model.dropout=0.1"]`` into a nested dict; ``root`` is the top-level
    dataclass, ``sections`` its section dataclasses by name, ``lists`` the list keys whose items are
    overridden by name (``data.sources.bt.weight=0.5``: :class:`ItemOverrides`)."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        found = _item_override(key.strip(), raw, lists or {})
        if found:
            list_key, name, field_name, value = found
            section, list_name = list_key.split(".")
            target = nested.setdefault(section, {})
            items = target.setdefault(list_name, ItemOverrides())
            if isinstance(items, ItemOverrides):
                items.setdefault(name, {})[field_name] = value
            else:  # the whole list was given before: change its item
                target[list_name] = ItemOverrides({name: {field_name: value}}).apply(items, list_key)
            continue
        top_level = tuple(k for k in typing.get_type_hints(root) if k not in sections)
        parts = resolve_key(key.strip(), sections, top_level)
        value = _override_value(raw, item)
        owner = sections[parts[0]] if len(parts) == 2 else root
        if typing.get_type_hints(owner).get(parts[-1]) is str and not isinstance(value, (dict, list)):
            value = raw  # a string key keeps the text as written ("007", "1e3")
        target = nested
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = value
    return nested


def merge(base: dict, extra: dict, sections: dict) -> dict:
    """``base`` with ``extra``'s values, section by section."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, ItemOverrides):
            out[k] = v.apply(out.get(k), k)
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and k in sections:
            out[k] = merge(out[k], v, sections)
        else:
            out[k] = v
    return out


def read_yaml(path: Path, what: str) -> dict:
    """A YAML mapping from ``path`` (empty file: {}); every problem a one-line UserError."""
    try:
        values = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{what} {path} is not valid YAML: {yaml_error(e)}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not valid YAML: not UTF-8 text (byte {e.start})") from None
    if not isinstance(values, dict):
        raise UserError(f"{what} {path} must be a mapping of sections")
    return values
