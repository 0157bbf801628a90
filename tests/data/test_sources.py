"""Corpus readers: TSV and JSON-lines errors naming the line, no Hugging Face cache for local files,
URL downloads kept in <data_dir>/downloads, hub mirrors in the Hub's real layouts, offline hub."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seq2seq.config.load import from_dict
from seq2seq.config.schema import Config
from seq2seq.data.corpus import download, read_split
from seq2seq.errors import UserError

ROWS = {
    "train": [("one cat", "eine Katze"), ("two dogs", "zwei Hunde"), ("three birds", "drei Vögel")],
    "validation": [("four fish", "vier Fische")],
    "test": [("five cows", "fünf Kühe"), ("six hens", "sechs Hühner")],
}


def _quiet(_msg: str) -> None:
    pass


def _cfg(tmp_path: Path, **data) -> Config:
    return from_dict({"name": "t", "data": {"dir": str(tmp_path / "corpus"), **data}})


def _error(cfg: Config, mirror=None) -> str:
    with pytest.raises(UserError) as err:
        download(cfg, mirror=mirror, log=_quiet)
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------- TSV


def _tsv(tmp_path: Path, text: str, **data) -> Config:
    raw = tmp_path / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        (raw / f"{split}.tsv").write_text("a\tb\n" if split != "train" else text, encoding="utf-8")
    values = dict(source="tsv", url=str(raw), file_pattern="{split}.tsv", src_field="0", tgt_field="1")
    return _cfg(tmp_path, **{**values, **data})


@pytest.mark.parametrize(
    "text, needles",
    [
        ("en\tde\none\teins\n", ["line 1 looks like a header row", "src_field: en"]),
        ("source\ttarget\none\teins\n", ["line 1 looks like a header row"]),
        ("one\teins\ntwo zwei\nthree\tdrei\n", ["line 2 has no tab"]),
        ("one\teins\ntwo\tzwei\tx\n", ["line 2 has 3 tab-separated columns, line 1 has 2"]),
        ("one\teins\n\nthree\tdrei\n", ["line 2 has no tab"]),
        ("", ["empty"]),
    ],
)
def test_tsv_errors_name_file_and_line(tmp_path: Path, text: str, needles: list[str]):
    msg = _error(_tsv(tmp_path, text))
    assert "train.tsv" in msg
    for needle in needles:
        assert needle in msg, msg


def test_tsv_header_row_by_column_names(tmp_path: Path):
    cfg = _tsv(tmp_path, "id\tde\ten\n1\teins\tone\n2\tzwei\ttwo\n", src_field="en", tgt_field="de")
    for split in ("dev", "test"):
        (tmp_path / "raw" / f"{split}.tsv").write_text("id\tde\ten\n1\tx\ty\n", encoding="utf-8")
    download(cfg, log=_quiet)
    assert read_split(cfg, "train") == (["one", "two"], ["eins", "zwei"])  # the header is not trained on
    cfg = _tsv(tmp_path, "id\tde\ten\n1\teins\tone\n", src_field="english", tgt_field="de")
    assert "no column 'english' in the header row (line 1: id, de, en)" in _error(cfg)


def test_tsv_quotes_are_text_and_empty_fields_stay(tmp_path: Path):
    cfg = _tsv(tmp_path, '"quoted"\t"a, b"\n\t\nit\'s\tes ist\n')
    download(cfg, log=_quiet)
    assert read_split(cfg, "train") == (['"quoted"', "", "it's"], ['"a, b"', "", "es ist"])


# ---------------------------------------------------------------- JSON lines


def _jsonl(tmp_path: Path, text: str) -> Config:
    raw = tmp_path / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        ok = '{"en": "a", "de": "b"}\n'
        (raw / f"{split}.jsonl").write_text(text if split == "train" else ok, encoding="utf-8")
    return _cfg(
        tmp_path, source="jsonl", url=str(raw), file_pattern="{split}.jsonl", src_field="en", tgt_field="de"
    )


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"en": "a", "de": "b"}\n{"en": "c", "de": \n', "line 2 is not valid JSON"),
        ('{"en": "a", "de": "b"}\n["c", "d"]\n', "line 2 is not a JSON object"),
        ('{"en": "a", "de": "b"}\n{"en": "c"}\n', "line 2: field 'de' not found (columns: en)"),
        ('{"en": "a", "de": null}\n', "line 1: field 'de' is null, not text"),
        ('[{"en": "a", "de": "b"}]\n', "line 1 is not a JSON object"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, text: str, needle: str):
    msg = _error(_jsonl(tmp_path, text))
    assert "train.jsonl" in msg and needle in msg, msg


def test_jsonl_blank_lines_and_numbers(tmp_path: Path):
    cfg = _jsonl(tmp_path, '{"en": "a", "de": "b"}\n\n{"en": 7, "de": 1.5}\n')
    download(cfg, log=_quiet)
    assert read_split(cfg, "train") == (["a", "7"], ["b", "1.5"])


# ---------------------------------------------------------------- caches


def test_local_tsv_and_jsonl_leave_no_cache(tmp_path: Path):
    """Local tsv/jsonl are read in place: `datasets` is never imported, no cache folder appears."""
    for kind in ("tsv", "jsonl"):
        cfg = (
            _tsv(tmp_path / kind, "one\teins\n")
            if kind == "tsv"
            else _jsonl(tmp_path / kind, '{"en": "x", "de": "y"}\n')
        )
        script = (
            "import sys, yaml; from seq2seq.config import from_dict; from seq2seq.data import download\n"
            f"download(from_dict(yaml.safe_load({json.dumps(json.dumps(cfg.to_dict()))})), log=lambda _: None)\n"
            "assert 'datasets' not in sys.modules, 'datasets imported'\n"
        )
        env = {**os.environ, "HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}
        env.pop("HF_DATASETS_CACHE", None)
        proc = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert not (tmp_path / "hf").exists() and not (tmp_path / "home" / ".cache").exists()
        assert read_split(cfg, "train")[0] in (["one"], ["x"])


def test_url_files_are_downloaded_once_into_the_data_dir(tmp_path: Path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for split in ("train", "dev", "test"):
        (raw / f"{split}.en").write_text("hello\n", encoding="utf-8")
        (raw / f"{split}.de").write_text("hallo\n", encoding="utf-8")
    cfg = _cfg(tmp_path, source="text", url=raw.as_uri())  # file:// goes through the URL download path
    download(cfg, log=_quiet)
    cached = sorted((cfg.data_dir / "downloads").iterdir())
    assert len(cached) == 6 and all(p.read_text() in ("hello\n", "hallo\n") for p in cached)
    for p in raw.iterdir():
        p.unlink()
    download(cfg, log=_quiet)  # the second run reads the kept files
    assert read_split(cfg, "test") == (["hello"], ["hallo"])


def test_failed_url_download_is_one_line_and_leaves_nothing(tmp_path: Path):
    cfg = _cfg(tmp_path, source="text", url=(tmp_path / "nowhere").as_uri())
    msg = _error(cfg)
    assert msg.startswith("could not download file://") and "MIRROR" in msg
    assert not (cfg.data_dir / "downloads").exists() or not any((cfg.data_dir / "downloads").iterdir())


# ---------------------------------------------------------------- hub mirror layouts


def _parquet(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"translation": [{"en": s, "de": t} for s, t in rows], "id": list(range(len(rows)))})
    pq.write_table(table, path)


def _hub_cfg(tmp_path: Path, **data) -> Config:
    values = dict(
        source="hub",
        dataset="someone/numbers",
        src_field="translation.en",
        tgt_field="translation.de",
        splits={"train": "train", "dev": "validation", "test": "test"},
    )
    return _cfg(tmp_path, **{**values, **data})


def _write_layout(mirror: Path, layout: str) -> None:
    """The same splits as the Hub's tools lay them out (train sharded in two)."""
    halves = {"train": [ROWS["train"][:2], ROWS["train"][2:]]}
    for split, rows in ROWS.items():
        shards = halves.get(split, [rows])
        for i, part in enumerate(shards):
            n = len(shards)
            name = {
                "data": f"data/{split}-{i:05d}-of-{n:05d}.parquet",
                "config": f"de-en/{split}-{i:05d}-of-{n:05d}.parquet",
                "cache": f"datasets--someone--numbers/snapshots/abc123/de-en/{split}-{i:05d}-of-{n:05d}.parquet",
                "convert": f"de-en/{split}/{i:04d}.parquet",
                "convert-old": f"de-en/numbers-{split}"
                + (f"-{i:05d}-of-{n:05d}" if n > 1 else "")
                + ".parquet",
            }[layout]
            _parquet(mirror / name, part)
    if layout == "cache":
        (mirror / "datasets--someone--numbers" / "refs").mkdir()
        (mirror / "datasets--someone--numbers" / "refs" / "main").write_text("abc123")


@pytest.mark.parametrize("layout", ["data", "config", "cache", "convert", "convert-old"])
def test_hub_mirror_layouts(tmp_path: Path, layout: str):
    mirror = tmp_path / "mirror"
    _write_layout(mirror, layout)
    config = None if layout == "data" else "de-en"
    cfg = _hub_cfg(tmp_path, dataset_config=config)
    manifest = download(cfg, mirror=mirror, log=_quiet)
    assert {s: manifest["files"][f"{s}.en"]["lines"] for s in ("train", "dev", "test")} == {
        "train": 3,
        "dev": 1,
        "test": 2,
    }
    assert read_split(cfg, "train") == ([s for s, _ in ROWS["train"]], [t for _, t in ROWS["train"]])
    assert read_split(cfg, "dev") == (["four fish"], ["vier Fische"])


def test_hub_mirror_missing_shard_and_wrong_split_name(tmp_path: Path):
    mirror = tmp_path / "mirror"
    _write_layout(mirror, "config")
    (mirror / "de-en" / "train-00001-of-00002.parquet").unlink()
    msg = _error(_hub_cfg(tmp_path, dataset_config="de-en"), mirror)
    assert "1 of 2 shards of split 'train'" in msg and "train-00001-of-00002.parquet" in msg
    _write_layout(mirror, "config")
    cfg = _hub_cfg(tmp_path, dataset_config="de-en", splits={"train": "train", "dev": "dev"})
    msg = _error(cfg, mirror)
    assert "no files for split 'dev'" in msg and "validation" in msg  # says which splits are there
    msg = _error(_hub_cfg(tmp_path), mirror)  # no dataset_config: names the config folders
    assert "de-en" in msg and "data.dataset_config" in msg


def test_hub_mirror_jsonl_with_pattern(tmp_path: Path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for split, rows in ROWS.items():
        text = "".join(json.dumps({"translation": {"en": s, "de": t}}) + "\n" for s, t in rows)
        (mirror / f"part-{split}.jsonl").write_text(text, encoding="utf-8")
    cfg = _hub_cfg(tmp_path, file_pattern="part-{split}.jsonl")
    download(cfg, mirror=mirror, log=_quiet)
    assert read_split(cfg, "test") == (["five cows", "six hens"], ["fünf Kühe", "sechs Hühner"])


# ---------------------------------------------------------------- the Hub, offline


def test_hub_offline_without_mirror_is_one_clear_error(tmp_path: Path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def no_network(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    msg = _error(_hub_cfg(tmp_path))
    assert "could not load hub dataset someone/numbers" in msg and "cannot be reached" in msg
    assert "hf download someone/numbers --repo-type dataset" in msg and "--mirror" in msg
    assert datasets.config.HF_HUB_OFFLINE is False  # the offline switch is put back


def test_hub_offline_setting_is_honoured(tmp_path: Path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = _error(_hub_cfg(tmp_path))
    assert "HF_HUB_OFFLINE is set" in msg and "cache does not hold it" in msg
