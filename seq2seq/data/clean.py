"""Cleaning the training pairs (the ``clean`` section), OpusFilter-style: rules over the normalized text
of a pair, each on or off with its threshold in the recipe. The download stage runs a :class:`Cleaner`
over the train split only (dev and test are never cleaned) and writes the dropped pairs to
``dropped.tsv``.

A pair is dropped by the first rule of :data:`RULES` (in that order) that rejects it, so every dropped
pair is counted once. The duplicate rules compare with the pairs kept before it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import unicodedata
from typing import Optional

from seq2seq.config.schema import CleanConfig
from seq2seq.constants import DROPPED
from seq2seq.data.language import base_language, check_language, identify

# every rule, in the order a pair meets them (cheap ones first, the language identifier last)
RULES = (
    "too_long",
    "length_ratio",
    "copy",
    "brackets",
    "numbers",
    "script",
    "duplicate",
    "near_duplicate",
    "language",
)

# the Unicode scripts (first word of a character's name) whose letters a language's text is written in
_SCRIPT_OF = {
    "CYRILLIC": ("ru", "uk", "be", "bg", "mk", "sr", "kk", "ky", "mn", "tg", "tt", "ba", "cv"),
    "GREEK": ("el",),
    "ARABIC": ("ar", "fa", "ur", "ps", "ug", "ku", "sd"),
    "HEBREW": ("he", "yi"),
    "DEVANAGARI": ("hi", "mr", "ne", "sa"),
    "BENGALI": ("bn", "as"),
    "GURMUKHI": ("pa",),
    "GUJARATI": ("gu",),
    "ORIYA": ("or",),
    "TAMIL": ("ta",),
    "TELUGU": ("te",),
    "KANNADA": ("kn",),
    "MALAYALAM": ("ml",),
    "SINHALA": ("si",),
    "THAI": ("th",),
    "LAO": ("lo",),
    "KHMER": ("km",),
    "MYANMAR": ("my",),
    "GEORGIAN": ("ka",),
    "ARMENIAN": ("hy",),
    "ETHIOPIC": ("am", "ti"),
    "TIBETAN": ("bo", "dz"),
}
SCRIPTS = {lang: (script,) for script, langs in _SCRIPT_OF.items() for lang in langs}
SCRIPTS.update(
    {
        "zh": ("CJK",),
        "ja": ("CJK", "HIRAGANA", "KATAKANA"),
        "ko": ("HANGUL", "CJK"),
        "sr": ("CYRILLIC", "LATIN"),  # both in use
    }
)
LATIN = ("LATIN",)  # every other language

_OPEN, _CLOSE = "([{", ")]}"
_QUOTES = ('"', "„“”«»")  # straight double quotes; typographic ones (their shapes differ by language)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def lengths(src: str, tgt: str, unit: str) -> tuple[int, int]:
    """The two sides' lengths in ``unit`` (words: whitespace-separated; chars: characters)."""
    if unit == "chars":
        return len(src), len(tgt)
    return len(src.split()), len(tgt.split())


def letters_key(line: str) -> str:
    """``line`` without case, punctuation, digits or spacing differences: its words of letters only."""
    return " ".join("".join(c if c.isalpha() else " " for c in line.casefold()).split())


def balanced(line: str) -> bool:
    """Whether the brackets of ``line`` nest and close, and each kind of double quote comes in pairs."""
    stack = []
    for c in line:
        if c in _OPEN:
            stack.append(_CLOSE[_OPEN.index(c)])
        elif c in _CLOSE and (not stack or stack.pop() != c):
            return False
    return not stack and all(sum(line.count(q) for q in kind) % 2 == 0 for kind in _QUOTES)


def numbers(line: str) -> list[str]:
    """The numbers written in digits in ``line``, sorted, without their separators ("1,000" = "1000")."""
    return sorted(re.sub(r"[.,]", "", n) for n in _NUMBER.findall(line))


@functools.lru_cache(maxsize=1 << 16)
def _script_of(c: str) -> str:
    return unicodedata.name(c, "").split(" ")[0]


def script_share(line: str, scripts: tuple[str, ...]) -> float:
    """The share of ``line``'s letters written in one of ``scripts`` (1.0 for a line without letters)."""
    letters = [c for c in line if c.isalpha()]
    if not letters:
        return 1.0
    return sum(_script_of(c) in scripts for c in letters) / len(letters)


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("\t".join(parts).encode(), digest_size=12).digest()


def rules_on(clean: CleanConfig) -> tuple[str, ...]:
    """The rules of :data:`RULES` that the clean section turns on, in their order (none: no cleaning)."""
    on = {
        "too_long": clean.max_length,
        "length_ratio": clean.length_ratio,
        "copy": clean.copies,
        "brackets": clean.brackets,
        "numbers": clean.numbers,
        "script": clean.script,
        "duplicate": clean.duplicates,
        "near_duplicate": clean.near_duplicates,
        "language": clean.language,
    }
    return tuple(r for r in RULES if on[r])


class Cleaner:
    """Decides pair by pair which rule drops a training pair (:meth:`reason`), and counts: ``counts``
    holds every rule that is on (dropped pairs), ``read`` and ``kept`` the pairs seen and kept.
    The languages are checked when it is made: an unknown one is a UserError before any reading."""

    def __init__(self, clean: CleanConfig, src_lang: str, tgt_lang: str):
        self.clean = clean
        checks = {
            "too_long": self._too_long,
            "length_ratio": self._length_ratio,
            "copy": self._copy,
            "brackets": self._brackets,
            "numbers": self._numbers,
            "script": self._script,
            "duplicate": self._duplicate,
            "near_duplicate": self._near_duplicate,
            "language": self._language,
        }
        self._checks = tuple((r, checks[r]) for r in rules_on(clean))
        self.counts = {r: 0 for r, _ in self._checks}
        self.read = self.kept = 0
        self._seen: set[bytes] = set()
        self._near: set[bytes] = set()
        if clean.script:
            self._scripts = tuple(SCRIPTS.get(base_language(lang), LATIN) for lang in (src_lang, tgt_lang))
        if clean.language:
            keys = ("data.src_lang", "data.tgt_lang")
            self._codes = tuple(check_language(lang, key) for lang, key in zip((src_lang, tgt_lang), keys))

    def reason(self, src: str, tgt: str) -> Optional[str]:
        """The first rule that drops the (normalized) pair, or None to keep it (then remembered for the
        duplicate rules); counted either way."""
        self.read += 1
        rule = next((r for r, drops in self._checks if drops(src, tgt)), None)
        if rule is not None:
            self.counts[rule] += 1
            return rule
        self.kept += 1
        if "duplicate" in self.counts:
            self._seen.add(_digest(src, tgt))
        if "near_duplicate" in self.counts:
            self._near.add(_digest(letters_key(src), letters_key(tgt)))
        return None

    def _too_long(self, src: str, tgt: str) -> bool:
        return max(lengths(src, tgt, self.clean.length_unit)) > self.clean.max_length

    def _length_ratio(self, src: str, tgt: str) -> bool:
        a, b = lengths(src, tgt, self.clean.length_unit)
        return max(a, b) > self.clean.length_ratio * min(a, b)

    def _copy(self, src: str, tgt: str) -> bool:
        if not src:
            return False  # an empty pair is no copy (training drops it as empty)
        return src == tgt or bool(letters_key(src)) and letters_key(src) == letters_key(tgt)

    def _brackets(self, src: str, tgt: str) -> bool:
        return not (balanced(src) and balanced(tgt))

    def _numbers(self, src: str, tgt: str) -> bool:
        return numbers(src) != numbers(tgt)

    def _script(self, src: str, tgt: str) -> bool:
        return any(script_share(line, sc) < self.clean.script for line, sc in zip((src, tgt), self._scripts))

    def _duplicate(self, src: str, tgt: str) -> bool:
        return _digest(src, tgt) in self._seen

    def _near_duplicate(self, src: str, tgt: str) -> bool:
        return _digest(letters_key(src), letters_key(tgt)) in self._near

    def _language(self, src: str, tgt: str) -> bool:
        for line, code in zip((src, tgt), self._codes):
            found, prob = identify(line)
            if found != code and prob >= self.clean.language:
                return True
        return False

    def summary(self) -> str:
        """One line: kept of read, and each rule's count."""
        each = ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in self.counts.items())
        return f"cleaning kept {self.kept} of {self.read} training pairs ({each})"


def clean_entry(cleaner: Cleaner) -> dict:
    """The manifest's record of a cleaning: the rules' settings, pairs read and kept, drops per rule."""
    return {
        "settings": dataclasses.asdict(cleaner.clean),
        "read": cleaner.read,
        "kept": cleaner.kept,
        "dropped": dict(cleaner.counts),
        "report": DROPPED,
    }
