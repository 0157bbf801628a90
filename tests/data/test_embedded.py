"""The embedded English -> German corpus: number words and the seeded split generator."""

from __future__ import annotations

import pytest

from seq2seq.data.embedded import (
    de_number,
    de_ordinal_dative,
    de_year,
    en_number,
    en_ordinal,
    en_year,
    generate,
)


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (21, "twenty-one"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (342, "three hundred forty-two"),
        (1000, "one thousand"),
        (1001, "one thousand one"),
        (2021, "two thousand twenty-one"),
        (12345, "twelve thousand three hundred forty-five"),
        (999999, "nine hundred ninety-nine thousand nine hundred ninety-nine"),
    ],
)
def test_en_number(n, words):
    assert en_number(n) == words


@pytest.mark.parametrize(
    "n, word",
    [
        (0, "null"),
        (1, "eins"),
        (2, "zwei"),
        (11, "elf"),
        (16, "sechzehn"),
        (20, "zwanzig"),
        (21, "einundzwanzig"),
        (30, "dreißig"),
        (57, "siebenundfünfzig"),
        (100, "einhundert"),
        (101, "einhunderteins"),
        (111, "einhundertelf"),
        (121, "einhunderteinundzwanzig"),
        (1000, "eintausend"),
        (1001, "eintausendeins"),
        (1100, "eintausendeinhundert"),
        (2021, "zweitausendeinundzwanzig"),
        (10001, "zehntausendeins"),
        (21000, "einundzwanzigtausend"),
        (100000, "einhunderttausend"),
        (345678, "dreihundertfünfundvierzigtausendsechshundertachtundsiebzig"),
    ],
)
def test_de_number(n, word):
    assert de_number(n) == word


def test_de_number_is_one_word():
    for n in range(0, 100000, 997):
        assert " " not in de_number(n) and "-" not in de_number(n)


@pytest.mark.parametrize(
    "year, en, de",
    [
        (1900, "nineteen hundred", "neunzehnhundert"),
        (1905, "nineteen oh five", "neunzehnhundertfünf"),
        (1901, "nineteen oh one", "neunzehnhunderteins"),
        (1987, "nineteen eighty-seven", "neunzehnhundertsiebenundachtzig"),
        (2000, "two thousand", "zweitausend"),
        (2001, "two thousand one", "zweitausendeins"),
        (2005, "two thousand five", "zweitausendfünf"),
        (2010, "twenty ten", "zweitausendzehn"),
        (2021, "twenty twenty-one", "zweitausendeinundzwanzig"),
        (2099, "twenty ninety-nine", "zweitausendneunundneunzig"),
    ],
)
def test_years(year, en, de):
    assert en_year(year) == en
    assert de_year(year) == de


@pytest.mark.parametrize(
    "n, en, de",
    [
        (1, "first", "ersten"),
        (2, "second", "zweiten"),
        (3, "third", "dritten"),
        (4, "fourth", "vierten"),
        (5, "fifth", "fünften"),
        (7, "seventh", "siebten"),
        (8, "eighth", "achten"),
        (9, "ninth", "neunten"),
        (11, "eleventh", "elften"),
        (12, "twelfth", "zwölften"),
        (19, "nineteenth", "neunzehnten"),
        (20, "twentieth", "zwanzigsten"),
        (21, "twenty-first", "einundzwanzigsten"),
        (22, "twenty-second", "zweiundzwanzigsten"),
        (23, "twenty-third", "dreiundzwanzigsten"),
        (28, "twenty-eighth", "achtundzwanzigsten"),
        (30, "thirtieth", "dreißigsten"),
        (31, "thirty-first", "einunddreißigsten"),
    ],
)
def test_ordinals(n, en, de):
    assert en_ordinal(n) == en
    assert de_ordinal_dative(n) == de


SIZES = {"train": 300, "dev": 40, "test": 50}


def test_generate_sizes_and_shapes():
    out = generate(SIZES, seed=3)
    assert list(out) == list(SIZES)  # keeps the caller's split order
    for split, n in SIZES.items():
        assert len(out[split]) == n
        for en, de in out[split]:
            assert isinstance(en, str) and isinstance(de, str)
            assert en and de and en == en.strip() and de == de.strip()
            assert "\n" not in en + de


def test_generate_deterministic():
    assert generate(SIZES, seed=3) == generate(SIZES, seed=3)


def test_generate_seeds_differ():
    a, b = generate(SIZES, seed=3), generate(SIZES, seed=4)
    for split in SIZES:
        assert a[split] != b[split]


def test_generate_splits_disjoint_and_unique():
    out = generate(SIZES, seed=11)
    sources = {s: [en for en, _ in pairs] for s, pairs in out.items()}
    for split, lines in sources.items():
        assert len(set(lines)) == len(lines), f"duplicate source sentence in {split}"
    assert not set(sources["train"]) & set(sources["dev"])
    assert not set(sources["train"]) & set(sources["test"])
    assert not set(sources["dev"]) & set(sources["test"])


def test_generate_held_out_splits_do_not_depend_on_train_size():
    # held-out splits are drawn first, so growing the training set keeps dev/test fixed
    small = generate({"train": 10, "dev": 30, "test": 30}, seed=5)
    large = generate({"train": 500, "dev": 30, "test": 30}, seed=5)
    assert small["dev"] == large["dev"] and small["test"] == large["test"]


def test_generate_pairs_are_translations():
    """Every sentence kind maps consistently: the German side carries the German number words."""
    for en, de in generate({"train": 400, "dev": 1, "test": 1}, seed=2)["train"]:
        if en.startswith("in "):
            assert de.startswith("im Jahr ")
        elif en.startswith("on "):
            assert de.startswith("am ")
        elif " costs " in en:
            assert " kostet " in de and de.endswith(" Euro.") and en.endswith(" euros.")
        elif " plus " in en:
            assert " plus " in de and " ist " in de
        else:
            assert en.endswith(".") and de.endswith(".")


def test_generate_sum_is_correct():
    words = {en_number(n): n for n in range(0, 2000)}
    seen = 0
    for en, de in generate({"train": 300, "dev": 1, "test": 1}, seed=9)["train"]:
        if " plus " in en:
            a, rest = en.split(" plus ")
            b, total = rest.split(" is ")
            assert words[a] + words[b] == words[total]
            assert de == f"{de_number(words[a])} plus {de_number(words[b])} ist {de_number(words[total])}"
            seen += 1
    assert seen > 10


def test_generate_stops_when_unique_pairs_run_out(monkeypatch):
    import seq2seq.data.embedded as emb

    monkeypatch.setattr(emb, "_sentence", lambda rng: ("same", "gleich"))
    with pytest.raises(ValueError, match="unique pairs"):
        emb.generate({"train": 2, "dev": 1, "test": 1}, seed=1)
