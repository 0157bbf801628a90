"""The same claims on every device this machine has: the CPU always, CUDA when there is one.

``pytest -m gpu`` runs the CUDA cases only (``benchmarks/gpu_session.sh tests`` does, first thing on a
GPU machine); without CUDA they are skipped and the CPU cases run with the suite. cuBLAS and cuDNN are
not bit-exact with the CPU (nor from run to run), so comparisons across devices use tolerances, and
TF32 is off inside these tests. On CUDA the compiled cases run inductor with real CUDA graphs
(``reduce-overhead``); on the CPU, aot_eager with the graphs emulated elsewhere (tests/model/test_compiled.py).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import random_ids, record_encoder_rnn, tiny_model

from seq2seq.config.schema import Config, DecodeConfig, ModelConfig, TrainConfig
from seq2seq.constants import BOS
from seq2seq.data.batches import collate, pad, source_tensor
from seq2seq.decode.search import beam_search, greedy
from seq2seq.decode.translator import Ensemble, Translator, decode_ids
from seq2seq.model.compiled import CompiledDecoder, training_loop
from seq2seq.model.precision import choose_precision
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.training import rng
from seq2seq.training.distributed import Dist
from seq2seq.training.setup import setup_parts
from seq2seq.training.step import loss_fn, train_step

CUDA = torch.cuda.is_available()
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA")]),
]
VOCAB = 40


def tol(device: torch.device) -> float:
    return 1e-5 if device.type == "cpu" else 2e-4


def compiled_mode(device: torch.device) -> tuple[str, str]:
    """(mode, backend): real CUDA graphs on a GPU, dynamo + AOTAutograd without code generation on a CPU."""
    return ("reduce-overhead", "inductor") if device.type == "cuda" else ("default", "aot_eager")


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda":
        torch._dynamo.reset()
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield torch.device(request.param)
    torch.set_float32_matmul_precision(previous)
    torch._dynamo.reset()


def stepped(model, src, lengths, tgt_in) -> torch.Tensor:
    state = model.encode(src, lengths)
    out = []
    for t in range(tgt_in.size(1)):
        logp, state, _ = model.decode_step(tgt_in[:, t], state)
        out.append(logp)
    return torch.stack(out, dim=1)  # (B, T, V)


@torch.no_grad()
def test_model_forward_equals_stepped_decoding_and_the_cpu(device):
    cpu_model = tiny_model(seed=3, dec_layers=2)
    model = tiny_model(seed=3, dec_layers=2).to(device)
    src, lengths = source_tensor(random_ids(6, VOCAB, 1, 9, seed=1))
    tgt_in = pad(random_ids(6, VOCAB, 1, 7, seed=2), prefix=[BOS])
    hoisted = torch.log_softmax(model(src.to(device), lengths, tgt_in.to(device)), dim=-1)
    assert torch.allclose(
        hoisted, stepped(model, src.to(device), lengths, tgt_in.to(device)), atol=tol(device)
    )
    reference = torch.log_softmax(cpu_model(src, lengths, tgt_in), dim=-1)
    assert torch.allclose(hoisted.cpu(), reference, atol=tol(device))


def test_search_gives_the_cpus_hypotheses(device):
    cpu_model = tiny_model(seed=4, vocab=30)
    model = tiny_model(seed=4, vocab=30).to(device)
    src, lengths = source_tensor(random_ids(9, 30, 2, 12, seed=3))
    for ref, got in zip(greedy(cpu_model, src, lengths), greedy(model, src.to(device), lengths)):
        assert ref.tokens == got.tokens and ref.logprob == pytest.approx(got.logprob, abs=1e-3)
    for ref, got in zip(
        beam_search(cpu_model, src, lengths, 4, n_best=2),
        beam_search(model, src.to(device), lengths, 4, n_best=2),
    ):
        assert [h.tokens for h in ref] == [h.tokens for h in got]
        assert [h.score for h in ref] == pytest.approx([h.score for h in got], abs=1e-3)


def test_compiled_search_equals_eager_search(device):
    """On CUDA: CUDA-graph replays feeding each step's state to the next (finding 1)."""
    mode, backend = compiled_mode(device)
    models = [tiny_model(seed=5, vocab=30).to(device), tiny_model(seed=6, vocab=30).to(device)]
    seqs = random_ids(11, 30, 2, 15, seed=4)
    dc = DecodeConfig(beam_size=3, batch_size=6)
    for beam in (1, 3):
        dcb = dataclasses.replace(dc, beam_size=beam)
        for members in (models[:1], models):
            plain = decode_ids(members[0] if len(members) == 1 else Ensemble(members), seqs, dcb, device)
            translator = Translator(members, None, None, Config(), device, compile_backend=backend)
            fast = translator.hypotheses_from_ids(seqs, dataclasses.replace(dcb, compile_search=mode))
            assert [h[0].tokens for h in plain] == [h[0].tokens for h in fast]
            assert [h[0].score for h in plain] == pytest.approx([h[0].score for h in fast], abs=1e-3)
    if device.type == "cuda":
        assert CompiledDecoder(models[0], mode, backend).graphs


def _parts(device: torch.device, precision: str = "fp32", compile: str = "off"):
    cfg = Config(
        model=ModelConfig(emb_dim=16, enc_hidden=12, enc_layers=2, dec_hidden=20, attn_dim=10, dropout=0.0),
        train=TrainConfig(precision=precision, compile=compile, lr=0.01),
    )
    torch.manual_seed(0)
    return cfg, setup_parts(cfg, VOCAB, VOCAB, Dist(device))


def test_training_steps_learn_and_match_the_cpu(device):
    batch = collate(random_ids(8, VOCAB, 2, 9, seed=5), random_ids(8, VOCAB, 2, 9, seed=6))
    first = {}
    for where in (torch.device("cpu"), device):
        cfg, parts = _parts(where)
        losses = [
            train_step(parts, [(batch, 1.0)], 1 / batch.ntokens, 0.01, cfg.train)[0].item() for _ in range(8)
        ]
        assert losses[-1] < losses[0] - 0.1, losses
        first[where.type] = losses[0]
    assert first["cpu"] == pytest.approx(first[device.type], abs=1e-3)


def test_autocast_training_keeps_the_recurrences_in_fp32(device, monkeypatch):
    """Under the autocast auto picks (bf16 on an A100/H100; fp32 on a CPU without native bf16, then
    bf16 is forced): the GRU runs outside autocast and the LSTM state is fp32 (findings 7 and 8)."""
    dtype = choose_precision("auto", device)[0] or torch.bfloat16
    cfg, parts = _parts(device)
    model = parts.model
    seen = []
    record_encoder_rnn(model, monkeypatch, seen, device.type)
    b = collate(random_ids(5, VOCAB, seed=7), random_ids(5, VOCAB, seed=8)).to(device)
    with torch.autocast(device.type, dtype=dtype):
        logits = model(b.src, b.lengths, b.tgt_in)
        state = model.decode_step(b.tgt_in[:, 0], model.encode(b.src, b.lengths))[1]
    assert logits.dtype == dtype and state.h.dtype == state.c.dtype == torch.float32
    assert seen == [(False, torch.float32)] * 2
    loss = loss_fn(logits, b.tgt_out, 0.1)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_compiled_training_gives_the_eager_loss(device):
    """On CUDA: inductor with train.compile=reduce-overhead, which trains without CUDA graphs."""
    mode, backend = compiled_mode(device)
    model = tiny_model(seed=7).train().to(device)
    loop = training_loop(model, mode, backend)
    b = collate(random_ids(6, VOCAB, 2, 12, seed=9), random_ids(6, VOCAB, 2, 9, seed=10)).to(device)
    eager = loss_fn(model(b.src, b.lengths, b.tgt_in), b.tgt_out, 0.0)
    compiled = loss_fn(model(b.src, b.lengths, b.tgt_in, loop=loop), b.tgt_out, 0.0)
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-4)


def test_resumed_optimizer_state_lies_where_a_fresh_one_keeps_it(device, tmp_path):
    """Fused Adam on CUDA keeps `step` on the GPU, foreach Adam on the CPU (finding 9)."""
    batch = collate(random_ids(4, VOCAB, seed=11), random_ids(4, VOCAB, seed=12))
    cfg, parts = _parts(device)
    train_step(parts, [(batch, 1.0)], 1 / batch.ntokens, 0.01, cfg.train)
    ckpt_io.save(
        tmp_path / "last.pt", {"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict()}
    )
    _, fresh = _parts(device)
    train_step(fresh, [(batch, 1.0)], 1 / batch.ntokens, 0.01, cfg.train)
    _, resumed = _parts(device)
    saved = ckpt_io.load(tmp_path / "last.pt")
    resumed.model.load_state_dict(saved["model"])
    resumed.optimizer.load_state_dict(saved["optimizer"])
    for p, q in zip(resumed.model.parameters(), fresh.model.parameters()):
        a, b = resumed.optimizer.state[p], fresh.optimizer.state[q]
        assert {k: (v.device, v.dtype) for k, v in a.items()} == {
            k: (v.device, v.dtype) for k, v in b.items()
        }


def test_generator_state_round_trip_on_the_own_device(device):
    state = rng.capture(device)
    before = torch.rand(4, device=device)
    assert rng.restore({"rng": [state]}, 0, device, seed=1, step=0)
    assert torch.equal(torch.rand(4, device=device), before)
    assert (device.type == "cuda") == ("cuda" in state)


def test_tf32_for_fp32_matmuls_on_cuda_only(device):
    Translator([tiny_model().to(device)], None, None, Config(), device)
    assert torch.get_float32_matmul_precision() == ("high" if device.type == "cuda" else "highest")


@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["fp32", "bf16"])
def test_fused_loss_gives_the_cpus_loss_and_gradients(device, amp):
    """seq2seq.training.loss on the device (CUDA: its own block size) against the unfused path on the CPU."""
    from seq2seq.training.loss import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    x, w, b = (
        torch.randn(300, 16, generator=g),
        torch.randn(VOCAB, 16, generator=g),
        torch.randn(VOCAB, generator=g),
    )
    y = torch.randint(0, VOCAB, (300,), generator=g)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    want = loss_fn(F.linear(*leaves), y, 0.1)
    want_grads = torch.autograd.grad(want, leaves)
    on_device = [t.to(device).requires_grad_() for t in (x, w, b)]
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        loss, _ = linear_cross_entropy(on_device[0], on_device[1], on_device[2], y.to(device), 0.1)
    grads = torch.autograd.grad(loss, on_device)
    rtol = tol(device) if amp is None else 2e-2
    torch.testing.assert_close(loss.cpu(), want.detach(), rtol=rtol, atol=rtol)
    for got, ref in zip(grads, want_grads):
        torch.testing.assert_close(got.cpu().float(), ref, rtol=rtol * 5, atol=rtol * 5)
