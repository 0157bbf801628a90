"""seq2seq.model.encoder_gru: the CPU GRU over a padded batch equals nn.GRU over packed sequences (outputs,
final states, every gradient) and is what the encoder runs on the CPU."""

from __future__ import annotations

import pytest
import torch
from conftest import random_ids, tiny_model
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.data.batches import source_tensor
from seq2seq.model import encoder_gru
from seq2seq.model.dropout import Dropout


def packed_gru(rnn: nn.GRU, x: torch.Tensor, lengths: torch.Tensor):
    """What the encoder runs on other devices: nn.GRU over packed sequences."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0], h


def outputs_and_grads(fn, rnn, x, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = x.detach().requires_grad_()
    rnn.zero_grad()
    out, h = fn(rnn, x, lengths)
    w_out, w_h = torch.randn(out.shape, generator=g), torch.randn(h.shape, generator=g)
    ((out * w_out).sum() + (h * w_h).sum()).backward()
    return [out.detach(), h.detach(), x.grad] + [p.grad.clone() for p in rnn.parameters()]


@pytest.mark.parametrize("layers,bidirectional", [(1, True), (2, True), (1, False), (3, False)])
def test_outputs_final_states_and_gradients_equal_packed_nn_gru(layers, bidirectional):
    torch.manual_seed(layers)
    rnn = nn.GRU(6, 5, layers, batch_first=True, bidirectional=bidirectional)
    x = torch.randn(7, 9, 6)
    lengths = torch.tensor([9, 1, 4, 9, 2, 7, 3])  # unsorted, one of length 1
    ours = outputs_and_grads(lambda r, x, n: encoder_gru.padded_gru(r, x, n, Dropout(0.0)), rnn, x, lengths)
    reference = outputs_and_grads(packed_gru, rnn, x, lengths)
    assert ours[0].shape == reference[0].shape and ours[1].shape == reference[1].shape
    for a, b in zip(ours, reference):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert (ours[0][1, 1:] == 0).all()  # outputs zero at padding


def test_gradients_pass_gradcheck_in_double():
    g = torch.Generator().manual_seed(0)
    S, B, E, H, D = 5, 3, 4, 3, 2

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    mask = (torch.arange(S).unsqueeze(1) < torch.tensor([5, 2, 1])).unsqueeze(2)  # (S, B, 1)
    inputs = (rand(S, B, E), rand(D, 3 * H, E), rand(D, 3 * H, H), rand(D, 3 * H), rand(D, 3 * H), mask)
    assert torch.autograd.gradcheck(encoder_gru.GRULayer.apply, inputs)


def test_dropout_between_layers_only_in_training():
    rnn = nn.GRU(4, 3, 2, batch_first=True, bidirectional=True, dropout=0.5)
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 3, 1])
    drop = Dropout(0.5)
    drop.eval()
    assert torch.allclose(
        encoder_gru.padded_gru(rnn, x, lengths, drop)[0], packed_gru(rnn.eval(), x, lengths)[0], atol=1e-6
    )
    drop.train()
    torch.manual_seed(0)
    a = encoder_gru.padded_gru(rnn, x, lengths, drop)[0]
    torch.manual_seed(0)
    b = encoder_gru.padded_gru(rnn, x, lengths, drop)[0]
    assert torch.equal(a, b) and not torch.allclose(a, packed_gru(rnn.eval(), x, lengths)[0], atol=1e-3)


def test_the_encoder_runs_it_on_the_cpu_for_a_gru_only(monkeypatch):
    calls = []
    real = encoder_gru.padded_gru
    monkeypatch.setattr("seq2seq.model.network.padded_gru", lambda *a: calls.append(1) or real(*a))
    src, lengths = source_tensor(random_ids(3, seed=1))
    tiny_model(seed=1).encode(src, lengths)
    assert calls == [1]
    tiny_model(seed=1, enc_cell="lstm").encode(src, lengths)
    tiny_model(seed=1, enc_cell="rnn").encode(src, lengths)
    assert calls == [1]


def test_model_encoding_is_batch_invariant():
    """A sentence encodes to the same memory alone or beside longer ones (padding never enters)."""
    model = tiny_model(seed=2, enc_layers=2)
    srcs = random_ids(4, seed=3, min_len=2, max_len=9)
    src, lengths = source_tensor(srcs)
    together = model.encode(src, lengths)
    for i, ids in enumerate(srcs):
        s, n = source_tensor([ids])
        alone = model.encode(s, n)
        assert torch.allclose(alone.memory[0], together.memory[i, : n[0]], atol=1e-6)
        assert torch.allclose(alone.h, together.h[:, i : i + 1], atol=1e-6)


@pytest.mark.parametrize("layers,bidirectional", [(1, True), (2, True), (2, False)])
def test_bf16_matmuls_stay_close_to_fp32_with_fp32_outputs_and_gradients(layers, bidirectional):
    """low=bf16 (what the encoder passes under CPU bf16 autocast): bf16 operands for the matmuls, gates
    and states in fp32; outputs, final states and every gradient within bf16 rounding of fp32."""
    torch.manual_seed(layers)
    rnn = nn.GRU(16, 12, layers, batch_first=True, bidirectional=bidirectional)
    x, lengths = torch.randn(7, 9, 16), torch.tensor([9, 1, 4, 9, 2, 7, 3])

    def run(low):
        return lambda r, x, n: encoder_gru.padded_gru(r, x, n, Dropout(0.0), low)

    full = outputs_and_grads(run(None), rnn, x, lengths)
    low = outputs_and_grads(run(torch.bfloat16), rnn, x, lengths)
    for a, b in zip(low, full):
        assert a.dtype == torch.float32
        assert ((a - b).norm() / b.norm()).item() < 0.02
    assert (low[0][1, 1:] == 0).all()


def test_under_cpu_bf16_autocast_the_encoder_casts_each_weight_once_and_multiplies_in_bf16():
    from torch.utils._python_dispatch import TorchDispatchMode

    model = tiny_model(seed=2, enc_layers=2).train()
    src, lengths = source_tensor(random_ids(3, seed=3, min_len=5, max_len=9))  # S * B != 36
    weight_shapes = {(2, 3 * 12, 16), (2, 3 * 12, 24), (2, 3 * 12, 12)}  # stacked w_ih (both layers), w_hh
    casts, matmul_dtypes = [], set()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten._to_copy.default and tuple(args[0].shape) in weight_shapes:
                casts.append(tuple(args[0].shape))
            if func in (torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default):
                matmul_dtypes.update(a.dtype for a in args[-2:])
            return func(*args, **kwargs)

    with torch.autocast("cpu", dtype=torch.bfloat16), Count():
        memory, final = model.encoder(src, lengths)
    assert memory.dtype == final.dtype == torch.float32
    assert sorted(casts) == sorted([(2, 36, 16), (2, 36, 12), (2, 36, 24), (2, 36, 12)])  # per layer
    assert matmul_dtypes == {torch.bfloat16}
