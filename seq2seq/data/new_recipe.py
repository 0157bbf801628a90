"""``seq2seq new-recipe``: a recipe for one's own corpus, every key spelled out with its default and
the comment of :mod:`seq2seq.config` (read by :func:`seq2seq.config.recipes.field_docs`).

A split is given as a path prefix: ``corpus/train`` stands for ``corpus/train.de`` +
``corpus/train.en`` (plain text, one sentence per line, optionally ``.gz``), ``corpus/train.tsv``
(both sides in one file) or ``corpus/train.jsonl`` (one JSON object per line).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import yaml

from seq2seq.config.schema import SECTIONS, Config, SourceConfig
from seq2seq.config.load import load_config
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_text
from seq2seq.data.sources import looks_like_header, text_lines
from seq2seq.config.recipes import field_docs, shipped_values
from seq2seq.config.load import from_dict

DATA_KEYS = (
    "source",
    "src_lang",
    "tgt_lang",
    "splits",
    "url",
    "file_pattern",
    "src_field",
    "tgt_field",
    "dir",
)


@dataclass
class NewRecipe:
    """What ``seq2seq new-recipe`` was told."""

    name: str
    src_lang: str
    tgt_lang: str
    prefixes: dict  # our split name -> path prefix ("train" and "dev", optionally "test")
    output: Optional[Path] = None  # a file, or a folder for <name>.yaml (default: ./<name>.yaml)
    src_field: str = ""  # tsv/jsonl: found from the first line unless given
    tgt_field: str = ""
    force: bool = False
    size: str = ""  # cpu | gpu: the shipped settings of that size ("" with like "": cpu unless a GPU is visible)
    like: str = ""  # a recipe file or a shipped recipe's name: its spm, model, train and decode settings


SIZES = {"cpu": "multi30k-en-de-cpu", "gpu": "multi30k-en-de"}  # the shipped recipe of each size
TRAINING_SECTIONS = ("spm", "model", "train", "decode")


def starting_settings(spec: NewRecipe) -> tuple[dict, str]:
    """(the spm/model/train/decode sections to start from, a line saying which and why)."""
    if spec.like and spec.size:
        raise UserError("give --size or --like, not both")
    if spec.like:
        path = Path(spec.like)
        values = load_config(path).to_dict() if path.is_file() else from_dict(shipped_values(spec.like)).to_dict()
        why = f"settings: those of {spec.like} (--like)"
    else:
        size = spec.size
        if size:
            why = f"settings: {size} (--size {size}), from the shipped {SIZES[size]}"
        else:
            size = "gpu" if torch.cuda.is_available() else "cpu"
            seen = "a GPU is visible" if size == "gpu" else "no GPU is visible"
            other = "cpu" if size == "gpu" else "gpu"
            why = f"settings: {size}-sized ({seen}; --size {other} for the other), from the shipped {SIZES[size]}"
        values = from_dict(shipped_values(SIZES[size])).to_dict()
    sections = {k: dict(values[k]) for k in TRAINING_SECTIONS}
    sections["train"]["init_from"] = ""
    return sections, why


def _relative_to(folder: Path, path: str) -> str:
    """``path`` (as given, relative to the working folder) written relative to ``folder``."""
    if not path or os.path.isabs(path) or "://" in path:
        return path
    return os.path.relpath(Path(path).resolve(), folder.resolve())


def _kind(prefix: str, langs: tuple[str, str]) -> tuple[str, str]:
    """(source, file suffix) of the files a prefix stands for."""
    for suffix in (".tsv", ".jsonl", ".tsv.gz", ".jsonl.gz"):
        if prefix.endswith(suffix):
            return suffix.split(".")[1], suffix
    for suffix in (".tsv", ".jsonl", ".tsv.gz", ".jsonl.gz"):
        if Path(prefix + suffix).is_file():
            return suffix.split(".")[1], suffix
    for gz in ("", ".gz"):
        if all(Path(f"{prefix}.{lang}{gz}").is_file() for lang in langs):
            return "text", gz
    raise UserError(
        f"found neither {prefix}.{langs[0]} + {prefix}.{langs[1]} (text), {prefix}.tsv nor {prefix}.jsonl"
    )


def _first_line(path: str) -> str:
    line = next(iter(text_lines(path)), None)
    if line is None:
        raise UserError(f"{path}: no lines (the file is empty)")
    return line


def _tsv_fields(path: str, langs: tuple[str, str]) -> tuple[str, str]:
    cols = _first_line(path).split("\t")
    if len(cols) < 2:
        raise UserError(f"{path}: line 1 has no tab: a TSV file has the two sides in tab-separated columns")
    if not looks_like_header(cols, langs):
        return "0", "1"
    lower = [c.strip().lower() for c in cols]
    if all(lang.lower() in lower for lang in langs):  # a header naming the languages
        return cols[lower.index(langs[0].lower())], cols[lower.index(langs[1].lower())]
    return cols[0], cols[1]


def _jsonl_fields(path: str, langs: tuple[str, str]) -> tuple[str, str]:
    try:
        row = json.loads(_first_line(path))
    except json.JSONDecodeError:
        raise UserError(f"{path}: line 1 is not valid JSON") from None
    if isinstance(row, dict) and all(lang in row for lang in langs):
        return langs
    nested = [k for k, v in (row.items() if isinstance(row, dict) else ()) if isinstance(v, dict)]
    for key in nested:
        if all(lang in row[key] for lang in langs):
            return f"{key}.{langs[0]}", f"{key}.{langs[1]}"
    keys = ", ".join(row) if isinstance(row, dict) else "not an object"
    raise UserError(
        f"{path}: no fields named {langs[0]} and {langs[1]} ({keys}): pass --src-field and --tgt-field"
    )


def data_section(spec: NewRecipe, folder: Path = Path(".")) -> dict:
    """The recipe's data section for the files the prefixes stand for, their paths relative to ``folder``
    (the recipe file's)."""
    langs = (spec.src_lang, spec.tgt_lang)
    kinds = {split: _kind(p, langs) for split, p in spec.prefixes.items()}
    if len(set(kinds.values())) > 1:
        raise UserError(
            "every split must be the same kind of file: "
            + ", ".join(f"{s}: {k[0]}{k[1]}" for s, k in kinds.items())
        )
    source, suffix = kinds["train"]
    stems = {s: p[: -len(suffix)] if suffix and p.endswith(suffix) else p for s, p in spec.prefixes.items()}
    folders = {os.path.dirname(p) for p in stems.values()}
    if len(folders) == 1:  # one folder: a short recipe (url: that folder, splits: the file stems)
        url = _relative_to(folder, folders.pop() or ".")
        url = "" if url == "." else url
        splits = {s: os.path.basename(p) for s, p in stems.items()}
    else:  # full prefixes
        url = ""
        splits = {s: _relative_to(folder, p) for s, p in stems.items()}
    if source == "text":
        data = {"file_pattern": "{split}.{lang}" + suffix}
    else:
        data = {"file_pattern": "{split}" + suffix}
        first = stems["train"] + suffix
        fields = (spec.src_field, spec.tgt_field)
        if not all(fields):
            fields = _tsv_fields(first, langs) if source == "tsv" else _jsonl_fields(first, langs)
        data.update(src_field=fields[0], tgt_field=fields[1])
    return {
        "source": source,
        "src_lang": spec.src_lang,
        "tgt_lang": spec.tgt_lang,
        "splits": splits,
        "url": url,
        **data,
    }


def _key_lines(key: str, value, docs: list[str]) -> list[str]:
    text = yaml.safe_dump(
        {key: value}, default_flow_style=True, allow_unicode=True, sort_keys=False, width=1000
    )
    return [f"  # {d}" for d in docs if d] + ["  " + text.strip()[1:-1]]


def sources_lines(docs: dict[str, list[str]]) -> list[str]:
    """``data.sources`` as comment lines: its comment, then one corpus with every key, its default and
    its comment, ready to uncomment (docs/data.md#several-corpora)."""
    out = [f"  # {d}" for d in docs.get("data.sources", []) if d] + ["  # sources:"]
    for i, f in enumerate(dataclasses.fields(SourceConfig)):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        default = {"name": "NAME"}.get(f.name, default)
        out += [f"  #     # {d}" for d in docs.get(f"data.sources.{f.name}", []) if d]
        out += [("  #   - " if i == 0 else "  #     ") + _key_lines(f.name, default, [])[-1].strip()]
    return out


def render(cfg: Config, data_keys: tuple[str, ...] = DATA_KEYS) -> str:
    """The recipe text: every key of every section (for data: ``data_keys``, then ``sources`` commented
    out) with its comments."""
    docs, values = field_docs(), cfg.to_dict()
    out = []
    for section in SECTIONS:
        out += ["", f"{section}:"]
        keys = data_keys if section == "data" else [f.name for f in dataclasses.fields(SECTIONS[section])]
        for key in keys:
            out += _key_lines(key, values[section][key], docs.get(f"{section}.{key}", []))
        if section == "data":
            out += sources_lines(docs)
    return "\n".join(out) + "\n"


def new_recipe(spec: NewRecipe) -> tuple[Path, str]:
    """Write the recipe (refusing to overwrite unless ``spec.force``), check that it loads; returns its
    path and the line saying which settings it starts from."""
    target = Path(spec.output) if spec.output else Path(f"{spec.name}.yaml")
    if target.is_dir():
        target = target / f"{spec.name}.yaml"
    if target.exists() and not spec.force:
        raise UserError(f"{target} exists: remove it or pass --force to overwrite it")
    data = data_section(spec, target.parent)
    sections, why = starting_settings(spec)
    cfg = from_dict({"name": target.stem, "data": data, **sections})  # the name is the file's (as make has it)
    keys = tuple(k for k in DATA_KEYS if k in data or k == "dir")
    head = [
        f"# {target.stem}: {spec.src_lang} -> {spec.tgt_lang}, {data['source']} files; written by "
        f"`seq2seq new-recipe` on {datetime.date.today()}.",
        "# Every key is spelled out with its default; edit any of them (`seq2seq config FILE` prints the",
        "# resolved configuration). Paths are relative to this file's folder.",
        f"# {why}",
        "#",
        f"#   seq2seq run {target.name}        # from this folder: download, spm, train, evaluate",
    ]
    text = "\n".join(head) + "\n" + render(cfg, keys)
    atomic_write_text(target, text)
    load_config(target)  # what was written loads and validates
    return target, why
