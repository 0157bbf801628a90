"""The download stage: every source kind read from local files (no network), manifest, one-line errors."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from conftest import tiny_recipe_dict

from seq2seq.config.load import from_dict
from seq2seq.config.schema import Config
from seq2seq.data.corpus import MANIFEST, download, normalize, read_corpus, read_split
from seq2seq.errors import UserError

SPLITS = ("train", "dev", "test")
FAKE_URL = "https://example.invalid/corpus/raw"


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch):
    """Keep the ``datasets`` cache of these tests in tmp_path (hermetic; nothing left in ~/.cache)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    # datasets pings the hub once per load_dataset call ("download counts"); offline that is a
    # DNS lookup of up to 3 s per file. test_mirror_download_makes_no_network_request covers it.
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


def _quiet(_msg: str) -> None:
    pass


def _cfg(tmp_path: Path, **data) -> Config:
    values = {"name": "t", "data": {"dir": str(tmp_path / "corpus"), **data}}
    return from_dict(values)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _check_manifest(cfg: Config, manifest: dict, expected_lines: dict[str, int]) -> None:
    """Files on disk, manifest.json on disk and the returned manifest all agree."""
    on_disk = json.loads((cfg.data_dir / MANIFEST).read_text(encoding="utf-8"))
    assert on_disk == manifest
    assert manifest["source"] == cfg.data.source
    assert (manifest["src_lang"], manifest["tgt_lang"]) == (cfg.data.src_lang, cfg.data.tgt_lang)
    names = {f"{s}.{lang}" for s in expected_lines for lang in (cfg.data.src_lang, cfg.data.tgt_lang)}
    assert set(manifest["files"]) == names
    for name, entry in manifest["files"].items():
        path = cfg.data_dir / name
        split, lang = name.rsplit(".", 1)
        assert entry["split"] == split and entry["lang"] == lang
        assert entry["lines"] == expected_lines[split] == len(_lines(path))
        assert entry["sha256"] == _sha(path)
        raw = path.read_bytes()
        assert raw.endswith(b"\n") and b"\r" not in raw


# Three parallel splits with messy whitespace, non-ASCII text and a decomposed umlaut (NFD).
PAIRS = {
    "train": [
        ("Two  dogs run.", "Zwei Hunde  rennen."),
        ("  A cat\t sleeps ", "Eine Katze schläft"),
        ("Cafe\u0301 au lait", "Milchkaffee"),
        ("NA", "null"),
        ("007", "1.50"),
    ],
    "dev": [("Hello world", "Hallo Welt"), ("Good night", "Gute Nacht")],
    "test": [("One", "Eins"), ("Two", "Zwei"), ("Three", "Drei")],
}
EXPECTED_LINES = {s: len(p) for s, p in PAIRS.items()}


def _write_text_files(folder: Path, gz: bool, src="en", tgt="de", pairs=PAIRS, stem=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in pairs.items():
        for lang, col in ((src, 0), (tgt, 1)):
            text = "".join(r[col] + "\n" for r in rows).encode("utf-8")
            name = f"{(stem or {}).get(split, split)}.{lang}"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(text, mtime=0))
            else:
                (folder / name).write_bytes(text)


# ---------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("  a  b  ", "a b"),
        ("a\tb\u00a0c", "a b c"),
        ("line\u2028break\x85here\r", "line break here"),
        ("Cafe\u0301", "Caf\u00e9"),  # NFD -> NFC
        ("", ""),
        ("   ", ""),
        ("unchanged text.", "unchanged text."),
    ],
)
def test_normalize(raw, clean):
    assert normalize(raw) == clean
    assert normalize(clean) == clean  # idempotent


# ---------------------------------------------------------------- embedded


def test_embedded_download_writes_files_and_manifest(tmp_path: Path):
    cfg = from_dict(tiny_recipe_dict(tmp_path))
    logged: list[str] = []
    manifest = download(cfg, log=logged.append)
    _check_manifest(cfg, manifest, {"train": 400, "dev": 20, "test": 20})
    assert manifest["mirror"] is None
    assert any("train: 400 pairs" in m for m in logged)
    src, tgt = read_split(cfg, "dev")
    assert len(src) == len(tgt) == 20
    assert all(s == normalize(s) and s for s in src + tgt)


def test_embedded_download_is_deterministic(tmp_path: Path):
    a = download(from_dict(tiny_recipe_dict(tmp_path / "a")), log=_quiet)
    b = download(from_dict(tiny_recipe_dict(tmp_path / "b")), log=_quiet)
    c = download(from_dict(tiny_recipe_dict(tmp_path / "c", data={"embedded_seed": 2})), log=_quiet)
    assert a["files"] == b["files"]
    assert a["files"]["train.en"]["sha256"] != c["files"]["train.en"]["sha256"]


def test_embedded_empty_split(tmp_path: Path):
    cfg = from_dict(tiny_recipe_dict(tmp_path, data={"embedded_sizes": {"train": 5, "dev": 2, "test": 0}}))
    with pytest.raises(UserError) as err:
        download(cfg, log=_quiet)
    msg = str(err.value)
    assert "\n" not in msg and "'test'" in msg and "empty" in msg


def test_embedded_sizes_wrong_type_is_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="embedded_sizes"):
        cfg = from_dict(
            tiny_recipe_dict(tmp_path, data={"embedded_sizes": {"train": "many", "dev": 2, "test": 2}})
        )
        download(cfg, log=_quiet)


def test_read_split_before_download(tmp_path: Path):
    cfg = from_dict(tiny_recipe_dict(tmp_path))
    with pytest.raises(UserError, match="download"):
        read_split(cfg, "train")


# ---------------------------------------------------------------- text


@pytest.mark.parametrize("gz", [False, True])
def test_text_from_local_folder(tmp_path: Path, gz: bool):
    raw = tmp_path / "raw"
    _write_text_files(raw, gz)
    cfg = _cfg(
        tmp_path, source="text", url=str(raw), file_pattern="{split}.{lang}.gz" if gz else "{split}.{lang}"
    )
    manifest = download(cfg, log=_quiet)
    _check_manifest(cfg, manifest, EXPECTED_LINES)
    src, tgt = read_split(cfg, "train")
    assert src == [normalize(s) for s, _ in PAIRS["train"]]
    assert tgt == [normalize(t) for _, t in PAIRS["train"]]
    assert src[1] == "A cat sleeps" and src[2] == "Caf\u00e9 au lait"
    assert src[3] == "NA" and tgt[3] == "null" and src[4] == "007"  # text is kept as text


@pytest.mark.parametrize("gz", [False, True])
def test_text_via_mirror(tmp_path: Path, gz: bool):
    mirror = tmp_path / "mirror"
    _write_text_files(mirror, gz, src="de", tgt="en", stem={"dev": "val", "test": "test_2016"})
    cfg = _cfg(
        tmp_path,
        source="text",
        src_lang="de",
        tgt_lang="en",
        url=FAKE_URL,
        file_pattern="{split}.{lang}.gz" if gz else "{split}.{lang}",
        splits={"train": "train", "dev": "val", "test": "test_2016"},
    )
    manifest = download(cfg, mirror=mirror, log=_quiet)
    assert manifest["mirror"] == str(mirror)
    _check_manifest(cfg, manifest, EXPECTED_LINES)
    # our split names are used for the output, the source's names only to find the files
    assert sorted(p.name for p in cfg.data_dir.iterdir()) == sorted(
        [MANIFEST] + [f"{s}.{lang}" for s in SPLITS for lang in ("de", "en")]
    )
    src, tgt = read_split(cfg, "test")
    assert src == ["One", "Two", "Three"] and tgt == ["Eins", "Zwei", "Drei"]


def test_mirror_ignores_url_query(tmp_path: Path):
    mirror = tmp_path / "mirror"
    _write_text_files(mirror, gz=False)
    cfg = _cfg(tmp_path, source="text", url=FAKE_URL, file_pattern="{split}.{lang}?raw=true")
    _check_manifest(cfg, download(cfg, mirror=mirror, log=_quiet), EXPECTED_LINES)


def test_text_crlf_line_endings(tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for split in SPLITS:
        (raw / f"{split}.en").write_bytes(b"a b\r\nc\r\n")
        (raw / f"{split}.de").write_bytes(b"x\r\ny")  # no final newline
    cfg = _cfg(tmp_path, source="text", url=str(raw))
    download(cfg, log=_quiet)
    assert read_split(cfg, "train") == (["a b", "c"], ["x", "y"])


def test_text_lone_carriage_return_stays_in_line(tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for split in SPLITS:
        (raw / f"{split}.en").write_bytes(b"one\rtwo\nthree\n")
        (raw / f"{split}.de").write_bytes(b"eins zwei\ndrei\n")
    cfg = _cfg(tmp_path, source="text", url=str(raw))
    download(cfg, log=_quiet)
    assert read_split(cfg, "train") == (["one two", "three"], ["eins zwei", "drei"])


# ---------------------------------------------------------------- tsv / jsonl / hub mirror


def _write_tsv(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in PAIRS.items():
        rows = [(s.replace("\t", " "), t.replace("\t", " ")) for s, t in rows]  # a tsv field holds no tab
        (folder / f"{split}.tsv").write_text(
            "".join(f"{s}\t{t}\textra {i}\n" for i, (s, t) in enumerate(rows)), encoding="utf-8"
        )


def test_tsv_source(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_tsv(raw)
    cfg = _cfg(tmp_path, source="tsv", url=str(raw), file_pattern="{split}.tsv", src_field="0", tgt_field="1")
    _check_manifest(cfg, download(cfg, log=_quiet), EXPECTED_LINES)
    src, tgt = read_split(cfg, "train")
    assert src == [normalize(s) for s, _ in PAIRS["train"]]
    assert tgt == [normalize(t) for _, t in PAIRS["train"]]  # "null", "1.50" stay text


def test_tsv_source_swapped_columns_via_mirror(tmp_path: Path):
    mirror = tmp_path / "mirror"
    _write_tsv(mirror)
    cfg = _cfg(
        tmp_path,
        source="tsv",
        url=FAKE_URL,
        file_pattern="{split}.tsv",
        src_field="1",
        tgt_field="0",
        src_lang="de",
        tgt_lang="en",
    )
    download(cfg, mirror=mirror, log=_quiet)
    assert read_split(cfg, "test") == (["Eins", "Zwei", "Drei"], ["One", "Two", "Three"])


def test_tsv_errors_are_one_line_user_errors(tmp_path: Path):
    """Whatever the reason, a tsv failure is a one-line UserError naming the file."""
    raw = tmp_path / "raw"
    _write_tsv(raw)
    cfg = _cfg(tmp_path, source="tsv", url=str(raw), file_pattern="{split}.tsv", src_field="0", tgt_field="7")
    with pytest.raises(UserError) as err:
        download(cfg, log=_quiet)
    assert "\n" not in str(err.value) and "train.tsv" in str(err.value)


def _write_jsonl(folder: Path, nested: bool, pattern: str = "{split}.jsonl") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in PAIRS.items():
        lines = []
        for i, (s, t) in enumerate(rows):
            row = (
                {"id": i, "translation": {"en": s, "de": t}}
                if nested
                else {"id": i, "english": s, "german": t}
            )
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        (folder / pattern.format(split=split)).write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize("nested", [False, True])
def test_jsonl_source(tmp_path: Path, nested: bool):
    raw = tmp_path / "raw"
    _write_jsonl(raw, nested)
    fields = ("translation.en", "translation.de") if nested else ("english", "german")
    cfg = _cfg(
        tmp_path,
        source="jsonl",
        url=str(raw),
        file_pattern="{split}.jsonl",
        src_field=fields[0],
        tgt_field=fields[1],
    )
    _check_manifest(cfg, download(cfg, log=_quiet), EXPECTED_LINES)
    src, tgt = read_split(cfg, "train")
    assert src == [normalize(s) for s, _ in PAIRS["train"]]
    assert tgt == [normalize(t) for _, t in PAIRS["train"]]


def test_jsonl_missing_field(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_jsonl(raw, nested=True)
    cfg = _cfg(
        tmp_path,
        source="jsonl",
        url=str(raw),
        file_pattern="{split}.jsonl",
        src_field="translation.fr",
        tgt_field="translation.de",
    )
    with pytest.raises(UserError) as err:
        download(cfg, log=_quiet)
    msg = str(err.value)
    assert "\n" not in msg and "translation.fr" in msg


def test_hub_source_from_mirror(tmp_path: Path):
    mirror = tmp_path / "mirror"
    _write_jsonl(mirror, nested=True)
    cfg = _cfg(
        tmp_path,
        source="hub",
        dataset="someone/some-dataset",
        dataset_config="de-en",
        file_pattern="{split}.jsonl",
        src_field="translation.en",
        tgt_field="translation.de",
    )
    manifest = download(cfg, mirror=mirror, log=_quiet)
    assert manifest["source"] == "hub" and manifest["mirror"] == str(mirror)
    _check_manifest(cfg, manifest, EXPECTED_LINES)
    assert read_split(cfg, "dev") == (["Hello world", "Good night"], ["Hallo Welt", "Gute Nacht"])


def test_hub_mirror_split_names(tmp_path: Path):
    mirror = tmp_path / "mirror"
    _write_jsonl(mirror, nested=True, pattern="part-{split}.jsonl")
    (mirror / "part-dev.jsonl").rename(mirror / "part-validation.jsonl")
    cfg = _cfg(
        tmp_path,
        source="hub",
        dataset="x/y",
        file_pattern="part-{split}.jsonl",
        splits={"train": "train", "dev": "validation", "test": "test"},
        src_field="translation.de",
        tgt_field="translation.en",
        src_lang="de",
        tgt_lang="en",
    )
    download(cfg, mirror=mirror, log=_quiet)
    assert read_split(cfg, "dev") == (["Hallo Welt", "Gute Nacht"], ["Hello world", "Good night"])


# ---------------------------------------------------------------- errors


def _one_line_error(cfg: Config, mirror=None) -> str:
    with pytest.raises(UserError) as err:
        download(cfg, mirror=mirror, log=_quiet)
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def test_mismatched_line_counts(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_text_files(raw, gz=False)
    (raw / "dev.de").write_text("Hallo Welt\n", encoding="utf-8")
    cfg = _cfg(tmp_path, source="text", url=str(raw))
    msg = _one_line_error(cfg)
    assert "'dev'" in msg and "2 en lines" in msg and "1 de lines" in msg
    assert not (cfg.data_dir / MANIFEST).exists()


def test_empty_text_split_is_a_user_error(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_text_files(raw, gz=False)
    for lang in ("en", "de"):
        (raw / f"test.{lang}").write_bytes(b"")
    cfg = _cfg(tmp_path, source="text", url=str(raw))
    msg = _one_line_error(cfg)
    assert "test.en" in msg or "'test'" in msg
    assert not (cfg.data_dir / MANIFEST).exists()


def test_empty_text_file_message_says_empty(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_text_files(raw, gz=False)
    for lang in ("en", "de"):
        (raw / f"test.{lang}").write_bytes(b"")
    msg = _one_line_error(_cfg(tmp_path, source="text", url=str(raw)))
    assert "empty" in msg.replace(str(tmp_path), "<tmp>")  # the path itself holds "empty"


def test_missing_mirror_file_names_file(tmp_path: Path):
    mirror = tmp_path / "mirror"
    _write_text_files(mirror, gz=True)
    (mirror / "dev.de.gz").unlink()
    cfg = _cfg(tmp_path, source="text", url=FAKE_URL, file_pattern="{split}.{lang}.gz")
    msg = _one_line_error(cfg, mirror=mirror)
    assert "dev.de.gz" in msg and "mirror" in msg


def test_missing_local_file_names_file(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_text_files(raw, gz=False)
    (raw / "test.en").unlink()
    msg = _one_line_error(_cfg(tmp_path, source="text", url=str(raw)))
    assert "test.en" in msg and "not found" in msg


def test_missing_mirror_folder(tmp_path: Path):
    cfg = _cfg(tmp_path, source="text", url=FAKE_URL)
    msg = _one_line_error(cfg, mirror=tmp_path / "no-such-mirror")
    assert "no-such-mirror" in msg and "mirror" in msg


def test_mirror_folder_is_a_file(tmp_path: Path):
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    msg = _one_line_error(
        _cfg(tmp_path, source="jsonl", url=FAKE_URL, src_field="a", tgt_field="b"), mirror=not_dir
    )
    assert "mirror" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_invalid_utf8(tmp_path: Path, gz: bool):
    raw = tmp_path / "raw"
    _write_text_files(raw, gz=gz)
    bad = b"fine\n\xff\xfe broken \xc3\x28\n"
    if gz:
        (raw / "dev.en.gz").write_bytes(gzip.compress(bad, mtime=0))
    else:
        (raw / "dev.en").write_bytes(bad)
    cfg = _cfg(
        tmp_path, source="text", url=str(raw), file_pattern="{split}.{lang}.gz" if gz else "{split}.{lang}"
    )
    msg = _one_line_error(cfg)
    assert "dev.en" in msg and "UTF-8" in msg


def test_invalid_jsonl(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_jsonl(raw, nested=False)
    (raw / "dev.jsonl").write_text('{"english": "a", "german": "b"}\n{not json\n', encoding="utf-8")
    cfg = _cfg(
        tmp_path,
        source="jsonl",
        url=str(raw),
        file_pattern="{split}.jsonl",
        src_field="english",
        tgt_field="german",
    )
    assert "dev.jsonl" in _one_line_error(cfg)


def test_failed_download_keeps_previous_corpus(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_text_files(raw, gz=False)
    cfg = _cfg(tmp_path, source="text", url=str(raw))
    first = download(cfg, log=_quiet)
    (raw / "train.de").write_text("only one line\n", encoding="utf-8")
    _one_line_error(cfg)
    assert json.loads((cfg.data_dir / MANIFEST).read_text(encoding="utf-8")) == first
    assert len(_lines(cfg.data_dir / "train.de")) == EXPECTED_LINES["train"]


def test_read_corpus_does_not_normalize(tmp_path: Path):
    raw = tmp_path / "raw"
    _write_text_files(raw, gz=False)
    corpus = read_corpus(_cfg(tmp_path, source="text", url=str(raw)))
    assert corpus["train"][0][1] == "  A cat\t sleeps "
    assert not (tmp_path / "corpus").exists()  # reading writes nothing


def test_mirror_download_makes_no_network_request(tmp_path: Path, monkeypatch):
    import socket

    import datasets

    # datasets' own defaults (the autouse fixture turns the ping off for speed)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    lookups: list[str] = []

    def no_network(host, *args, **kwargs):
        lookups.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, "network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    mirror = tmp_path / "mirror"
    _write_text_files(mirror, gz=False)
    cfg = _cfg(tmp_path, source="text", url=FAKE_URL)
    _check_manifest(cfg, download(cfg, mirror=mirror, log=_quiet), EXPECTED_LINES)
    assert lookups == []


# ---------------------------------------------------------------- the real Multi30k files, via the mirror


def test_multi30k_via_mirror(tmp_path: Path, multi30k_dir: Path):
    cfg = _cfg(
        tmp_path,
        source="text",
        src_lang="de",
        tgt_lang="en",
        url="https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw",
        file_pattern="{split}.{lang}.gz",
        splits={"train": "train", "dev": "val", "test": "test_2016_flickr"},
    )
    manifest = download(cfg, mirror=multi30k_dir, log=_quiet)
    _check_manifest(cfg, manifest, {"train": 29000, "dev": 1014, "test": 1000})
    src, tgt = read_split(cfg, "test")
    assert all(s and t for s, t in zip(src, tgt))


@pytest.mark.parametrize("gz", [False, True])
def test_text_lines_reads_line_exactly_and_names_no_cli_option(tmp_path: Path, gz: bool):
    from seq2seq.data.corpus import text_lines

    path = tmp_path / ("f.gz" if gz else "f")
    data = b"a\r\nb\rc\nd"
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    assert list(text_lines(str(path))) == ["a", "b\rc", "d"]
    path.write_bytes(gzip.compress(b"ok\n\xff\n", mtime=0) if gz else b"ok\n\xff\n")
    with pytest.raises(UserError) as e:
        list(text_lines(str(path)))
    assert str(e.value) == f"{path}: line 2 is not valid UTF-8 (byte 0)"  # download has no --replace-invalid
