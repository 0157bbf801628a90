"""The recipes shipped inside the package (``seq2seq/recipes/*.yaml``), and the documentation of
every recipe key, read from the comments of the dataclasses in :mod:`seq2seq.config` (their one
source: ``seq2seq new-recipe`` writes them next to the keys)."""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
from importlib import resources
from pathlib import Path

from seq2seq.config.schema import LIST_SECTIONS, SECTIONS
from seq2seq.config.values import load_yaml
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_text

FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")


def _shipped() -> dict[str, object]:
    """Recipe name -> its file (an importlib Traversable: works from a wheel or a checkout)."""
    folder = resources.files("seq2seq") / "recipes"
    if not folder.is_dir():
        return {}
    return {p.name[: -len(".yaml")]: p for p in folder.iterdir() if p.name.endswith(".yaml")}


def _summary(text: str) -> str:
    """The first sentence of a recipe's opening comment."""
    words = []
    for line in text.splitlines():
        if not line.startswith("#") or (words and not line.strip("# ")):
            break
        words += line.lstrip("#").split()
    sentence = " ".join(words)
    sentence = sentence[: sentence.index(". ") + 1] if ". " in sentence else sentence
    return textwrap.shorten(sentence, 100, placeholder=" ...")


def list_recipes() -> list[tuple[str, str]]:
    """(name, first comment line) of every shipped recipe, sorted by name."""
    return [(name, _summary(p.read_text(encoding="utf-8"))) for name, p in sorted(_shipped().items())]


def copy_recipe(name: str, out_dir: Path, force: bool = False) -> Path:
    """Copy shipped recipe ``name`` to ``out_dir/<name>.yaml`` (refusing to overwrite unless ``force``)."""
    recipes = _shipped()
    if name.endswith(".yaml"):
        name = name[: -len(".yaml")]
    if name not in recipes:
        raise UserError(f"no shipped recipe '{name}' (have: {', '.join(sorted(recipes))})")
    target = Path(out_dir) / f"{name}.yaml"
    if target.exists() and not force:
        raise UserError(f"{target} exists: remove it or pass --force to overwrite it")
    atomic_write_text(target, recipes[name].read_text(encoding="utf-8"))
    return target


def shipped_values(name: str) -> dict:
    """The settings of shipped recipe ``name`` as read from its YAML."""
    recipes = _shipped()
    if name not in recipes:
        raise UserError(f"no shipped recipe '{name}' (have: {', '.join(sorted(recipes))})")
    return load_yaml(recipes[name].read_text(encoding="utf-8")) or {}


def _class_docs(cls) -> dict[str, list[str]]:
    """Field name -> its comment lines: the comment lines right above it, then its trailing comment."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source shipped (a frozen install): keys without comments
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    names = {f.name for f in dataclasses.fields(cls)}
    docs, above = {}, []
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        match = FIELD_LINE.match(line)
        if stripped.startswith("#"):
            above.append(comments.get(number, ""))
        elif match and match.group(1) in names and match.group(1) not in docs:
            trailing = [comments[number]] if number in comments else []
            docs[match.group(1)] = above + trailing
            above = []
        else:
            above = []
    return docs


def field_docs() -> dict[str, list[str]]:
    """``"section.key"`` -> comment lines, for every documented key of every recipe section."""
    docs = {f"{s}.{k}": lines for s, cls in SECTIONS.items() for k, lines in _class_docs(cls).items()}
    for key, cls in LIST_SECTIONS.items():  # data.sources.KEY: the keys of each item of the list
        docs.update({f"{key}.{k}": lines for k, lines in _class_docs(cls).items()})
    return docs
