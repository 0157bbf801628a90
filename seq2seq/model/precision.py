"""Mixed precision: which autocast dtype a ``train.precision`` setting means on a device (and why),
the autocast context, the gradient scaler that goes with it, and TF32 for fp32 matmuls on GPUs.

``auto`` picks bf16 where the hardware does it natively and never counts emulation: on CUDA, bf16
needs compute capability 8.0+ (A100, H100); V100/T4 get fp16 with loss scaling instead (their bf16
is emulated: slower than fp32, and inductor cannot compile it). On a CPU, bf16 needs AVX512-BF16 or
AMX (oneDNN's own query); elsewhere ``auto`` stays fp32, while an explicit ``bf16`` is an error.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch

from seq2seq.errors import UserError


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX, as oneDNN (which runs the bf16 matmuls) sees it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cuda_has_native_bf16() -> bool:
    """bf16 in hardware (compute capability 8.0+), not the emulation torch also counts by default."""
    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def choose_precision(
    precision: str, device: torch.device, key: str = "train.precision"
) -> tuple[Optional[torch.dtype], str]:
    """(autocast dtype or None for plain fp32, one line saying which and why) for a ``train.precision``
    setting on ``device``; a setting the device cannot do natively is a UserError naming config ``key``."""
    name = f"config key '{key}'"
    cuda = device.type == "cuda"
    where = "this GPU" if cuda else "this CPU"
    native = cuda_has_native_bf16() if cuda else cpu_has_native_bf16()
    if precision == "fp32":
        return None, "fp32 (train.precision=fp32)"
    if precision == "fp16":
        if not cuda:
            raise UserError(f"{name}: fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
        return torch.float16, "fp16 autocast with loss scaling (train.precision=fp16)"
    hardware = "compute capability 8.0+" if cuda else "AVX512-BF16 or AMX"
    if precision == "bf16":
        if not native:
            alternative = "fp16 or fp32" if cuda else "fp32"
            raise UserError(f"{name}: {where} has no native bf16 ({hardware}); use {alternative}")
        return torch.bfloat16, f"bf16 autocast (train.precision=bf16; {where} has native bf16)"
    if native:  # auto
        return torch.bfloat16, f"bf16 autocast (auto: {where} has native bf16, {hardware})"
    if cuda:
        return (
            torch.float16,
            f"fp16 autocast with loss scaling (auto: {where} has no native bf16, {hardware})",
        )
    return None, f"fp32 (auto: {where} has no native bf16, {hardware})"


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for a ``train.precision`` setting on ``device`` (None: plain fp32)."""
    return choose_precision(precision, device)[0]


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def cpu_matmul_dtype() -> torch.dtype:
    """The dtype of the CPU one-node paths' matmuls (:mod:`seq2seq.model.teacher_forcing`,
    :mod:`seq2seq.model.encoder_gru`): bf16 under CPU bf16 autocast, else fp32 (their gates and states
    are fp32 either way)."""
    bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return torch.bfloat16 if bf16 else torch.float32


class _FullPrecisionGrad(torch.autograd.Function):
    """(w, w_low) -> w_low (a view), whose gradient goes back to w in w's dtype."""

    @staticmethod
    def forward(ctx, w, w_low):
        ctx.dtype = w.dtype
        return w_low.view_as(w_low)

    @staticmethod
    def backward(ctx, grad):
        return grad.to(ctx.dtype), None


def autocast_uses(w: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Hands out ``w`` for a loop that uses it once per position: under autocast on w's device, its copy
    in the autocast dtype, cast once (autocast caches casts of leaf weights only, and w, a concatenation,
    is none), each use a node of its own whose gradient reaches w in fp32. Without those nodes autograd
    would sum the T uses' gradients in bf16 (about 1-2% off at 40 positions) before the cast's backward.
    Without autocast: w itself."""
    device = w.device.type
    if not torch.is_autocast_enabled(device):
        return lambda: w
    w_low = w.detach().to(torch.get_autocast_dtype(device))
    if not (torch.is_grad_enabled() and w.requires_grad):
        return lambda: w_low
    return lambda: _FullPrecisionGrad.apply(w, w_low)


def grad_scaler(dtype: Optional[torch.dtype]) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (bf16 has fp32's exponent range)."""
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict) -> None:
    """Restore a saved scaler state; a disabled scaler saved ``{}`` (an fp32/bf16 run resumed with
    fp16): then the scaler keeps its fresh state, where ``load_state_dict`` would raise."""
    if state:
        scaler.load_state_dict(state)


def fast_fp32_matmul(device: torch.device) -> None:
    """TF32 for the fp32 matmuls on CUDA (outside autocast: validation, decoding, fp32 training);
    cuDNN (the encoder's GRU) uses TF32 by default. Nothing changes on a CPU."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
