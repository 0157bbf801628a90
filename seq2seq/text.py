"""The one normalization of text that enters the toolkit: what the download stage writes into the
corpus, what the tokenizer encodes (translate input, evaluate --src, the Python API, server
requests) and the references a score is computed against all pass through :func:`normalize`, so
the same sentence typed, copied or saved differently is the same text.
"""

from __future__ import annotations

import unicodedata

BOM = "\ufeff"  # a byte-order mark (zero-width no-break space): editors put one at the start of files


def normalize(line: str) -> str:
    """NFC, byte-order marks removed, no line-break characters, whitespace runs collapsed, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", line.replace(BOM, "")).split())
