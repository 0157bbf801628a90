"""Several corpora (data.sources): the config rules, the download of their pairs into one corpus with a
record of each pair's corpus, the kept pairs per corpus, and the weighted epochs of training."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import yaml

from seq2seq.config.load import from_dict, load_config
from seq2seq.constants import MANIFEST
from seq2seq.data.batches import epoch_batches, epoch_pairs, epoch_size, make_batches
from seq2seq.data.corpus import download, read_split
from seq2seq.data.sampling import SampledPairs
from seq2seq.data.token_ids import build_pairs, load_text, source_counts
from seq2seq.data.tokenizer import load_tokenizers, tokenizers_fingerprint, train_tokenizers
from seq2seq.errors import UserError
from seq2seq.training.setup import source_shares
from seq2seq.training.step import TrainData

ROOT = Path(__file__).resolve().parents[2]


def _quiet(_msg: str) -> None:
    pass


def _write_text(folder: Path, stem: str, rows: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.en").write_text("".join(a + "\n" for a, _ in rows), encoding="utf-8")
    (folder / f"{stem}.de").write_text("".join(b + "\n" for _, b in rows), encoding="utf-8")


EXTRA = [(f"number {i} again", f"Nummer {i} nochmal") for i in range(10)]


def _sources(tmp_path: Path, **second) -> list[dict]:
    """An embedded corpus (train, dev, test) and a text corpus of 10 train pairs in tmp_path/extra."""
    _write_text(tmp_path / "extra", "mono", EXTRA)
    return [
        {
            "name": "numbers",
            "kind": "embedded",
            "splits": {"train": "train", "dev": "dev", "test": "test"},
            "embedded_sizes": {"train": 40, "dev": 6, "test": 5},
        },
        {
            "name": "extra",
            "kind": "text",
            "url": str(tmp_path / "extra"),
            "splits": {"train": "mono"},
            **second,
        },
    ]


def _cfg(
    tmp_path: Path, sources: list[dict], clean: Optional[dict] = None, spm: Optional[dict] = None, **train
):
    data = {"src_lang": "en", "tgt_lang": "de", "dir": str(tmp_path / "corpus"), "sources": sources}
    return from_dict(
        {
            "name": "t",
            "run_dir": str(tmp_path / "run"),
            "data": data,
            "spm": {"vocab_size": 90, **(spm or {})},
            "train": {"max_len": 100, **train},
            "clean": clean or {},
        }
    )


# ---------------------------------------------------------------- weighted epochs


def test_each_source_gets_its_share_of_an_epoch_exactly():
    shares = [(10, 2.0), (7, 0.5), (5, 1.0), (4, 1.25)]
    for epoch in range(3):
        chosen = epoch_pairs(shares, seed=1, epoch=epoch)
        per_source = Counter(int(np.searchsorted([10, 17, 22, 26], i, side="right")) for i in chosen)
        assert per_source == {0: 20, 1: 4, 2: 5, 3: 5}  # round(weight x pairs): 20, 3.5 -> 4, 5, 5
        assert len(chosen) == epoch_size(shares) == 34
        counts = Counter(chosen.tolist())
        assert all(counts[i] == 2 for i in range(10))  # weight 2: every pair twice
        assert all(counts[i] <= 1 for i in range(10, 17))  # 0.5: without replacement
        assert all(counts[i] == 1 for i in range(17, 22))
        assert sum(counts[i] for i in range(22, 26)) == 5 and all(counts[i] in (1, 2) for i in range(22, 26))


def test_the_drawn_part_is_a_function_of_seed_and_epoch():
    shares = [(100, 0.3), (50, 1.0)]
    a = epoch_pairs(shares, seed=1, epoch=0)
    assert np.array_equal(a, epoch_pairs(shares, seed=1, epoch=0))
    assert not np.array_equal(a, epoch_pairs(shares, seed=1, epoch=1))
    assert not np.array_equal(a, epoch_pairs(shares, seed=2, epoch=0))


def test_epoch_batches_hold_the_drawn_pairs_and_weight_one_is_the_plain_epoch():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 20, 30), rng.integers(1, 20, 30)
    shares = [(20, 0.5), (10, 3.0)]
    batches = epoch_batches(src, tgt, 60, seed=4, epoch=2, shares=shares)
    assert Counter(i for b in batches for i in b) == Counter(epoch_pairs(shares, 4, 2).tolist())
    assert all(max(max(src[i], tgt[i]) + 1 for i in b) * len(b) <= 60 or len(b) == 1 for b in batches)
    plain = make_batches(src, tgt, 60, seed=4, epoch=2)
    assert epoch_batches(src, tgt, 60, seed=4, epoch=2, shares=[(20, 1.0), (10, 1.0)]) == plain
    assert epoch_batches(src, tgt, 60, seed=4, epoch=2) == plain


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "change, message",
    [
        ({"weight": 0}, "data.sources[2].weight' must be in (0, 1000]"),
        ({"kind": "csv"}, "data.sources[2].kind': 'csv' is not one of"),
        ({"name": "numbers"}, "data.sources[2].name': 'numbers' names two sources"),
        ({"name": "../x"}, "data.sources[2].name"),
        ({"splits": {"train": "mono", "dev": "mono"}}, "split 'dev' already comes from source 'numbers'"),
        ({"skip": -1}, "data.sources[2].skip' must be in [0, inf)"),
        ({"kind": "tsv"}, "data.sources[2].src_field' and 'data.sources[2].tgt_field' are required"),
        ({"tag": " <BT>"}, "data.sources[2].tag"),
        ({"colour": 1}, "unknown config key 'data.sources.colour'"),
    ],
)
def test_every_source_key_is_checked(tmp_path: Path, change: dict, message: str):
    with pytest.raises(UserError, match=re.escape(message)):
        _cfg(tmp_path, _sources(tmp_path, **change))


def test_a_dev_split_and_a_train_split_are_required(tmp_path: Path):
    sources = _sources(tmp_path)
    sources[0]["splits"] = {"train": "train", "test": "test"}
    sources[0]["embedded_sizes"] = {"train": 4, "test": 4}
    with pytest.raises(UserError, match="no source gives a 'dev' split"):
        _cfg(tmp_path, sources)
    with pytest.raises(UserError, match="expected a list"):
        from_dict({"data": {"sources": {"name": "x"}}})


def test_a_single_source_recipe_reads_as_before(tmp_path: Path):
    """No data.sources in the settings of a single-source recipe: its config.yaml, stamps and manifest
    record are those it always had (an old run's settings compare equal)."""
    cfg = load_config(ROOT / "recipes" / "default.yaml")
    assert "sources" not in cfg.to_dict()["data"]
    assert [s.name for s in cfg.data.source_list()] == ["main"] and cfg.test_sets == ["test"]
    old = load_config(ROOT / "tests" / "fixtures" / "old_run_v1" / "config.yaml")
    assert old.data.sources == [] and "sources" not in old.to_dict()["data"]


def test_sources_round_trip_through_the_saved_settings(tmp_path: Path):
    cfg = _cfg(tmp_path, _sources(tmp_path, weight=0.5, tag="<BT>"))
    again = from_dict(cfg.to_dict())
    assert again.data.sources == cfg.data.sources and again.data.sources[1].weight == 0.5
    assert cfg.data.split_names == ["train", "dev", "test"] and cfg.test_sets == ["test"]


# ---------------------------------------------------------------- download and kept pairs


def test_download_records_each_sources_pairs(tmp_path: Path):
    cfg = _cfg(tmp_path, _sources(tmp_path, skip=2, take=5, tag="<BT>", weight=2))
    manifest = download(cfg, log=_quiet)
    assert manifest == json.loads((cfg.data_dir / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["source"] == "sources"
    assert manifest["sources"] == [
        {
            "name": "numbers",
            "kind": "embedded",
            "weight": 1.0,
            "pairs": {"train": 40, "dev": 6, "test": 5},
            "train_lines": [0, 40],
        },
        {"name": "extra", "kind": "text", "weight": 2.0, "pairs": {"train": 5}, "train_lines": [40, 45]},
    ]
    assert manifest["files"]["train.en"]["lines"] == 45 and manifest["files"]["dev.en"]["lines"] == 6
    src, tgt = read_split(cfg, "train")
    assert src[40:] == [f"<BT> number {i} again" for i in range(2, 7)]  # skip 2, take 5, tagged
    assert tgt[40:] == [f"Nummer {i} nochmal" for i in range(2, 7)]
    assert not any(line.startswith("<BT>") for line in src[:40])


def test_kept_pairs_are_counted_per_source_and_weighted(tmp_path: Path):
    cfg = _cfg(tmp_path, _sources(tmp_path, weight=1.5), max_len=5)
    download(cfg, log=_quiet)
    train_tokenizers(cfg, log=_quiet)
    src_tok, tgt_tok = load_tokenizers(cfg.run_path)
    lines: list[str] = []
    ids_src, _ = build_pairs(cfg, src_tok, tgt_tok, tokenizers_fingerprint(src_tok, tgt_tok), lines.append)
    counts = source_counts(cfg)
    assert [name for name, _ in counts] == ["numbers", "extra"]
    assert sum(n for _, n in counts) == len(ids_src) and counts[1][1] <= 10
    src, tgt = read_split(cfg, "train")
    expect = [
        sum(
            1
            for a, b in zip(src[lo:hi], tgt[lo:hi])
            if max(len(src_tok.encode([a])[0]), len(tgt_tok.encode([b])[0])) <= 5
        )
        for lo, hi in ((0, 40), (40, 50))
    ]
    assert [n for _, n in counts] == expect
    assert any("per source: numbers" in line for line in lines)
    assert source_shares(cfg) == ((expect[0], 1.0), (expect[1], 1.5))


def test_cleaning_drops_pairs_of_every_source_before_its_tag_and_counts_them_per_source(tmp_path: Path):
    sources = _sources(tmp_path, tag="<BT>")
    rows = [("same words", "same words"), ("number 1 again", "Nummer 1 nochmal")] + EXTRA
    _write_text(tmp_path / "extra", "mono", rows)  # a copy (untagged), and "number 1 again" twice
    cfg = _cfg(tmp_path, sources, clean={"copies": True, "duplicates": True})
    manifest = download(cfg, log=_quiet)
    numbers, extra = manifest["sources"]
    assert extra["clean"] == {"read": 12, "kept": 10, "dropped": {"copy": 1, "duplicate": 1}}
    assert extra["pairs"] == {"train": 10} and extra["train_lines"] == [
        numbers["pairs"]["train"],
        manifest["files"]["train.en"]["lines"],
    ]
    assert numbers["clean"]["read"] == 40 and numbers["clean"]["kept"] == numbers["pairs"]["train"]
    assert manifest["clean"]["read"] == 52
    assert manifest["clean"]["dropped"] == {
        rule: numbers["clean"]["dropped"][rule] + extra["clean"]["dropped"][rule]
        for rule in ("copy", "duplicate")
    }
    src, _ = read_split(cfg, "train")
    assert src[extra["train_lines"][0] :] == [f"<BT> number {i} again" for i in (1, 0, *range(2, 10))]
    dropped = (cfg.data_dir / "dropped.tsv").read_text(encoding="utf-8").splitlines()
    assert (
        "copy\tsame words\tsame words" in dropped and "duplicate\tnumber 1 again\tNummer 1 nochmal" in dropped
    )
    assert "dev" not in numbers["clean"] and len(read_split(cfg, "dev")[0]) == 6


def test_weighted_epochs_take_sampled_segmentations_of_the_pairs_they_draw(tmp_path: Path):
    cfg = _cfg(tmp_path, _sources(tmp_path, weight=2), spm={"subword_sampling": True, "alpha": 0.5})
    download(cfg, log=_quiet)
    train_tokenizers(cfg, log=_quiet)
    toks = load_tokenizers(cfg.run_path)
    ids = build_pairs(cfg, *toks, tokenizers_fingerprint(*toks), _quiet)
    sampled = SampledPairs(load_text(cfg), ids, toks, cfg.spm, cfg.train.seed, cfg.train.max_len)
    data = TrainData(*ids, [], [], [], [], sampled, source_shares(cfg))
    batches = epoch_batches(ids[0].lengths, ids[1].lengths, 60, cfg.train.seed, 3, data.shares)
    drawn = sorted(i for b in batches for i in b)
    assert len(drawn) == epoch_size(data.shares) and drawn.count(len(ids[0]) - 1) == 2  # weight 2: twice
    for b in batches:
        src, tgt = data.pairs(b, 3)
        assert (src, tgt) == data.pairs(b, 3) and len(src) == len(tgt) == len(b)
        assert toks[0].decode(src) == toks[0].decode([ids[0][i] for i in b])


def test_a_source_url_is_relative_to_the_recipe(tmp_path: Path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    sources = _sources(tmp_path)
    sources[1]["url"] = "../extra"
    recipe = folder / "r.yaml"
    recipe.write_text(json.dumps({"data": {"src_lang": "en", "tgt_lang": "de", "sources": sources}}))
    monkeypatch.chdir(tmp_path / "extra")
    assert load_config(recipe).data.sources[1].url == str(tmp_path / "extra")


def test_a_corpus_key_is_overridden_by_the_corpus_name(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    data = {"src_lang": "en", "tgt_lang": "de", "sources": _sources(tmp_path)}
    recipe.write_text(json.dumps({"data": data}))
    cfg = load_config(
        recipe, ["data.sources.extra.weight=0.5", "sources.extra.tag=007", "sources.numbers.take=3"]
    )
    assert [(s.weight, s.tag, s.take) for s in cfg.data.sources] == [(1.0, "", 3), (0.5, "007", 0)]
    with pytest.raises(UserError, match="no item of sources is named 'nope' \\(names: numbers, extra\\)"):
        load_config(recipe, ["sources.nope.weight=2"])
    with pytest.raises(UserError, match=re.escape("data.sources[2].weight' must be in (0, 1000]")):
        load_config(recipe, ["sources.extra.weight=0"])
    whole = json.dumps(data["sources"][:1])  # the whole list, then an item of it
    cfg = load_config(recipe, [f"data.sources={whole}", "sources.numbers.weight=3"])
    assert [(s.name, s.weight) for s in cfg.data.sources] == [("numbers", 3.0)]


def test_the_example_of_the_docs_is_a_valid_recipe():
    text = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    section = text[text.index("## Several corpora") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```\n")]
    cfg = from_dict(yaml.safe_load(block))
    assert [(s.name, s.kind, s.weight) for s in cfg.data.sources] == [
        ("multi30k", "text", 1.0),
        ("news", "tsv", 0.5),
    ]
    assert cfg.test_sets == ["test"]


def test_single_source_keys_beside_sources_are_an_error_and_not_saved(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    data = {"src_lang": "en", "tgt_lang": "de", "sources": _sources(tmp_path)}
    recipe.write_text(json.dumps({"data": {**data, "url": "corpus"}}))
    with pytest.raises(UserError, match="'data.url' is not used with data.sources: .*data.sources.NAME.url"):
        load_config(recipe)
    recipe.write_text(json.dumps({"data": data}))
    with pytest.raises(UserError, match="'data.source' is not used .*data.sources.NAME.kind"):
        load_config(recipe, ["data.source=tsv"])
    saved = load_config(recipe).to_dict()["data"]
    assert "url" not in saved and "splits" not in saved and len(saved["sources"]) == 2
