"""Cleaning the training pairs (seq2seq/data/clean.py, the clean section): on a small hand-written
corpus every rule drops exactly the pairs it should, the report and the manifest say so, dev and test
are never cleaned, and with every rule off the download is what it always was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seq2seq.config.load import from_dict
from seq2seq.config.schema import Config
from seq2seq.constants import DROPPED, MANIFEST
from seq2seq.data.clean import RULES, Cleaner, balanced, letters_key, numbers, script_share
from seq2seq.data.corpus import download
from seq2seq.errors import UserError
from seq2seq.runs.ownership import stage_settings

# (English, German) training pairs: the first ones are clean; each later one trips the rule named
TRAIN = [
    ("A man is riding a bike down the street.", "Ein Mann fährt mit dem Fahrrad die Straße entlang."),  # 0
    ("Two dogs are playing in the snow.", "Zwei Hunde spielen im Schnee."),  # 1
    (
        "A woman (in a red dress) is singing on a stage.",
        "Eine Frau (in einem roten Kleid) singt auf einer Bühne.",
    ),
    ("The little girl holds 3 balloons.", "Das kleine Mädchen hält 3 Luftballons."),  # 3
    ('A sign says "closed" in big letters.', 'Ein Schild sagt "geschlossen" in großen Buchstaben.'),  # 4
    ("A man is riding a bike down the street.", "Ein Mann fährt mit dem Fahrrad die Straße entlang."),  # 5
    ("a man is riding a bike down the street!", "Ein Mann fährt mit dem Fahrrad die Straße entlang"),  # 6
    ("Hotel Astoria", "hotel astoria."),  # 7 copy
    ("Look!", "Schau mal, dort drüben läuft ein sehr großer brauner Hund über die Wiese."),  # 8 ratio
    (  # 9 too long (20 words a side)
        "A group of young people in colorful costumes are dancing and singing together at a big "
        "street festival downtown today.",
        "Eine Gruppe junger Leute in bunten Kostümen tanzt und singt heute zusammen auf einem großen "
        "Straßenfest in der Innenstadt.",
    ),
    ("A man in a hat (sits on a bench.", "Ein Mann mit Hut (sitzt auf einer Bank."),  # 10 brackets
    ('The boy shouts "stop at the corner.', 'Der Junge ruft "halt an der Ecke.'),  # 11 quotes
    ("Three men walk 2 dogs in the park.", "Drei Männer führen 4 Hunde im Park aus."),  # 12 numbers
    ("A black cat sleeps on the warm windowsill.", "Чёрная кошка спит на тёплом подоконнике."),  # 13 script
    ("Die Kinder spielen im Garten mit einem Ball.", "Die Kinder spielen mit dem Ball im Garten."),  # 14 lang
]
DEV = [("Two dogs are playing in the snow.", "Zwei Hunde spielen im Schnee.")] * 2 + [("Look!", "Schau!")]
TEST = [("Hotel Astoria", "hotel astoria.")] * 2

# each rule alone, with the pairs (indices into TRAIN) it drops
ALONE = {
    "duplicate": ({"duplicates": True}, {5}),
    "near_duplicate": ({"near_duplicates": True}, {5, 6}),
    "copy": ({"copies": True}, {7}),
    "length_ratio": ({"length_ratio": 3}, {8}),
    "too_long": ({"max_length": 18}, {9}),
    "brackets": ({"brackets": True}, {10, 11}),
    "numbers": ({"numbers": True}, {12}),
    "script": ({"script": 0.5}, {13}),
    "language": ({"language": 0.9}, {13, 14}),
}


def _quiet(_line: str) -> None:
    pass


def _write(folder: Path, split: str, pairs) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for side, lang in enumerate(("en", "de")):
        (folder / f"{split}.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    for split, pairs in (("train", TRAIN), ("dev", DEV), ("test", TEST)):
        _write(folder, split, pairs)
    return folder


def _cfg(tmp_path: Path, corpus: Path, out: str = "corpus", **clean) -> Config:
    data = {
        "source": "text",
        "src_lang": "en",
        "tgt_lang": "de",
        "url": str(corpus),
        "dir": str(tmp_path / out),
    }
    return from_dict({"name": "t", "data": data, "clean": clean})


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _kept(cfg: Config, split: str = "train") -> list[tuple[str, str]]:
    return list(zip(_lines(cfg.data_dir / f"{split}.en"), _lines(cfg.data_dir / f"{split}.de")))


def _normalized(i: int) -> tuple[str, str]:
    return tuple(" ".join(side.split()) for side in TRAIN[i])


@pytest.mark.parametrize("rule", list(ALONE))
def test_each_rule_alone_drops_exactly_its_pairs(tmp_path: Path, corpus: Path, rule: str):
    settings, dropped = ALONE[rule]
    cfg = _cfg(tmp_path, corpus, **settings)
    logged: list[str] = []
    manifest = download(cfg, log=logged.append)
    assert _kept(cfg) == [_normalized(i) for i in range(len(TRAIN)) if i not in dropped]
    assert manifest["clean"]["dropped"] == {rule: len(dropped)}
    assert (manifest["clean"]["read"], manifest["clean"]["kept"]) == (len(TRAIN), len(TRAIN) - len(dropped))
    assert manifest["files"]["train.en"]["lines"] == len(TRAIN) - len(dropped)
    report = _lines(cfg.data_dir / DROPPED)
    assert report[0] == "rule\tsource\ttarget"
    assert report[1:] == [f"{rule}\t{_normalized(i)[0]}\t{_normalized(i)[1]}" for i in sorted(dropped)]
    line = next(x for x in logged if "cleaning kept" in x)
    assert f"kept {len(TRAIN) - len(dropped)} of {len(TRAIN)}" in line
    assert f"{rule.replace('_', ' ')} {len(dropped)}" in line
    assert _kept(cfg, "dev") == DEV and _kept(cfg, "test") == TEST  # never cleaned


def test_every_rule_on_counts_each_pair_once_under_its_first_rule(tmp_path: Path, corpus: Path):
    cfg = _cfg(tmp_path, corpus, **{k: v for settings, _ in ALONE.values() for k, v in settings.items()})
    manifest = download(cfg, log=_quiet)
    assert manifest["clean"]["dropped"] == {
        "too_long": 1,
        "length_ratio": 1,
        "copy": 1,
        "brackets": 2,
        "numbers": 1,
        "script": 1,  # the Cyrillic line: the language rule would drop it too, but comes later
        "duplicate": 1,
        "near_duplicate": 1,
        "language": 1,
    }
    assert list(manifest["clean"]["dropped"]) == list(RULES)
    assert _kept(cfg) == [_normalized(i) for i in range(5)]
    assert manifest["clean"]["settings"]["language"] == 0.9 and manifest["clean"]["report"] == DROPPED
    on_disk = json.loads((cfg.data_dir / MANIFEST).read_text(encoding="utf-8"))
    assert on_disk["clean"] == manifest["clean"]
    rules = [row.split("\t")[0] for row in _lines(cfg.data_dir / DROPPED)[1:]]
    assert rules == ["duplicate", "near_duplicate", "copy", "length_ratio", "too_long"] + [
        "brackets",
        "brackets",
        "numbers",
        "script",
        "language",
    ]


def test_off_is_the_download_as_before(tmp_path: Path, corpus: Path):
    plain = from_dict(
        {
            "name": "t",
            "data": {
                "source": "text",
                "src_lang": "en",
                "tgt_lang": "de",
                "url": str(corpus),
                "dir": str(tmp_path / "a"),
            },
        }
    )
    off = _cfg(tmp_path, corpus, "b", duplicates=False, language=0.0)
    a, b = download(plain, log=_quiet), download(off, log=_quiet)
    assert "clean" not in a and "clean" not in b
    assert a["files"] == b["files"] and len(_kept(off)) == len(TRAIN)
    assert not (off.data_dir / DROPPED).exists()
    assert stage_settings(off, "data") == {"data": off.to_dict()["data"]}  # records as before the section


def test_turning_cleaning_off_removes_the_old_report(tmp_path: Path, corpus: Path):
    download(_cfg(tmp_path, corpus, duplicates=True), log=_quiet)
    cfg = _cfg(tmp_path, corpus)
    assert (cfg.data_dir / DROPPED).is_file()
    download(cfg, log=_quiet)
    assert not (cfg.data_dir / DROPPED).exists() and len(_kept(cfg)) == len(TRAIN)


def test_cleaning_settings_are_part_of_the_data_stage(tmp_path: Path, corpus: Path):
    from seq2seq.training.pipeline import stale_reason

    cfg = _cfg(tmp_path, corpus, numbers=True)
    assert stage_settings(cfg, "data")["clean"]["numbers"] is True
    assert "clean" in stage_settings(cfg, "train")
    download(_cfg(tmp_path, corpus), log=_quiet)
    assert stale_reason(_cfg(tmp_path, corpus), "data") is None
    assert stale_reason(cfg, "data") == "data settings changed"  # seq2seq run downloads again
    download(cfg, log=_quiet)
    assert stale_reason(cfg, "data") is None


def test_unknown_language_fails_before_reading(tmp_path: Path, corpus: Path):
    cfg = from_dict(
        {
            "name": "t",
            "data": {
                "source": "text",
                "src_lang": "en",
                "tgt_lang": "xx",
                "url": str(corpus),
                "dir": str(tmp_path / "c"),
            },
            "clean": {"language": 0.5},
        }
    )
    with pytest.raises(UserError, match="data.tgt_lang.*'xx'"):
        download(cfg, log=_quiet)
    assert not (cfg.data_dir / MANIFEST).exists()


def test_everything_dropped_is_a_user_error(tmp_path: Path, corpus: Path):
    cfg = _cfg(tmp_path, corpus, max_length=1)
    with pytest.raises(UserError, match="'train' is empty after cleaning"):
        download(cfg, log=_quiet)


def test_bad_settings_are_one_line_errors(tmp_path: Path, corpus: Path):
    with pytest.raises(UserError, match="clean.script"):
        _cfg(tmp_path, corpus, script=1.5)
    with pytest.raises(UserError, match="clean.length_unit"):
        _cfg(tmp_path, corpus, length_unit="bytes")
    with pytest.raises(UserError, match="clean.length_ratio"):
        _cfg(tmp_path, corpus, length_ratio=0.5)


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        ("a (b [c] d) e", True),
        ("a (b [c) d] e", False),
        ("a) b (", False),
        ('he said "hi"', True),
        ('he said "hi', False),
        ("er sagte „hallo“", True),
        ("er sagte „hallo", False),
        ("it's Tom's", True),
        ("« bonjour »", True),
    ],
)
def test_balanced(line: str, ok: bool):
    assert balanced(line) is ok


def test_the_pieces():
    assert letters_key("  A man, 2 DOGS!  ") == "a man dogs"
    assert numbers("1,000 and 3.5 or 7") == ["1000", "35", "7"]
    assert numbers("no digits") == []
    assert script_share("abc где", ("LATIN",)) == 0.5
    assert script_share("123 !", ("LATIN",)) == 1.0


def test_an_empty_pair_is_no_copy():
    cleaner = Cleaner(from_dict({"clean": {"copies": True}}).clean, "en", "de")
    assert cleaner.reason("", "") is None and cleaner.reason("2012", "2012") == "copy"


def test_chars_unit(tmp_path: Path):
    cleaner = Cleaner(from_dict({"clean": {"length_unit": "chars", "max_length": 5}}).clean, "en", "de")
    assert cleaner.reason("abcde", "abcde") is None
    assert cleaner.reason("ab cde", "x") == "too_long"
    assert (cleaner.read, cleaner.kept, cleaner.counts) == (2, 1, {"too_long": 1})


def test_a_run_from_before_the_section_has_its_defaults(tmp_path: Path, corpus: Path):
    from seq2seq.runs.settings import settings_differences

    old = _cfg(tmp_path, corpus).to_dict()
    del old["clean"]  # a config.yaml written before the clean section existed
    assert settings_differences(old, _cfg(tmp_path, corpus)) == []
    assert settings_differences(old, _cfg(tmp_path, corpus, copies=True)) == [
        "clean.copies: False in the run, True given"
    ]
