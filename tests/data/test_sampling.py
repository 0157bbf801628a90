"""Subword regularization: the training pairs sampled afresh per epoch, exactly again for the same
(seed, epoch, batch), from memory-mapped text; off, the stored ids as before."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.load import load_config
from seq2seq.config.stamps import stage_settings
from seq2seq.data.corpus import download
from seq2seq.data.sampling import SampledPairs, batch_seed
from seq2seq.data.token_ids import IdSeqs, TextLines, build_pairs, load_text, text_paths
from seq2seq.data.tokenizer import load_tokenizers, tokenizers_fingerprint, train_tokenizers
from seq2seq.errors import UserError
from seq2seq.training.step import TrainData, rank_shares

QUIET = lambda *_: None  # noqa: E731
BATCHES = [list(range(0, 40)), list(range(40, 90)), [7, 300, 12, 399]]


def _setup(tmp_path: Path, model_type: str = "unigram", **spm):
    path = tmp_path / "r.yaml"
    spm = {"model_type": model_type, "subword_sampling": True, **spm}
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path, spm=spm)))
    cfg = load_config(path)
    download(cfg, log=QUIET)
    train_tokenizers(cfg, log=QUIET)
    toks = load_tokenizers(cfg.run_path)
    ids = build_pairs(cfg, *toks, tokenizers_fingerprint(*toks), log=QUIET)
    return cfg, toks, ids


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def built(request, tmp_path_factory):
    """(cfg, tokenizers, ids, SampledPairs) of the tiny corpus with spm.subword_sampling, per model type."""
    model_type = request.param
    cfg, toks, ids = _setup(
        tmp_path_factory.mktemp(model_type), model_type, alpha=0.5 if model_type == "bpe" else 0.1
    )
    sampled = SampledPairs(load_text(cfg), ids, toks, cfg.spm, cfg.train.seed, cfg.train.max_len)
    return cfg, toks, ids, sampled


def test_the_text_beside_the_ids_is_the_kept_lines_memory_mapped(built):
    cfg, toks, ids, _ = built
    src_text, tgt_text = load_text(cfg)
    lines = (cfg.data_dir / "train.en").read_text(encoding="utf-8").splitlines()
    assert len(src_text) == len(ids[0]) == len(lines)
    assert [src_text[i] for i in range(len(src_text))] == lines
    assert toks[0].encode([src_text[5]])[0] == ids[0][5]
    assert isinstance(src_text.data, np.memmap) and isinstance(src_text.offsets, np.memmap)


def test_sampled_segmentations_differ_across_epochs_and_decode_to_the_same_text(built):
    cfg, (src_tok, tgt_tok), ids, sampled = built
    idx = BATCHES[1]
    epochs = [sampled.batch(idx, epoch) for epoch in range(3)]
    for src, tgt in epochs:
        for i, s, t in zip(idx, src, tgt):
            assert src_tok.decode([s])[0] == src_tok.decode([ids[0][i]])[0]
            assert tgt_tok.decode([t])[0] == tgt_tok.decode([ids[1][i]])[0]
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]
    stored = [ids[0][i] for i in idx]
    assert epochs[0][0] != stored and epochs[1][0] != stored  # not the best segmentation each time


def test_same_seed_and_epoch_give_the_same_ids_whatever_ran_before_and_on_which_thread(built):
    """What a resumed run relies on: a batch's ids are a function of (seed, epoch, its indices)."""
    cfg, toks, ids, sampled = built
    first = [sampled.batch(idx, 4) for idx in BATCHES]
    sampled.batch(BATCHES[0], 9)  # other draws in between
    again = SampledPairs(load_text(cfg), ids, toks, cfg.spm, cfg.train.seed, cfg.train.max_len)
    assert [again.batch(idx, 4) for idx in reversed(BATCHES)] == first[::-1]
    out = []
    worker = threading.Thread(target=lambda: out.append(sampled.batch(BATCHES[2], 4)))
    worker.start(), worker.join()
    assert out == [first[2]]
    other_seed = SampledPairs(load_text(cfg), ids, toks, cfg.spm, cfg.train.seed + 1, cfg.train.max_len)
    assert other_seed.batch(BATCHES[1], 4) != first[1]
    assert batch_seed(1, 4, BATCHES[0]) == batch_seed(1, 4, list(BATCHES[0]))
    assert len({batch_seed(1, e, BATCHES[0]) for e in range(20)}) == 20


def test_sampling_in_two_threads_at_once_stays_deterministic(built):
    _, _, _, sampled = built
    expected = {e: sampled.batch(BATCHES[1], e) for e in range(6)}
    got: dict = {}

    def work(epochs):
        for e in epochs:
            got[e] = sampled.batch(BATCHES[1], e)

    threads = [threading.Thread(target=work, args=(range(k, 6, 2),)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


def test_a_sampled_side_longer_than_max_len_falls_back_to_the_stored_ids(built):
    cfg, toks, ids, _ = built
    short = SampledPairs(load_text(cfg), ids, toks, cfg.spm, cfg.train.seed, max_len=1)
    src, tgt = short.batch(BATCHES[0], 0)
    assert src == [ids[0][i] for i in BATCHES[0]] and tgt == [ids[1][i] for i in BATCHES[0]]


def test_nothing_per_epoch_is_kept_in_memory(built):
    """Bounded memory: the text stays memory-mapped, and sampling keeps nothing once a batch is made."""
    cfg, toks, ids, sampled = built
    before = {k: (type(v), id(v)) for k, v in vars(sampled).items()}
    for epoch in range(2):
        for idx in BATCHES:
            sampled.batch(idx, epoch)
    assert {k: (type(v), id(v)) for k, v in vars(sampled).items()} == before
    for lines in sampled.text:
        assert isinstance(lines, TextLines)
        assert isinstance(lines.data, np.memmap) and isinstance(lines.offsets, np.memmap)
    assert all(isinstance(x, IdSeqs) for x in sampled.ids)
    assert not any(isinstance(v, (list, dict, set)) for v in vars(sampled).values())


def test_the_train_step_collates_sampled_ids_and_counts_their_tokens(built):
    cfg, toks, ids, sampled = built
    data = TrainData(*ids, [], [], [], [], sampled)
    one = type("One", (), {"world": 1, "rank": 0})()
    micro = BATCHES[:2]
    (shares, total), again = rank_shares(micro, data, one, epoch=3), rank_shares(micro, data, one, epoch=3)
    assert total == sum(int((b.tgt_out != 0).sum()) for b, _ in shares)
    assert all(
        a[0].src.equal(b[0].src) and a[0].tgt_out.equal(b[0].tgt_out) for a, b in zip(shares, again[0])
    )
    other, _ = rank_shares(micro, data, one, epoch=4)
    assert not all(
        a[0].src.shape == b[0].src.shape and a[0].src.equal(b[0].src) for a, b in zip(shares, other)
    )


def test_off_the_ids_are_todays_and_no_text_is_written(tmp_path):
    cfg, toks, (src, tgt) = _setup(tmp_path, subword_sampling=False)
    assert not any(p.exists() for pair in text_paths(cfg).values() for p in pair)
    lines = (cfg.data_dir / "train.en").read_text(encoding="utf-8").splitlines()
    assert [src[i] for i in range(len(src))] == toks[0].encode(lines)
    data = TrainData(src, tgt, [], [], [], [])
    assert data.pairs(BATCHES[2], 5) == ([src[i] for i in BATCHES[2]], [tgt[i] for i in BATCHES[2]])
    with pytest.raises(UserError, match="spm.subword_sampling"):
        load_text(cfg)
    # turning sampling on adds the text (same ids); turning it off again reuses the files as they are
    cfg.spm.subword_sampling = True
    src2, _ = build_pairs(cfg, *toks, tokenizers_fingerprint(*toks), log=QUIET)
    assert [src2[i] for i in range(len(src2))] == [src[i] for i in range(len(src))]
    assert json.loads((cfg.run_path / "bin" / "meta.json").read_text())["text"] is True
    assert [load_text(cfg)[0][i] for i in range(3)] == lines[:3]
    cfg.spm.subword_sampling = False
    said = []
    build_pairs(cfg, *toks, tokenizers_fingerprint(*toks), log=said.append)
    assert said == []  # reused, not rebuilt


def test_the_sampling_keys_leave_the_spm_stage_alone():
    from seq2seq.config.schema import Config

    on, off = Config(), Config()
    on.spm.subword_sampling, on.spm.alpha, on.spm.nbest_size = True, 0.3, 16
    assert stage_settings(on, "spm") == stage_settings(off, "spm")
    assert stage_settings(on, "train") != stage_settings(off, "train")


@pytest.mark.parametrize(
    "spm,message",
    [
        ({"model_type": "bpe", "alpha": 1.0}, "spm.alpha"),
        ({"model_type": "unigram", "nbest_size": 1}, "spm.nbest_size"),
        ({"model_type": "unigram", "nbest_size": -2}, "spm.nbest_size"),
        ({"model_type": "unigram", "alpha": -0.1}, "spm.alpha"),
    ],
)
def test_bad_sampling_settings_are_one_line_config_errors(tmp_path, spm, message):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path, spm={"subword_sampling": True, **spm})))
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        load_config(path)


def test_every_rank_counts_the_same_sampled_tokens_and_takes_its_own_batches(built):
    """Under several processes each rank samples every batch of the step: the global count agrees, and
    a batch is sampled alike on whichever rank collates it."""
    _, _, ids, sampled = built
    data = TrainData(*ids, [], [], [], [], sampled)
    ranks = [type("Rank", (), {"world": 2, "rank": r})() for r in (0, 1)]
    (mine0, total0), (mine1, total1) = (rank_shares(BATCHES, data, r, epoch=2) for r in ranks)
    alone, total = rank_shares(BATCHES, data, type("One", (), {"world": 1, "rank": 0})(), epoch=2)
    assert total0 == total1 == total
    assert [w for _, w in mine0] == [1.0, 1.0] and [w for _, w in mine1] == [1.0, 0.0]
    for got, expected in zip([*mine0, mine1[0]], alone):
        assert got[0].src.equal(expected[0].src) and got[0].tgt_out.equal(expected[0].tgt_out)
    assert mine1[1][0].src.equal(alone[0][0].src)  # the zero-weight copy of the step's first batch
