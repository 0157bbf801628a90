"""Compiled decoder steps on bucketed shapes (seq2seq/model/compiled.py) give the eager model's numbers.

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

from seq2seq.config.schema import Config, DecodeConfig
from seq2seq.data.batches import collate, source_tensor
from seq2seq.decode.search import beam_search, greedy
from seq2seq.decode.translator import Ensemble, Translator, decode_ids
from seq2seq.model.compiled import (
    BucketState,
    CompiledDecoder,
    bucket_len,
    bucket_rows,
    pad_state,
    training_loop,
)
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
        {"coverage": True},
        {"dropout": 0.3},
        {"dropout": 0.3, "dec_layers": 2, "dec_cell": "gru"},
    ],
)
def test_compiled_training_forward_gives_the_eager_loss_and_gradients(overrides):
    """Dropout too: every position's masks are drawn before the loop, outside the compiled step."""
    eager = tiny_model(seed=3, **overrides).train()
    compiled = copy.deepcopy(eager)
    loop = training_loop(compiled, "default", backend=BACKEND)
    for n, seed in ((5, 1), (11, 2), (3, 4)):  # three batch/length buckets
        ids = random_ids(n, seed=seed, max_len=20)
        b = collate(ids, random_ids(n, seed=seed + 10, max_len=12))
        losses = []
        for m, m_loop in ((eager, None), (compiled, loop)):
            m.zero_grad()
            torch.manual_seed(seed)  # the same masks
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


# ---- CUDA graphs, emulated on the CPU ------------------------------------------------------------


class Replays:
    """A test double of CUDA-graph replays: every call of any step it wraps first NaN-fills every tensor
    that earlier calls returned, then runs the step. That is what a replay does: it writes its outputs
    into the graph's memory pool, where the previous replay's outputs live (one pool per device, shared
    by every graph, so an ensemble's models overwrite each other's outputs too)."""

    def __init__(self):
        self.live: list[torch.Tensor] = []
        self.calls = 0

    def wrap(self, step):
        def replay(*args):
            for t in self.live:
                if t.is_floating_point():
                    t.fill_(float("nan"))
            out = step(*args)
            self.live = [t for t in out if isinstance(t, torch.Tensor)]
            self.calls += 1
            return out

        return replay


@pytest.fixture
def replays(monkeypatch):
    """compile_step returns the aot_eager step inside the Replays double whenever the real inductor mode
    would record CUDA graphs (reduce-overhead, max-autotune), so those modes run as they would on a GPU."""
    import seq2seq.model.compiled as compiled

    double, real_compile, real_graphs = Replays(), compiled.compile_step, compiled.uses_cuda_graphs

    def compile_step(fn, mode, backend="inductor", cuda_graphs=True):
        step = real_compile(fn, "default", BACKEND)
        return double.wrap(step) if cuda_graphs and real_graphs(mode) else step

    monkeypatch.setattr(compiled, "compile_step", compile_step)
    monkeypatch.setattr(compiled, "uses_cuda_graphs", lambda mode, backend="inductor": real_graphs(mode))
    return double


def test_the_replay_double_does_break_a_state_fed_back_uncloned():
    """Sanity check of the double used below: feeding a replay's own outputs back in gives NaN."""
    model = tiny_model(seed=2)
    src, lengths = source_tensor(random_ids(4, seed=3))
    state = model.encode(src, lengths)
    step = Replays().wrap(model.step_tensors)
    prev = torch.full((4,), 1)
    with torch.no_grad():
        _, h, c, feed, _, _ = step(prev, state.h, state.c, state.feed, state.memory, state.keys, state.mask)
        logp, *_ = step(prev, h, c, feed, state.memory, state.keys, state.mask)
    assert torch.isnan(logp).all()


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_search_through_cuda_graph_replays_equals_eager_search(replays, mode):
    model = tiny_model(seed=4, vocab=30, dec_layers=2)
    src, lengths = source_tensor(random_ids(11, vocab=30, seed=5, max_len=17))
    fast = CompiledDecoder(model, mode, backend=BACKEND)
    assert fast.graphs
    g_plain, g_fast = greedy(model, src, lengths, return_attention=True), greedy(fast, src, lengths)
    assert [h.tokens for h in g_plain] == [h.tokens for h in g_fast]
    assert [h.logprob for h in g_plain] == pytest.approx([h.logprob for h in g_fast], abs=1e-5)
    plain = beam_search(model, src, lengths, 4, 1.0, n_best=2, return_attention=True)
    comp = beam_search(fast, src, lengths, 4, 1.0, n_best=2, return_attention=True)
    for a, b in zip(plain, comp):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
        assert all(torch.allclose(x.attention, y.attention, atol=1e-6) for x, y in zip(a, b))
    assert replays.calls > 20  # every step went through the double


def test_cuda_graph_replays_of_the_other_architectures_equal_eager_search(replays):
    """A GRU decoder's empty cell state and the coverage (cloned out of the pool like h and c) survive
    replays (the tests above replay a state without coverage)."""
    src, lengths = source_tensor(random_ids(5, vocab=30, seed=5, max_len=12))
    model = tiny_model(seed=4, vocab=30, dec_cell="gru", coverage=True)
    fast = CompiledDecoder(model, "reduce-overhead", backend=BACKEND)
    plain = beam_search(model, src, lengths, 3, 1.0, n_best=2, coverage_penalty=0.5)
    comp = beam_search(fast, src, lengths, 3, 1.0, n_best=2, coverage_penalty=0.5)
    for a, b in zip(plain, comp):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
    assert replays.calls > 20


def test_ensemble_through_cuda_graph_replays_equals_the_eager_ensemble(replays):
    """Model B's replay overwrites model A's outputs of the same step: each must be cloned."""
    models = [tiny_model(seed=6), tiny_model(seed=7)]
    seqs = random_ids(9, seed=8)
    dc = DecodeConfig(beam_size=3, batch_size=4)
    plain = decode_ids(Ensemble(models), seqs, dc, torch.device("cpu"))
    for beam in (1, 3):
        translator = Translator(models, None, None, Config(), torch.device("cpu"), compile_backend=BACKEND)
        fast = translator.hypotheses_from_ids(
            seqs, dataclasses.replace(dc, beam_size=beam, compile_search="reduce-overhead")
        )
        ref = (
            plain
            if beam == 3
            else decode_ids(Ensemble(models), seqs, dataclasses.replace(dc, beam_size=1), torch.device("cpu"))
        )
        assert [h[0].tokens for h in ref] == [h[0].tokens for h in fast]
        assert [h[0].score for h in ref] == pytest.approx([h[0].score for h in fast], abs=1e-5)
    assert replays.calls > 0


def test_validation_through_cuda_graph_replays_equals_eager_validation(replays, tiny_recipe):
    from seq2seq.config.load import load_config
    from seq2seq.data.corpus import download
    from seq2seq.data.tokenizer import train_tokenizers
    from seq2seq.training.setup import build_trainer

    quiet = lambda *_: None  # noqa: E731
    cfg = load_config(tiny_recipe, ["samples=3"])
    download(cfg, log=quiet)
    train_tokenizers(cfg, log=quiet)
    results = {}
    for mode in ("off", "reduce-overhead"):
        lines: list[str] = []
        trainer = build_trainer(load_config(tiny_recipe, ["samples=3", f"compile_search={mode}"]), log=quiet)
        trainer.log = lines.append
        results[mode] = trainer.validate(), [x for x in lines if x.startswith("  sample")]
        trainer.dist.close()
    assert replays.calls > 0
    assert results["off"][1] == results["reduce-overhead"][1] and len(results["off"][1]) == 3
    assert results["off"][0] == pytest.approx(results["reduce-overhead"][0], abs=1e-6)


def test_cuda_graph_modes_come_from_inductors_mode_table():
    from torch._inductor import list_mode_options

    from seq2seq.config.schema import CHOICES
    from seq2seq.model.compiled import uses_cuda_graphs

    assert uses_cuda_graphs("reduce-overhead") and uses_cuda_graphs("max-autotune")
    assert not uses_cuda_graphs("default") and not uses_cuda_graphs("off")
    assert not uses_cuda_graphs("max-autotune-no-cudagraphs")
    assert not uses_cuda_graphs("reduce-overhead", backend="aot_eager")  # no code generated, no graphs
    for mode in set(CHOICES["train.compile"]) - {"off", "default"}:
        assert uses_cuda_graphs(mode) == bool(list_mode_options(mode).get("triton.cudagraphs"))


def test_training_never_records_cuda_graphs(monkeypatch):
    """Every train.compile mode compiles the training step without CUDA graphs (and keeps the mode's
    other options); search keeps the mode as it is."""
    from torch._inductor import list_mode_options

    from seq2seq.config.schema import CHOICES

    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: calls.append(kwargs) or fn)
    monkeypatch.setattr(
        torch.compiler, "cudagraph_mark_step_begin", lambda: pytest.fail("marked a graph step")
    )
    model = tiny_model(seed=1).train()
    b = collate(random_ids(5, seed=1), random_ids(5, seed=2))
    for mode in set(CHOICES["train.compile"]) - {"off"}:
        calls.clear()
        loop = training_loop(model, mode)  # the inductor backend, as on a GPU
        model(b.src, b.lengths, b.tgt_in, loop=loop).sum().backward()
        (kwargs,) = calls
        assert kwargs["fullgraph"] is True
        if "options" in kwargs:
            # the mode's own options (max-autotune's tuning), less the graphs
            assert kwargs["options"] == {**list_mode_options(mode), "triton.cudagraphs": False}
        else:
            assert kwargs["mode"] in (None, "default")
    calls.clear()
    assert CompiledDecoder(model, "reduce-overhead").graphs and calls[0]["mode"] == "reduce-overhead"


def test_compiled_training_compiles_per_bucket_not_per_target_length():
    """The step's inputs keep one layout whatever the target length T: batches of one bucket but four
    target lengths compile the step once, not once per length, nor once more for the first position
    (whose zero feed needs no gradient of its own)."""
    from torch._dynamo.utils import counters

    model = tiny_model(seed=2).train()
    loop = training_loop(model, "default", backend=BACKEND)
    counters.clear()
    for T in (3, 5, 8, 11):
        b = collate(
            random_ids(5, seed=T, max_len=10), random_ids(5, seed=T + 1, min_len=T - 1, max_len=T - 1)
        )
        assert b.tgt_in.size(1) == T
        model(b.src, b.lengths, b.tgt_in, loop=loop).sum().backward()
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


@pytest.mark.slow
def test_inductor_compiles_the_search_step_once_per_bucket_at_most():
    """The real inductor backend on the CPU, fullgraph=True (no graph breaks): decoding batches of many
    sizes and lengths compiles a bounded number of graphs, and a second pass over the same shapes none."""
    from torch._dynamo.utils import counters

    model = tiny_model(seed=9, vocab=30)
    fast = CompiledDecoder(model, "default", backend="inductor")
    shapes = [(3, 5), (7, 12), (12, 18), (20, 9), (33, 30), (5, 40)]  # 4 row buckets x 3 length buckets
    buckets = {(bucket_rows(n), bucket_len(s + 1)) for n, s in shapes}

    def run():
        for n, s in shapes:
            src, lengths = source_tensor(random_ids(n, vocab=30, min_len=s, max_len=s, seed=n))
            greedy(fast, src, lengths, max_len_ratio=0.5, max_len_offset=3)

    counters.clear()
    run()
    first = counters["stats"]["unique_graphs"]
    assert 1 <= first <= len(buckets), dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    run()
    assert counters["stats"]["unique_graphs"] == first, "no recompiles for shapes seen before"
