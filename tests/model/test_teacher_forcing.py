"""seq2seq.model.teacher_forcing: the one-node decoder loop equals the eager loop (outputs, every gradient,
dropout masks) and is used exactly where it applies."""

from __future__ import annotations

import pytest
import torch
from conftest import random_ids, tiny_model

from seq2seq.constants import BOS, EOS, PAD
from seq2seq.data.batches import pad, source_tensor
from seq2seq.model import teacher_forcing
from seq2seq.model.network import run_positions

VOCAB = 40


def eager_loop(model):
    """The eager per-position loop, as Decoder.forward runs it where the one-node loop does not apply."""
    return lambda gates_x, w_rec, state: run_positions(model.decoder.recur_step, gates_x, w_rec, state)


def batch(n=5, seed=0):
    srcs, tgts = random_ids(n, VOCAB, 1, 9, seed=seed), random_ids(n, VOCAB, 1, 8, seed=seed + 1)
    src, lengths = source_tensor(srcs)
    return src, lengths, pad(tgts, prefix=[BOS]), pad(tgts, suffix=[EOS])


def loss_and_grads(model, src, lengths, tgt_in, tgt_out, loop=None, seed=0):
    torch.manual_seed(seed)  # the same dropout masks (and word dropout) for both loops
    model.zero_grad()
    logits = model(src, lengths, tgt_in, loop)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt_out.reshape(-1), ignore_index=PAD)
    (loss * 3.0).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "dropout,train,overrides",
    [
        (0.0, False, {}),
        (0.3, True, {}),  # the masks: same generator, same order
        (0.3, True, {"dec_hidden": 7, "tie_embeddings": False}),  # B * H not a multiple of 4
        (0.0, True, {"enc_layers": 1, "bidirectional": False, "attn_dim": 3}),
    ],
)
def test_outputs_and_every_gradient_equal_the_eager_loop(dropout, train, overrides):
    model = tiny_model(seed=3, vocab=VOCAB, dropout=dropout, **overrides).train(train)
    assert teacher_forcing.applies(model.decoder, torch.device("cpu"))
    data = batch(6, seed=4)
    fused, g_fused = loss_and_grads(model, *data)
    eager, g_eager = loss_and_grads(model, *data, loop=eager_loop(model))
    if overrides.get("dec_hidden", 20) * 6 % 4 == 0 or dropout == 0:
        assert torch.allclose(fused, eager, atol=1e-5)
        assert g_fused.keys() == g_eager.keys() and len(g_fused) == len(list(model.parameters()))
        for name in g_eager:
            assert torch.allclose(g_fused[name], g_eager[name], atol=1e-5, rtol=1e-4), name
    else:  # masks drawn in another order: still a dropout of the same rate, the outputs differ
        assert fused.shape == eager.shape and not torch.allclose(fused, eager)


def test_gradients_pass_gradcheck_in_double():
    """Every input's gradient (weights, the initial state, memory and keys) against finite differences."""
    g = torch.Generator().manual_seed(0)
    T, B, H, S, M, A = 4, 3, 5, 6, 4, 3

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    mask = torch.ones(B, S, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    drop = (torch.rand(T, B, H, generator=g, dtype=torch.float64) > 0.3).double() / 0.7
    inputs = (
        rand(T, B, 4 * H),
        rand(4 * H, 2 * H),
        rand(B, H),
        rand(B, H),
        rand(B, H),
        rand(B, S, M),
        rand(B, S, A),
        mask,
        rand(A, H),
        rand(A),
        rand(A),
        rand(H, M + H),
        drop,
        torch.float64,
    )
    assert torch.autograd.gradcheck(teacher_forcing.TeacherForcedLoop.apply, inputs)


def test_padding_gets_no_attention_and_no_memory_gradient():
    model = tiny_model(seed=5, vocab=VOCAB).train()
    src, lengths, tgt_in, tgt_out = batch(4, seed=8)
    state = model.encode(src, lengths)
    memory = state.memory.detach().requires_grad_()
    state.memory = memory
    feeds = model.decoder(tgt_in, state)
    feeds.sum().backward()
    assert (memory.grad[~state.mask] == 0).all() and (memory.grad[state.mask] != 0).any()


@pytest.mark.parametrize(
    "overrides",
    [
        {"dec_layers": 2},
        {"input_feeding": False},
        {"attention": "general"},
        {"coverage": True},
        {"dec_cell": "gru"},
    ],
)
def test_other_decoders_run_the_eager_loop(overrides):
    model = tiny_model(seed=1, vocab=VOCAB, **overrides)
    assert not teacher_forcing.applies(model.decoder, torch.device("cpu"))


def test_other_devices_and_fp16_autocast_run_the_eager_loop():
    model = tiny_model(seed=1, vocab=VOCAB)
    assert not teacher_forcing.applies(model.decoder, torch.device("cuda"))
    with torch.autocast("cpu", dtype=torch.float16):
        assert not teacher_forcing.applies(model.decoder, torch.device("cpu"))


def relative(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize(
    "dropout,train,overrides",
    [
        (0.0, False, {}),
        (0.3, True, {}),
        (0.0, True, {"enc_layers": 1, "bidirectional": False, "attn_dim": 3}),
    ],
)
def test_under_bf16_autocast_it_agrees_with_the_eager_loop(dropout, train, overrides):
    """Under CPU bf16 autocast both loops round differently (the eager one also runs the attention's
    pointwise ops in bf16, this one keeps them fp32): each is compared to fp32 and to the other."""
    model = tiny_model(seed=3, vocab=VOCAB, dropout=dropout, **overrides).train(train)
    data = batch(6, seed=4)
    full, g_full = loss_and_grads(model, *data)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert teacher_forcing.applies(model.decoder, torch.device("cpu"))
        fused, g_fused = loss_and_grads(model, *data)
        eager, g_eager = loss_and_grads(model, *data, loop=eager_loop(model))
    assert fused.dtype == eager.dtype == torch.bfloat16
    assert relative(fused, full) < 0.01 and relative(fused, eager) < 0.01
    assert g_fused.keys() == g_eager.keys() and len(g_fused) == len(list(model.parameters()))
    for name in g_eager:
        assert g_fused[name].dtype == torch.float32, name
        assert relative(g_fused[name], g_full[name]) < 0.02, name
        assert relative(g_fused[name], g_eager[name]) < relative(g_eager[name], g_full[name]) + 0.01, name


def test_under_bf16_autocast_matmuls_run_in_bf16_and_weights_are_cast_once():
    """Every matmul of forward and backward but the attention's scoring vector's (a reduction over the
    (B, S, A) tensor, which stays fp32) takes bf16 operands; each fp32 weight is cast once a batch."""
    from torch.utils._python_dispatch import TorchDispatchMode

    model = tiny_model(seed=2, vocab=VOCAB).train()
    dec = model.decoder
    weights = {dec.attention.query_proj.weight.shape, dec.combine.weight.shape, (80, 40)}  # w_rec (4H, 2H)
    casts, matmuls = [], []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16:
                if args[0].dtype == torch.float32 and tuple(args[0].shape) in weights:
                    casts.append(tuple(args[0].shape))
            if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default):
                matmuls.append(tuple(a.dtype for a in args if isinstance(a, torch.Tensor))[-2:])
            return func(*args, **kwargs)

    src, lengths, tgt_in, _ = batch(4, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = model.encode(src, lengths)
        with Count():
            feeds = dec(tgt_in, state)
            feeds.float().sum().backward()
    T = tgt_in.size(1)
    assert sorted(casts) == sorted(weights)
    fp32 = [m for m in matmuls if torch.float32 in m]
    # fp32: the scoring vector's gradients, d_q (one bmm a position) and d_v (one matmul)
    assert len(matmuls) > 5 * T and len(fp32) == T + 1, fp32


def test_the_model_uses_it_by_default(monkeypatch):
    model = tiny_model(seed=1, vocab=VOCAB).train()
    calls = []
    monkeypatch.setattr(
        teacher_forcing.TeacherForcedLoop, "apply", lambda *a: calls.append(a) or a[0][..., :20]
    )
    src, lengths, tgt_in, _ = batch(3)
    model(src, lengths, tgt_in)
    assert len(calls) == 1
