"""The one normalization of text that enters (seq2seq/text.py)."""

import unicodedata

from seq2seq.text import normalize


def test_nfc_bom_and_whitespace():
    word = "Grüße"
    assert normalize(unicodedata.normalize("NFD", word)) == word
    assert normalize("\ufeff" + word) == word
    assert normalize("  a\tb \u00a0 c\r\n") == "a b c"
    assert normalize("a\ufeffb") == "ab"  # a zero-width no-break space inside a line too
    assert normalize(normalize(" x\ufeff y ")) == normalize(" x\ufeff y ") == "x y"
