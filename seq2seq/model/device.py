"""The device a setting names (``train.device``, ``--device``): auto, cpu, cuda or cuda:N."""

from __future__ import annotations

import torch

from seq2seq.errors import UserError


def pick_device(name: str = "auto", setting: str = "config key 'train.device'") -> torch.device:
    """The device ``name`` (auto | cpu | cuda | cuda:N) names; ``setting`` says where the value came from
    (e.g. "--device") for the error message."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{setting}: unknown device {name!r} (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{setting}: device '{name}' requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"{setting}: unsupported device {name!r} (auto, cpu, cuda or cuda:N)")
    return device
