"""JSON request bodies -> (lines, decoding overrides), each problem a one-line :class:`BadRequest`.

Numbers are range-checked with the recipe's own bounds (``config.check_setting``) and the settings
together by ``Translator.decode_config`` (e.g. an n-best list longer than the beam): a request and a
recipe share one set of rules. Nothing in a request can name a file, a checkpoint or a device: only
the decoding controls below are accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from seq2seq.config import OUTPUT_FORMATS, check_setting
from seq2seq.errors import UserError
from seq2seq.serve.settings import ServeSettings

# the decoding controls of `seq2seq translate` a request may set (batch size, compilation and the
# checkpoint stay the server's)
NUMBERS = (
    "beam_size",
    "n_best",
    "length_penalty",
    "coverage_penalty",
    "max_len_ratio",
    "max_len_offset",
    "min_len",
    "no_repeat_ngram",
    "temperature",
    "topk",
    "sampling_seed",
)
FLAGS = ("sampling",)
V1_FIELDS = ("text", "format", "exact", *NUMBERS, *FLAGS)
LIBRE_FIELDS = ("q", "source", "target", "format", "api_key", "alternatives")


class BadRequest(Exception):
    """A request the server refuses: an HTTP status and a one-line reason (``{"error": reason}``)."""

    def __init__(self, status: int, reason: str, headers: Optional[dict] = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


@dataclass
class TranslateRequest:
    lines: list[str]
    overrides: dict = field(default_factory=dict)  # decoding settings, checked
    fmt: str = "text"  # text | json: the form of seq2seq translate --format
    exact: bool = False  # decoded alone, in translate's batches: byte for byte its output


def parse_json(body: bytes) -> dict:
    """A JSON object, or a 400 saying why not."""
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadRequest(400, f"the body is not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise BadRequest(400, f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise BadRequest(400, "malformed JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequest(400, f"the body must be a JSON object, got {type_name(value)}")
    return value


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def split_text(text: str, label: str) -> list[str]:
    """The lines ``seq2seq translate`` would read from ``text`` as a file: split at "\\n", a final
    newline ends the last line, a "\\r" before a newline is dropped (CRLF)."""
    if text == "":
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [check_line(x[:-1] if x.endswith("\r") else x, label) for x in lines]


def check_line(line: str, label: str) -> str:
    """What translate refuses in a file refused here too: NUL characters, and text that is not valid
    Unicode (JSON's lone surrogate escapes)."""
    if "\0" in line:
        raise BadRequest(400, f"{label} contains NUL characters: not text")
    bad = next((i for i, c in enumerate(line) if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        raise BadRequest(400, f"{label} is not valid Unicode (a lone surrogate at character {bad + 1})")
    return line


def text_lines(value: Any, name: str) -> tuple[list[str], bool]:
    """(lines, given as a list) of a ``text`` / ``q`` field: a string (split into lines as a file is)
    or an array of strings (one line each: a line break inside one is an error)."""
    if isinstance(value, str):
        return split_text(value, f"'{name}'"), False
    if isinstance(value, list):
        lines = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise BadRequest(400, f"'{name}'[{i}] must be a string, got {type_name(item)}")
            line = item[:-1] if item.endswith("\r") else item
            if "\n" in line or "\r" in line:
                raise BadRequest(400, f"'{name}'[{i}] holds a line break: send one line per array item")
            lines.append(check_line(line, f"'{name}'[{i}]"))
        return lines, True
    if value is None:
        raise BadRequest(400, f"'{name}' is required: a string or an array of strings")
    raise BadRequest(400, f"'{name}' must be a string or an array of strings, got {type_name(value)}")


def check_count(lines: list[str], settings: ServeSettings) -> None:
    if len(lines) > settings.max_lines:
        raise BadRequest(413, f"too many lines: {len(lines)}, at most {settings.max_lines} per request")


def decoding(body: dict, settings: ServeSettings) -> dict:
    """The decoding overrides in ``body``, each typed and range-checked as the recipe key is."""
    out: dict = {}
    for name in NUMBERS:
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(400, f"'{name}' must be a number, got {type_name(value)}")
        try:
            out[name] = check_setting(f"decode.{name}", value, f"'{name}'")
        except UserError as e:
            raise BadRequest(400, str(e)) from None
    for name in FLAGS:
        if name in body and body[name] is not None:
            if not isinstance(body[name], bool):
                raise BadRequest(400, f"'{name}' must be true or false, got {type_name(body[name])}")
            out[name] = body[name]
    for name in ("beam_size", "n_best"):
        if out.get(name, 0) > settings.max_beam:
            raise BadRequest(
                400, f"'{name}' must be at most {settings.max_beam} on this server, got {out[name]}"
            )
    return out


def unknown_fields(body: dict, known: tuple[str, ...]) -> None:
    extra = sorted(set(body) - set(known))
    if extra:
        raise BadRequest(400, f"unknown field '{extra[0]}' (known: {', '.join(known)})")


def parse_v1(body: bytes, settings: ServeSettings) -> TranslateRequest:
    """The body of ``POST /v1/translate``: ``{"text": ..., "format": "text"|"json", <decoding>}``."""
    values = parse_json(body)
    unknown_fields(values, V1_FIELDS)
    lines, _ = text_lines(values.get("text"), "text")
    check_count(lines, settings)
    fmt = values.get("format", "text")
    if fmt not in OUTPUT_FORMATS:
        raise BadRequest(400, f"'format' must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    exact = values.get("exact", False)
    if not isinstance(exact, bool):
        raise BadRequest(400, f"'exact' must be true or false, got {type_name(exact)}")
    return TranslateRequest(lines, decoding(values, settings), fmt, exact)


@dataclass
class LibreRequest:
    lines: list[str]
    as_list: bool  # q was an array: translatedText is one too
    api_key: Optional[str]
    alternatives: int  # extra hypotheses per text (LibreTranslate's "alternatives")
    source: str


def parse_libre(values: dict, settings: ServeSettings, src_lang: str, tgt_lang: str) -> LibreRequest:
    """LibreTranslate's ``POST /translate`` fields (from JSON or a form): q, source, target, format,
    api_key, alternatives. ``source`` may be "auto" (the served source language)."""
    unknown_fields(values, LIBRE_FIELDS)
    pair = f"this server translates {src_lang} to {tgt_lang}"
    source, target = values.get("source"), values.get("target")
    for name, value in (("source", source), ("target", target)):
        if not isinstance(value, str):
            raise BadRequest(400, f"'{name}' is required (a language code): {pair}")
    if (source not in (src_lang, "auto")) or target != tgt_lang:
        raise BadRequest(400, f"unsupported language pair {source}->{target}: {pair}")
    fmt = values.get("format", "text")
    if fmt != "text":
        raise BadRequest(400, f"'format' must be text, got {fmt!r} (HTML is not translated here)")
    q = values.get("q")
    if isinstance(q, str):
        lines, as_list = split_text(q, "'q'") or [""], False
    else:
        lines, as_list = text_lines(q, "q")
    check_count(lines, settings)
    alternatives = values.get("alternatives", 0)
    if isinstance(alternatives, str) and alternatives.strip().isdigit():  # a form field
        alternatives = int(alternatives)
    if isinstance(alternatives, bool) or not isinstance(alternatives, int) or alternatives < 0:
        raise BadRequest(400, f"'alternatives' must be a whole number >= 0, got {alternatives!r}")
    if alternatives + 1 > settings.max_beam:
        raise BadRequest(400, f"'alternatives' must be at most {settings.max_beam - 1} on this server")
    key = values.get("api_key")
    if key is not None and not isinstance(key, str):
        raise BadRequest(400, f"'api_key' must be a string, got {type_name(key)}")
    return LibreRequest(lines, as_list, key, alternatives, source)
