"""seq2seq/model/dropout.py: the fast CPU mask behaves as nn.Dropout (rate, scaling, gradient, eval, seeding)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

import seq2seq.model.dropout
from seq2seq.model.dropout import LEVELS, Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    mask = keep_mask(torch.Size([400, 1000]), p, torch.float32)
    dropped = (mask == 0).float().mean().item()
    assert abs(dropped - p) < 4e-3  # 400k draws: ~5 standard deviations
    kept = mask[mask != 0]
    expected = LEVELS / (LEVELS - round(p * LEVELS))
    assert torch.all(kept == torch.tensor(expected, dtype=torch.float32))
    assert abs(mask.mean().item() - 1.0) < 1e-2  # unbiased: E[mask] = 1, as nn.Dropout's


def test_masks_are_not_correlated_across_the_four_numbers_of_a_draw():
    torch.manual_seed(1)
    keep = keep_mask(torch.Size([100_000, 4]), 0.5, torch.float32) != 0  # column j: j-th 16 bits of a draw
    for i in range(4):
        for j in range(i + 1, 4):
            both = (keep[:, i] & keep[:, j]).float().mean().item()
            assert abs(both - 0.25) < 0.01


def test_odd_sizes_and_shapes():
    torch.manual_seed(2)
    for shape in [(1,), (3,), (5, 7), (2, 3, 5)]:
        x = torch.randn(shape)
        y = Dropout(0.3).train()(x)
        assert y.shape == x.shape
        assert torch.all((y == 0) | torch.isclose(y, x / (1 - 0.3), rtol=1e-4))


def test_gradient_is_the_mask():
    torch.manual_seed(3)
    x = torch.randn(50, 20, requires_grad=True)
    y = Dropout(0.4).train()(x)
    y.sum().backward()
    mask = y.detach() / x.detach()
    assert torch.allclose(x.grad, mask)


def test_eval_and_p0_are_identity():
    x = torch.randn(10, 10)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_same_seed_same_mask_and_generator_state_advances():
    x = torch.ones(64, 33)
    torch.manual_seed(5)
    a = Dropout(0.3).train()(x)
    b = Dropout(0.3).train()(x)
    torch.manual_seed(5)
    assert torch.equal(Dropout(0.3).train()(x), a)
    assert not torch.equal(a, b)


def test_rejects_p_out_of_range():
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            Dropout(p)


def test_p_close_to_one_drops_almost_everything_without_dividing_by_zero():
    torch.manual_seed(6)
    y = Dropout(0.9999999).train()(torch.ones(10_000))
    assert torch.isfinite(y).all() and (y == 0).float().mean() > 0.999


def test_bf16_input_keeps_its_dtype():
    x = torch.randn(8, 8, dtype=torch.bfloat16)
    assert Dropout(0.3).train()(x).dtype == torch.bfloat16


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.mark.parametrize("device", DEVICES)
def test_rate_on_each_device(device):
    torch.manual_seed(7)
    y = Dropout(0.3).train()(torch.ones(200_000, device=device))
    assert y.device.type == device
    assert abs((y == 0).float().mean().item() - 0.3) < 5e-3


def test_compiled_graphs_and_other_devices_use_torch_dropout(monkeypatch):
    """Inside torch.compile (and off the CPU) the mask is F.dropout's, never keep_mask's."""
    monkeypatch.setattr(
        seq2seq.model.dropout, "keep_mask", lambda *a: pytest.fail("keep_mask used while compiling")
    )
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    torch.manual_seed(8)
    y = Dropout(0.3).train()(torch.ones(10_000))
    assert abs((y == 0).float().mean().item() - 0.3) < 0.03


def test_the_model_drops_with_it():
    model = tiny_model(dropout=0.3)
    assert isinstance(model.encoder.drop, Dropout) and isinstance(model.decoder.drop, Dropout)


def test_scales_are_what_forward_multiplies_by():
    """For code that applies the mask itself (seq2seq.model.teacher_forcing): the same draws as forward."""
    drop = Dropout(0.3).train()
    x = torch.randn(6, 8)
    torch.manual_seed(5)
    expected = drop(x)
    torch.manual_seed(5)
    assert torch.equal(x * drop.scales(x.shape, x.dtype), expected)
    assert drop.eval().scales(x.shape, x.dtype) is None
    assert Dropout(0.0).train().scales(x.shape, x.dtype) is None


@pytest.mark.parametrize(
    "device",
    [
        "meta",
        pytest.param(
            "cuda",
            marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")],
        ),
    ],
)
def test_scales_off_the_cpu_are_drawn_on_the_device(device):
    """Masks drawn at once for many steps (the decoder's time loop) come from the device's own generator:
    0 or 1 / (1 - p), dropped at rate p."""
    scales = Dropout(0.3).train().scales(torch.Size((64, 512)), torch.float32, device)
    assert scales.device.type == device and scales.shape == (64, 512) and scales.dtype == torch.float32
    if device == "cuda":
        dropped, kept = scales.unique().tolist()
        assert dropped == 0.0 and kept == pytest.approx(1 / 0.7)
        assert abs((scales == 0).float().mean().item() - 0.3) < 0.02
    assert Dropout(0.3).eval().scales(torch.Size((2, 2)), torch.float32, device) is None
