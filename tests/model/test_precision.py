"""Mixed precision, emulated on the CPU: what train.precision picks on which hardware (the CUDA and CPU
queries monkeypatched), and what runs in which dtype under autocast (CPU autocast stands in for CUDA's).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from conftest import random_ids, record_encoder_rnn, tiny_model
from torch.utils._python_dispatch import TorchDispatchMode

from seq2seq.config.schema import Config, TrainConfig
from seq2seq.constants import BOS
from seq2seq.data.batches import collate, source_tensor
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.model import precision
from seq2seq.model.network import run_positions
from seq2seq.model.precision import choose_precision, grad_scaler, load_scaler_state
from seq2seq.training.loss import TrainingLoss
from seq2seq.training.schedule import Schedule
from seq2seq.training.step import Parts, train_step

BF16, FP16 = torch.bfloat16, torch.float16
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def hardware(monkeypatch):
    """hardware(cuda_native=, cuda_emulated=, cpu_native=): what torch's bf16 queries answer."""

    def set_up(cuda_native=False, cuda_emulated=False, cpu_native=False):
        def is_bf16_supported(including_emulation: bool = True) -> bool:
            return cuda_native or (including_emulation and cuda_emulated)

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: cpu_native)

    return set_up


# (device, precision, hardware, expected dtype or UserError, words of the log line)
TABLE = [
    (CUDA, "auto", {"cuda_native": True, "cuda_emulated": True}, BF16, "auto: this GPU has native bf16"),
    (CUDA, "auto", {"cuda_emulated": True}, FP16, "no native bf16"),  # V100, T4: emulation does not count
    (CUDA, "auto", {}, FP16, "loss scaling"),
    (CUDA, "bf16", {"cuda_native": True}, BF16, "train.precision=bf16"),
    (CUDA, "bf16", {"cuda_emulated": True}, UserError, "this GPU has no native bf16"),
    (CUDA, "fp16", {"cuda_native": True}, FP16, "train.precision=fp16"),
    (CUDA, "fp32", {"cuda_native": True}, None, "train.precision=fp32"),
    (CPU, "auto", {"cpu_native": True}, BF16, "auto: this CPU has native bf16"),
    (CPU, "auto", {"cuda_native": True}, None, "auto: this CPU has no native bf16"),
    (CPU, "bf16", {"cpu_native": True}, BF16, "train.precision=bf16"),
    (CPU, "bf16", {}, UserError, "this CPU has no native bf16"),
    (CPU, "fp16", {"cpu_native": True}, UserError, "fp16 needs a CUDA device"),
    (CPU, "fp32", {"cpu_native": True}, None, "train.precision=fp32"),
]


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")
@pytest.mark.parametrize("device,setting,answers,expected,words", TABLE)
def test_autocast_dtype_table(hardware, device, setting, answers, expected, words):
    hardware(**answers)
    if expected is UserError:
        with pytest.raises(UserError, match=words) as e:
            precision.autocast_dtype(setting, device)
        assert "\n" not in str(e.value) and "train.precision" in str(e.value)
        return
    dtype, why = choose_precision(setting, device)
    assert dtype == expected and precision.autocast_dtype(setting, device) == expected
    assert words in why and "\n" not in why
    assert grad_scaler(dtype).is_enabled() == (expected == FP16 and torch.cuda.is_available())


# ---- finding 4: a disabled scaler's state -------------------------------------------------------


def test_an_empty_scaler_state_is_skipped_by_an_enabled_scaler():
    saved = grad_scaler(None).state_dict()  # what fp32 and bf16 runs write into last.pt
    assert saved == {}
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    with pytest.raises(RuntimeError):  # what resuming with fp16 did
        enabled.load_state_dict(saved)
    load_scaler_state(enabled, saved)
    assert enabled.is_enabled() and enabled.get_scale() == 1024.0
    state = {**enabled.state_dict(), "scale": 8.0}
    load_scaler_state(enabled, state)
    assert enabled.get_scale() == 8.0


# ---- finding 7: the encoder's GRU never runs under autocast --------------------------------------


def test_the_encoder_gru_runs_without_autocast_inside_a_training_step(monkeypatch):
    model = tiny_model(seed=1).train()
    seen = []
    record_encoder_rnn(model, monkeypatch, seen)
    parts = Parts(
        model=model,
        forward=TrainingLoss(model, 0.1),
        no_sync=contextlib.nullcontext,
        optimizer=torch.optim.Adam(model.parameters()),
        schedule=Schedule(TrainConfig()),
        scaler=grad_scaler(BF16),
        amp_dtype=BF16,
        device=CPU,
    )
    batch = collate(random_ids(4, seed=2), random_ids(4, seed=3))
    loss, _ = train_step(parts, [(batch, 1.0)], 1.0 / batch.ntokens, 1e-3, TrainConfig())
    assert seen == [(False, torch.float32)], "fp32 in, autocast off (CUDA would run cuDNN's GRU in fp16)"
    assert torch.isfinite(loss)
    with torch.autocast("cpu", dtype=BF16):
        assert model.encoder(batch.src, batch.lengths)[0].dtype == torch.float32
        assert model.encode(batch.src, batch.lengths).memory.dtype == BF16  # cast once for the attention


def test_the_encoder_memory_is_cast_once_per_batch_not_once_per_position():
    """Under autocast the attention's context bmm wants the memory (B, S, M) in bf16: cast once in
    init_state; recast at each of T positions it was T casts forward and T in backward."""
    model = tiny_model(seed=3, dec_layers=2).train()  # two layers: the eager loop a GPU runs
    batch = collate(random_ids(4, min_len=6, max_len=6, seed=2), random_ids(4, min_len=9, max_len=9, seed=3))
    memory_shape = (4, 7, model.cfg.memory_dim)
    casts = []

    class Casts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket is torch.ops.aten._to_copy and tuple(args[0].shape) == memory_shape:
                casts.append(kwargs.get("dtype"))
            return func(*args, **(kwargs or {}))

    with Casts(), torch.autocast("cpu", dtype=BF16):
        logits = model(batch.src, batch.lengths, batch.tgt_in)
    assert logits.size(1) == 10 and casts == [BF16]


# ---- finding 8: LSTM state in fp32 --------------------------------------------------------------


@pytest.mark.parametrize("dec_layers", [1, 2])
def test_decoder_lstm_state_is_fp32_under_autocast(dec_layers):
    model = tiny_model(seed=3, dec_layers=dec_layers).train()
    batch = collate(random_ids(3, seed=4), random_ids(3, seed=5, min_len=6))
    seen = []

    def recording(gates_x, w_rec, state):
        seen.append((state.h.dtype, state.c.dtype))

        def step(*args):
            feed, h, c, coverage = model.decoder.recur_step(*args)
            seen.append((h.dtype, c.dtype))
            return feed, h, c, coverage

        return run_positions(step, gates_x, w_rec, state)

    with torch.autocast("cpu", dtype=BF16):
        logits = model(batch.src, batch.lengths, batch.tgt_in, loop=recording)
        assert logits.dtype == BF16  # the matmuls do run in bf16
        state = model.encode(batch.src, batch.lengths)
        for _ in range(3):
            _, state, _ = model.decode_step(torch.full((3,), BOS), state)
            seen.append((state.h.dtype, state.c.dtype))
    assert len(seen) == 1 + batch.tgt_in.size(1) + 3
    assert set(seen) == {(torch.float32, torch.float32)}


# ---- finding 12: the recurrent weights are cast once per batch -----------------------------------


class Casts(TorchDispatchMode):
    """Counts dtype casts (aten._to_copy) by the shape of the tensor cast."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default:
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


def test_recurrent_weights_are_cast_once_per_batch_under_autocast():
    model = tiny_model(seed=4).train()
    cell, E = model.decoder.cells[0], model.cfg.emb_dim
    w_rec_shape = (cell.weight_hh.size(0), cell.weight_ih.size(1) - E + cell.weight_hh.size(1))
    assert w_rec_shape not in {tuple(p.shape) for p in model.parameters()}
    batch = collate(random_ids(3, seed=6), random_ids(3, seed=7, min_len=8, max_len=8))
    with torch.autocast("cpu", dtype=BF16), Casts() as casts:
        model(batch.src, batch.lengths, batch.tgt_in)
    assert batch.tgt_in.size(1) == 9
    assert casts.shapes.count(w_rec_shape) == 1, "one cast per batch, not one per target position"


@pytest.mark.parametrize("overrides", [{"dec_layers": 2}, {"dec_cell": "gru"}, {"coverage": True}])
def test_the_eager_loop_casts_w_rec_once_per_batch_forward_and_backward(overrides):
    """The eager loop (CUDA's, the other decoders') at 100 positions: one cast of w_rec in forward; in
    backward each position's bf16 gradient is cast to fp32 before autograd sums them."""
    model = tiny_model(seed=4, **overrides).train()
    w_rec_shape = (4 * 20, 20 + 20)  # dec_hidden 20: [feed; h] -> four gate blocks (the GRU's too)
    batch = collate(random_ids(3, seed=6), random_ids(3, seed=7, min_len=99, max_len=99))
    with torch.autocast("cpu", dtype=BF16), Casts() as forward:
        logits = model(batch.src, batch.lengths, batch.tgt_in)
    with Casts() as backward:
        logits.float().logsumexp(-1).sum().backward()
    assert logits.size(1) == 100 and forward.shapes.count(w_rec_shape) == 1
    assert backward.shapes.count(w_rec_shape) == 100
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.decoder.cells.parameters())


def weight_gradient_error(T: int, uses, seed: int = 0) -> float:
    """Relative error, against fp64, of the gradient of a weight used at T positions under bf16
    autocast (as the eager loop uses w_rec), with inputs and output gradients exact in bf16 and
    correlated across positions (as a sentence's are): only the gradient's summation differs."""
    g = torch.Generator().manual_seed(seed)
    B, n_in, n_out = 16, 48, 64
    w = torch.randn(n_out, n_in, generator=g).requires_grad_()
    x0, d0 = torch.randn(B, n_in, generator=g), torch.randn(B, n_out, generator=g)
    xs = [(x0 + torch.randn(B, n_in, generator=g) / 2).to(BF16).float() for _ in range(T)]  # (B, n_in) each
    ds = [(d0 + torch.randn(B, n_out, generator=g) / 2).to(BF16).float() for _ in range(T)]  # (B, n_out) each
    with torch.autocast("cpu", dtype=BF16):
        use = uses(w)
        loss = sum((torch.nn.functional.linear(x, use()).float() * d).sum() for x, d in zip(xs, ds))
    loss.backward()
    exact = sum(d.double().t() @ x.double() for x, d in zip(xs, ds))  # (n_out, n_in)
    return ((w.grad.double() - exact).norm() / exact.norm()).item()


def test_a_weight_used_at_every_position_gets_its_gradient_summed_in_fp32():
    """At 100 positions: ~2e-4 from fp64 (each position's bf16 matmul rounded once, summed in fp32);
    casting once and letting autograd sum the bf16 gradients was ~1e-2 off."""

    def cast_once(w):  # what the eager loop did: its T uses' gradients meet in bf16
        w_low = w.to(BF16)
        return lambda: w_low

    assert weight_gradient_error(100, cast_once) > 5e-3
    assert weight_gradient_error(100, precision.autocast_uses) < 1e-3


# ---- finding 14: TF32 for fp32 matmuls on CUDA ----------------------------------------------------


def test_tf32_is_on_for_cuda_training_and_decoding_only(monkeypatch):
    import seq2seq.training.setup as training

    calls = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", calls.append)
    Translator([tiny_model()], None, None, Config(), CPU)
    training.setup_process(TrainConfig(device="cpu"))
    assert calls == []
    Translator([tiny_model()], None, None, Config(), CUDA)  # decoding (translate, evaluate, validation)
    assert calls == ["high"]
    monkeypatch.setattr(training, "process_device", lambda name: CUDA)  # Dist touches no GPU in one process
    assert training.setup_process(TrainConfig()).device == CUDA
    assert calls == ["high", "high"]


@pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_search_steps_stay_close_to_fp32_with_fp32_states():
    """decode.search_precision bf16: decode_step under bf16 autocast gives fp32 log-probs and states
    close to fp32's."""
    model = tiny_model()
    src, lengths = source_tensor(random_ids(6))
    with torch.no_grad():
        ref_state, bf_state = model.encode(src, lengths), None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf_state = model.encode(src, lengths)
        prev = torch.full((6,), BOS)
        for _ in range(3):
            ref, ref_state, _ = model.decode_step(prev, ref_state)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got, bf_state, _ = model.decode_step(prev, bf_state)
            assert got.dtype == torch.float32 and bf_state.h.dtype == bf_state.c.dtype == torch.float32
            assert (got - ref).abs().max() < 0.05
            prev = ref.argmax(1)
