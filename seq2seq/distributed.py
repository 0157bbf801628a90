"""Devices and processes: the device a setting names, and torch.distributed glue for ``torchrun``
(process group from the environment, rank-0 helpers).

Single-process runs never touch torch.distributed. Under torchrun (WORLD_SIZE > 1) the group is
NCCL on CUDA and gloo on CPU, initialised from torchrun's environment (single- or multi-node).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

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


class Dist:
    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        if self.world > 1 and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(self.local_rank)
                self.device = torch.device("cuda", self.local_rank)
            dist.init_process_group(
                "nccl" if self.device.type == "cuda" else "gloo", timeout=timedelta(minutes=60)
            )  # rank 0 validates while others wait

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj):
        """rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
