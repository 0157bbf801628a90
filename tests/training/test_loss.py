"""The fused output layer + label-smoothed cross-entropy equals F.linear + F.cross_entropy."""

import pytest
import torch
import torch.nn.functional as F
from conftest import random_ids, tiny_model

from seq2seq.constants import PAD
from seq2seq.data.batches import collate
from seq2seq.training import loss as fused
from seq2seq.training.loss import TrainingLoss, linear_cross_entropy
from seq2seq.training.step import loss_fn


def reference(x, weight, bias, target, smoothing):
    z = F.linear(x, weight, bias)
    return loss_fn(z, target, smoothing), loss_fn(z.detach(), target, 0.0)


def leaves(seed=0, n=37, e=8, v=50, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, e, generator=g, requires_grad=True)
    w = torch.randn(v, e, generator=g).mul_(0.5).requires_grad_()
    b = torch.randn(v, generator=g).requires_grad_() if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    y[::5] = PAD  # padding is ignored
    return x, w, b, y


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [50, 7 * 50, 10**6])  # one row per block, blocks of 7 rows, one block
def test_loss_nll_and_gradients_equal_the_unfused_path(monkeypatch, smoothing, bias, chunk):
    monkeypatch.setitem(fused.CHUNK_ELEMENTS, "cpu", chunk)
    x, w, b, y = leaves(bias=bias)
    params = [p for p in (x, w, b) if p is not None]
    ref_loss, ref_nll = reference(x, w, b, y, smoothing)
    ref_grads = torch.autograd.grad(ref_loss * 0.37, params)
    loss, nll = linear_cross_entropy(x, w, b, y, smoothing)
    grads = torch.autograd.grad(loss * 0.37, params)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nll, ref_nll, rtol=1e-5, atol=1e-5)
    assert not nll.requires_grad
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_without_grad_mode_it_computes_no_gradients():
    x, w, b, y = leaves()
    with torch.no_grad():
        loss, nll = linear_cross_entropy(x, w, b, y, 0.1)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, reference(x, w, b, y, 0.1)[0].detach(), rtol=1e-5, atol=1e-5)


def test_under_bf16_autocast_it_stays_close_to_the_unfused_path():
    x, w, b, y = leaves(v=300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref_loss, _ = reference(x, w, b, y, 0.1)
        loss, _ = linear_cross_entropy(x, w, b, y, 0.1)
    (ref_gw,) = torch.autograd.grad(ref_loss, [w])
    (gw,) = torch.autograd.grad(loss, [w])
    assert loss.dtype == torch.float32 and gw.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=0.0)
    torch.testing.assert_close(gw, ref_gw, rtol=5e-2, atol=5e-2)


def test_under_bf16_autocast_each_gradient_block_is_cast_to_bf16_once():
    """The block's gradient (n, V) feeds two matmuls (the rows' and the weight's): one cast, not one
    each (nor one of its transpose)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    x, w, b, y = leaves(v=50)
    x = x.detach().to(torch.bfloat16).requires_grad_()  # bf16 rows, as the decoder gives them
    casts = []

    class Casts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default and args[0].dim() == 2 and 50 in args[0].shape:
                casts.append((tuple(args[0].shape), args[0].dtype, (kwargs or {}).get("dtype")))
            return func(*args, **(kwargs or {}))

    with torch.autocast("cpu", dtype=torch.bfloat16), Casts():
        linear_cross_entropy(x, w, b, y, 0.1)
    n = int((y != PAD).sum())
    to_bf16 = [c for c in casts if c[2] == torch.bfloat16]
    assert sorted(to_bf16) == sorted(
        [((50, 8), torch.float32, torch.bfloat16), ((n, 50), torch.float32, torch.bfloat16)]
    )


def test_training_loss_equals_the_models_logits_through_cross_entropy():
    """Tied embeddings (tiny_model ties them): the gradient reaches the shared weight once per use."""
    model = tiny_model(seed=3).train()
    b = collate(random_ids(6, seed=4), random_ids(6, seed=5))
    torch.manual_seed(9)
    ref = loss_fn(model(b.src, b.lengths, b.tgt_in), b.tgt_out, 0.1)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    torch.manual_seed(9)  # same dropout masks
    loss, nll = TrainingLoss(model, 0.1)(b.src, b.lengths, b.tgt_in, b.tgt_out)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e3])  # 1e3: scores thousands apart, softmax underflows to 0
def test_far_apart_scores_give_the_exact_loss_not_an_underflow(scale):
    """The log-sum-exp comes from softmax's largest probability (>= 1/V), never from a tiny one."""
    x, w, b, y = leaves(seed=2)
    with torch.no_grad():
        w.mul_(scale)
    ref_loss, ref_nll = reference(x, w, b, y, 0.1)
    loss, nll = linear_cross_entropy(x, w, b, y, 0.1)
    assert torch.isfinite(loss) and torch.isfinite(nll)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(nll, ref_nll, rtol=1e-5, atol=1e-3)
    (gx,) = torch.autograd.grad(loss, [x])
    (ref_gx,) = torch.autograd.grad(ref_loss, [x])
    torch.testing.assert_close(gx, ref_gx, rtol=1e-5, atol=1e-3 * scale)


def test_padding_rows_are_skipped_and_get_zero_gradient():
    """Only real rows enter the matmuls; a padding row's gradient is exactly zero, all-padding gives 0."""
    x, w, b, y = leaves()
    loss, _ = linear_cross_entropy(x, w, b, y, 0.1)
    (gx,) = torch.autograd.grad(loss, [x])
    assert (gx[y == PAD] == 0).all() and (gx[y != PAD] != 0).any()
    pad = torch.full_like(y, PAD)
    loss, nll = linear_cross_entropy(x, w, b, pad, 0.1)
    grads = torch.autograd.grad(loss, [x, w, b])
    assert loss.item() == 0.0 and nll.item() == 0.0
    assert all((g == 0).all() for g in grads)
