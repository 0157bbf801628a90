"""Readers of corpus files: plain text, TSV and JSON lines, read here line by line.

Nothing is copied into a cache: local files are streamed where they are, and a URL is downloaded
once into the ``cache_dir`` the caller names (the download stage uses ``<data_dir>/downloads/``).
Every malformed line is a one-line :class:`UserError` naming the file and the line number.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import re
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Iterator, Optional

from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput, read_lines

DOWNLOAD_TIMEOUT = 60  # seconds without data before a download gives up


def _download(url: str, target: Path) -> None:
    """``url`` into ``target`` through a temporary file: a failed download leaves nothing behind."""
    bar = None
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            with AtomicOutput(target, binary=True) as out:
                if sys.stderr.isatty():
                    from tqdm import tqdm

                    size = int(response.headers.get("Content-Length") or 0) or None
                    bar = tqdm(total=size, unit="B", unit_scale=True, desc=target.name, leave=False)
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    if bar is not None:
                        bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise UserError(
            f"could not download {url}: {reason} (offline? point MIRROR at a folder holding it)"
        ) from None
    finally:
        if bar is not None:
            bar.close()


def fetch(loc: str, cache_dir: Optional[Path]) -> str:
    """A local path for ``loc``: paths stay as they are; a URL is downloaded once into ``cache_dir``
    (kept for the next run, named by the URL's hash) or, without one, into a temporary folder."""
    if "://" not in loc:
        return loc
    name = Path(loc.split("?")[0]).name or "file"
    folder = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="seq2seq-download-"))
    target = folder / f"{hashlib.sha256(loc.encode()).hexdigest()[:16]}-{name}"
    if not target.is_file():
        _download(loc, target)
    return str(target)


def text_lines(loc: str, cache_dir: Optional[Path] = None) -> Iterator[str]:
    """Stream the lines of a (possibly gzipped) UTF-8 text file or URL. Only "\n" ends a line; a
    CRLF's "\r" is dropped; undecodable bytes or NUL bytes are an error naming the file and line."""
    path = fetch(loc, cache_dir)
    try:
        with open(path, "rb") as f:  # opened once: a named pipe or <(...) can be read only once
            gz = f.peek(2)[:2] == b"\x1f\x8b"
            with gzip.GzipFile(fileobj=f, mode="rb") if gz else contextlib.nullcontext(f) as lines:
                yield from read_lines(lines, loc, hint=None)  # no --replace-invalid for downloads
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"could not read {loc}: {e}") from None


# ---------------------------------------------------------------- TSV

HEADER_WORDS = {"src", "tgt", "source", "target", "sentence", "sentences", "text", "translation", "lang"}
HEADER_WORDS |= {"input", "output", "ref", "reference", "hyp", "id", "string", "1", "2", "trg"}


def looks_like_header(values: list[str], langs: tuple[str, ...]) -> bool:
    """Whether every value is a column name ("src", "de", "source_text", "sentence_en", ...)."""
    words = HEADER_WORDS | {lang.lower() for lang in langs}
    return all(v.strip() and set(re.split(r"[_\-\s.]+", v.strip().lower())) <= words for v in values)


def _tsv_columns(loc: str, header: list[str], src: str, tgt: str, langs) -> tuple[list[int], bool]:
    """(column indices, whether line 1 is a header): names pick columns of the header row,
    numbers pick columns of header-less files."""
    if src.isdigit() and tgt.isdigit():
        idx = [int(src), int(tgt)]
        if max(idx) >= len(header):
            raise UserError(
                f"{loc}: line 1 has {len(header)} tab-separated columns; data.src_field/tgt_field "
                f"ask for column {max(idx)} (columns count from 0)"
            )
        if looks_like_header([header[i] for i in idx], langs):
            raise UserError(
                f"{loc}: line 1 looks like a header row ({header[idx[0]]!r}, {header[idx[1]]!r}): name "
                f"the columns to skip it (data.src_field: {header[idx[0]]}, data.tgt_field: "
                f"{header[idx[1]]}) or remove the line"
            )
        return idx, False
    for name in (src, tgt):
        if name not in header:
            raise UserError(
                f"{loc}: no column '{name}' in the header row (line 1: {', '.join(header)}); "
                f"number the columns (0, 1, ...) for a file without a header"
            )
    return [header.index(src), header.index(tgt)], True


def tsv_pairs(
    loc: str, src: str, tgt: str, langs: tuple[str, ...] = (), cache_dir: Optional[Path] = None
) -> Iterator[tuple[str, str]]:
    """(source, target) fields of a tab-separated file, unquoted (a field holds no tab, quotes are
    text). ``src``/``tgt``: column numbers ("0", "1") for a file without a header, or column names
    of its header row. Every line must have as many columns as line 1."""
    lines = enumerate(text_lines(loc, cache_dir), start=1)
    first = next(lines, None)
    if first is None:
        raise UserError(f"{loc}: no lines (the file is empty)")
    header = first[1].split("\t")
    idx, has_header = _tsv_columns(loc, header, src, tgt, langs)
    width = len(header)
    for number, line in lines if has_header else itertools.chain([first], lines):
        cols = line.split("\t")
        if len(cols) != width:
            if len(cols) == 1:
                raise UserError(f"{loc}: line {number} has no tab ({width} tab-separated columns expected)")
            raise UserError(
                f"{loc}: line {number} has {len(cols)} tab-separated columns, line 1 has {width} "
                f"(a tab inside a sentence? fields are not quoted)"
            )
        yield cols[idx[0]], cols[idx[1]]


# ---------------------------------------------------------------- JSON lines


def jsonl_rows(loc: str, cache_dir: Optional[Path] = None) -> Iterator[tuple[str, dict]]:
    """("<file>: line N", object) for every non-blank line of a JSON-lines file."""
    for number, line in enumerate(text_lines(loc, cache_dir), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(
                f"{loc}: line {number} is not valid JSON ({e.msg}, column {e.colno}; "
                f"JSON lines expected: one object per line)"
            ) from None
        if not isinstance(row, dict):
            raise UserError(f"{loc}: line {number} is not a JSON object (JSON lines expected: one per line)")
        yield f"{loc}: line {number}", row


def field(row: dict, path: str, where: str) -> str:
    """The text at ``path`` of a row ("translation.de" reaches into a dict column)."""
    value = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise UserError(f"{where}: field '{path}' not found (columns: {', '.join(map(str, row))})")
        value = value[part]
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    kind = "null" if value is None else type(value).__name__
    raise UserError(f"{where}: field '{path}' is {kind}, not text")


def rows_pairs(rows: Iterator[tuple[str, dict]], src: str, tgt: str) -> Iterator[tuple[str, str]]:
    """(source, target) texts of (where, row) pairs."""
    for where, row in rows:
        yield field(row, src, where), field(row, tgt, where)
