"""Training pairs as memory-mapped token ids: filtering, de-duplication, reuse and rebuild."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import rehash_manifest, tiny_recipe_dict

from seq2seq.config.load import load_config
from seq2seq.data.corpus import download
from seq2seq.data.token_ids import build_pairs, drop_reason
from seq2seq.data.tokenizer import load_tokenizers, tokenizers_fingerprint, train_tokenizers

QUIET = lambda *_: None  # noqa: E731


def _setup(tmp_path: Path, **train):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path, train=train)))
    cfg = load_config(path)
    download(cfg, log=QUIET)
    train_tokenizers(cfg, log=QUIET)
    s, t = load_tokenizers(cfg.run_path)
    return cfg, s, t, tokenizers_fingerprint(s, t)


def test_ids_match_the_tokenizer_and_are_memory_mapped(tmp_path):
    cfg, s, t, fp = _setup(tmp_path)
    src, tgt = build_pairs(cfg, s, t, fp, log=QUIET)
    lines = (cfg.data_dir / "train.en").read_text(encoding="utf-8").splitlines()
    expected = s.encode(lines)
    assert len(src) == len(tgt) == len(lines) == 400
    assert [src[i] for i in range(len(src))] == expected
    assert src.data.dtype == np.uint16 and isinstance(src.data, np.memmap)
    assert src.lengths.tolist() == [len(x) for x in expected]


def test_filters_and_dedupe(tmp_path):
    cfg, s, t, fp = _setup(tmp_path)
    train_en, train_de = cfg.data_dir / "train.en", cfg.data_dir / "train.de"
    en, de = train_en.read_text().splitlines(), train_de.read_text().splitlines()
    # add a duplicate pair, an empty pair, a long pair and a badly proportioned pair
    en += [en[0], "", "one " * 150, "one"]
    de += [de[0], "", "eins " * 150, "eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf"]
    train_en.write_text("".join(x + "\n" for x in en))
    train_de.write_text("".join(x + "\n" for x in de))
    rehash_manifest(cfg.data_dir)
    cfg.train.dedupe, cfg.train.filter_ratio = True, 3.0
    src, tgt = build_pairs(cfg, s, t, fp, log=QUIET)
    stats = json.loads((cfg.run_path / "bin" / "meta.json").read_text())["stats"]
    assert stats["read"] == 404 and stats["duplicate"] >= 1 and stats["empty"] == 1 and stats["too_long"] == 1
    assert stats["ratio"] >= 1 and stats["kept"] == len(src) <= 400
    for i in range(len(src)):
        a, b = len(src[i]), len(tgt[i])
        assert 0 < a <= cfg.train.max_len and 0 < b <= cfg.train.max_len and max(a, b) <= 3.0 * min(a, b)


def test_reused_until_the_inputs_change(tmp_path):
    cfg, s, t, fp = _setup(tmp_path)
    build_pairs(cfg, s, t, fp, log=QUIET)
    data = cfg.run_path / "bin" / "train.src.bin"
    stamp = data.stat().st_mtime_ns
    logs = []
    build_pairs(cfg, s, t, fp, log=logs.append)
    assert data.stat().st_mtime_ns == stamp and logs == []  # reused
    cfg.train.max_len = 8
    src, _ = build_pairs(cfg, s, t, fp, log=logs.append)
    assert logs and max(src.lengths) <= 8  # rebuilt for the new filter


def test_drop_reason():
    assert drop_reason([5, 6], [7]) is None  # no limits given: only empty pairs are dropped
    assert drop_reason([], [7]) == drop_reason([5], []) == "empty"
    assert drop_reason([5] * 4, [7], max_len=3) == "too_long"
    assert drop_reason([5] * 3, [7] * 3, max_len=3) is None
    assert drop_reason([5] * 4, [7], max_len=0) is None  # 0: off
    assert drop_reason([5] * 4, [7], filter_ratio=3.0) == "ratio"
    assert drop_reason([5] * 3, [7], filter_ratio=3.0) is None
    assert drop_reason([5] * 4, [7], filter_ratio=0.0) is None
    assert drop_reason([], [7] * 9, max_len=3, filter_ratio=2.0) == "empty"  # empty, then length, then ratio
    assert drop_reason([5] * 9, [7], max_len=3, filter_ratio=2.0) == "too_long"


def test_a_rebuild_failing_midway_leaves_no_meta_to_reuse(tmp_path, monkeypatch):
    """meta.json marks a complete set of id files: a rebuild that dies while swapping them in removes it
    first, so the next run rebuilds instead of reading a mix of old and new files."""
    import seq2seq.data.token_ids as shards

    cfg, s, t, fp = _setup(tmp_path)
    build_pairs(cfg, s, t, fp, log=QUIET)
    meta = cfg.run_path / "bin" / "meta.json"
    assert meta.is_file()
    real_commit = shards.AtomicOutput.commit

    def commit(self):
        if self.path.name == "train.tgt.bin":
            self.discard()
            raise OSError(28, "No space left on device")
        real_commit(self)

    cfg.train.max_len = 5  # other settings: a rebuild
    monkeypatch.setattr(shards.AtomicOutput, "commit", commit)
    with pytest.raises(OSError):
        build_pairs(cfg, s, t, fp, log=QUIET)
    assert not meta.exists()
    monkeypatch.undo()
    src, tgt = build_pairs(cfg, s, t, fp, log=QUIET)
    assert meta.is_file() and all(len(src[i]) <= 5 and len(tgt[i]) <= 5 for i in range(len(src)))
