"""Compiled decoder steps on bucketed shapes (seq2seq/compiled.py) give the eager model's numbers.

torch.compile runs here with backend aot_eager: dynamo captures the step and AOTAutograd its backward
(the graph capture, padding and slicing under test), without inductor's minutes of code generation
on a 2-core CPU. benchmarks/train_throughput.py and decode_speed.py --compile check inductor itself
against eager on the device they run on.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from seq2seq.batches import collate, source_tensor
from seq2seq.compiled import BucketState, CompiledDecoder, bucket_len, bucket_rows, pad_state, training_loop
from seq2seq.config import Config, DecodeConfig
from seq2seq.search import beam_search, greedy
from seq2seq.translator import Ensemble, Translator, decode_ids
from tests.conftest import random_ids, tiny_model

BACKEND = "aot_eager"


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_buckets():
    assert [bucket_rows(n) for n in (1, 8, 9, 33, 64, 65, 130)] == [8, 8, 16, 64, 64, 128, 192]
    assert [bucket_len(s) for s in (1, 16, 17, 40)] == [16, 16, 32, 48]


def test_pad_state_keeps_real_rows_and_masks_new_positions():
    model = tiny_model()
    src, lengths = source_tensor(random_ids(3, seed=1))
    state = model.encode(src, lengths)
    padded = pad_state(state, 8, 32)
    assert padded.memory.shape[:2] == (8, 32) and padded.h.shape[1] == 8
    assert torch.equal(padded.memory[:3, : src.size(1)], state.memory)
    assert torch.equal(padded.mask[:3, : src.size(1)], state.mask)
    assert not padded.mask[:, src.size(1) :].any()
    assert torch.equal(padded.h[:, 3:], state.h[:, :1].expand(-1, 5, -1))  # padded rows copy row 0


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"dec_layers": 2, "attention": "general"},
        {"input_feeding": False, "attention": "dot", "dec_hidden": 24},
    ],
)
def test_compiled_training_forward_gives_the_eager_loss_and_gradients(overrides):
    eager = tiny_model(seed=3, **overrides).train()  # dropout 0: the same numbers are expected
    compiled = copy.deepcopy(eager)
    loop = training_loop(compiled, "default", backend=BACKEND)
    for n, seed in ((5, 1), (11, 2), (3, 4)):  # three batch/length buckets
        ids = random_ids(n, seed=seed, max_len=20)
        b = collate(ids, random_ids(n, seed=seed + 10, max_len=12))
        losses = []
        for m, m_loop in ((eager, None), (compiled, loop)):
            m.zero_grad()
            logits = m(b.src, b.lengths, b.tgt_in, loop=m_loop)
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), b.tgt_out.flatten(), ignore_index=0
            )
            loss.backward()
            losses.append(loss)
        assert logits.shape[0] == n
        assert torch.allclose(losses[0], losses[1], atol=1e-5)
        for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
            assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_compiled_training_keeps_the_state_dict():
    model = tiny_model(seed=1)
    keys = list(model.state_dict())
    attributes = dict(vars(model))
    training_loop(model, "default", backend=BACKEND)
    assert list(model.state_dict()) == keys
    assert vars(model) == attributes  # compiling wraps a function: nothing on the model changes
    assert training_loop(model, "off") is None  # off: the eager loop


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_search_gives_identical_hypotheses(seed):
    model = tiny_model(seed=seed, vocab=30, dec_layers=2)
    src, lengths = source_tensor(random_ids(13, vocab=30, seed=seed, max_len=19))
    fast = CompiledDecoder(model, "default", backend=BACKEND)
    for beam in (1, 4):
        plain = beam_search(model, src, lengths, beam, 1.0, n_best=2, return_attention=True)
        comp = beam_search(fast, src, lengths, beam, 1.0, n_best=2, return_attention=True)
        for a, b in zip(plain, comp):
            assert [h.tokens for h in a] == [h.tokens for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
            assert all(torch.allclose(x.attention, y.attention, atol=1e-6) for x, y in zip(a, b))
    g_plain, g_comp = greedy(model, src, lengths), greedy(fast, src, lengths)
    assert [h.tokens for h in g_plain] == [h.tokens for h in g_comp]


def test_bucket_state_select_pads_to_the_bucket():
    model = tiny_model()
    src, lengths = source_tensor(random_ids(10, seed=2))
    fast = CompiledDecoder(model, "default", backend=BACKEND)
    state = fast.encode(src, lengths)
    assert isinstance(state, BucketState) and state.padded.feed.size(0) == 16 and state.n == 10
    sub = state.select(torch.tensor([9, 2, 4]))
    assert sub.n == 3 and sub.padded.feed.size(0) == 8
    assert torch.equal(sub.padded.feed[:3], state.padded.feed[[9, 2, 4]])
    assert state.select(torch.tensor([], dtype=torch.long)).n == 0


def test_decode_ids_compiles_through_the_decode_config_and_ensembles():
    model = tiny_model(seed=5)
    seqs = random_ids(9, seed=6)
    dc = DecodeConfig(beam_size=3, batch_size=4)
    plain = decode_ids(model, seqs, dc, torch.device("cpu"))
    translator = Translator([model], None, None, Config(), torch.device("cpu"), compile_backend=BACKEND)
    fast = translator.searcher("default")
    assert isinstance(fast, CompiledDecoder)
    comp = translator.hypotheses_from_ids(seqs, dataclasses.replace(dc, compile_search="default"))
    assert [h[0].tokens for h in plain] == [h[0].tokens for h in comp]
    assert translator.searcher("default") is fast  # compiled once per translator and mode
    assert "_compiled_search" not in vars(model)  # no cache on the model
    ensemble = Translator([model, model], None, None, Config(), torch.device("cpu"), compile_backend=BACKEND)
    assert isinstance(ensemble.searcher("default"), Ensemble)
    ens = ensemble.hypotheses_from_ids(seqs, dataclasses.replace(dc, compile_search="default"))
    assert [h[0].tokens for h in plain] == [h[0].tokens for h in ens]
