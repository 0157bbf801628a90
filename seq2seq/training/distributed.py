"""Processes: torch.distributed glue for ``torchrun`` (process group from the environment, rank-0
helpers).

Single-process runs never touch torch.distributed. Under torchrun (WORLD_SIZE > 1) the group is
NCCL on CUDA and gloo on CPU, initialised from torchrun's environment (single- or multi-node).
Small host-side agreements (the stop flag, RNG states) go through a gloo group also under NCCL, so
they never wait for the GPU. That group binds the interface ``GLOO_SOCKET_IFNAME`` names; when it is
unset and ``NCCL_SOCKET_IFNAME`` is set, the gloo group takes NCCL's interfaces (:func:`gloo_ifname`),
else gloo binds whatever the host name resolves to (often 127.0.1.1: no other node reaches it).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from seq2seq.errors import UserError
from seq2seq.model.device import pick_device


def process_device(name: str) -> torch.device:
    """The device ``train.device`` names for this process. Under torchrun (WORLD_SIZE > 1) ``auto``
    must find CUDA: N gloo processes on the CPU for a GPU-sized job is a mistake, so it takes an
    explicit ``cpu`` (as the tests' gloo runs set it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if name == "auto" and world > 1 and not torch.cuda.is_available():
        raise UserError(
            f"config key 'train.device': auto found no CUDA device for {world} processes (WORLD_SIZE={world}); "
            f"set train.device=cpu to train {world} gloo processes on the CPU"
        )
    return pick_device(name)


def gloo_ifname(nccl: str, interfaces: list[str]) -> Optional[str]:
    """``GLOO_SOCKET_IFNAME`` for an ``NCCL_SOCKET_IFNAME`` value: NCCL takes name prefixes (``eth``),
    exact names (``=eth0``) or exclusions (``^docker``), comma-separated; gloo takes exact names. None
    where nothing matches this host's ``interfaces`` (or for exclusions: gloo keeps its own choice)."""
    nccl = nccl.strip()
    if not nccl or nccl.startswith("^"):
        return None
    exact = nccl.startswith("=")
    wanted = [w.strip() for w in nccl.lstrip("=").split(",") if w.strip()]
    names = [i for i in interfaces if any(i == w if exact else i.startswith(w) for w in wanted)]
    return ",".join(names) or None


def gloo_follows_nccl() -> None:
    """Set ``GLOO_SOCKET_IFNAME`` from ``NCCL_SOCKET_IFNAME`` when only the latter is set (before any gloo
    group exists): the ranks' host-side agreements then travel over the network NCCL uses."""
    nccl = os.environ.get("NCCL_SOCKET_IFNAME")
    if nccl and not os.environ.get("GLOO_SOCKET_IFNAME"):
        names = gloo_ifname(nccl, [name for _, name in socket.if_nameindex()])
        if names:
            os.environ["GLOO_SOCKET_IFNAME"] = names


def data_parallel(module: torch.nn.Module) -> torch.nn.parallel.DistributedDataParallel:
    """``module`` under DDP. Without ``device_ids``: DDP then leaves the inputs where the step put them
    (tokens already on the GPU, the source lengths on the host); with them it would copy every input to
    the GPU, lengths included, and the encoder's ``lengths.cpu()`` would wait for the previous step."""
    return torch.nn.parallel.DistributedDataParallel(module)


class Dist:
    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        self.host_group = None  # the group for CPU objects: the default one, or gloo beside NCCL
        if self.world > 1 and not dist.is_initialized():
            gloo_follows_nccl()
            if device.type == "cuda":
                torch.cuda.set_device(self.local_rank)
                self.device = torch.device("cuda", self.local_rank)
            dist.init_process_group(
                "nccl" if self.device.type == "cuda" else "gloo", timeout=timedelta(minutes=60)
            )  # rank 0 validates while others wait
        if self.world > 1 and dist.get_backend() == "nccl":
            self.host_group = dist.new_group(backend="gloo", timeout=timedelta(minutes=60))

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

    def max(self, value: int) -> int:
        """The largest ``value`` over the ranks: one tiny all-reduce on the CPU."""
        if self.world == 1:
            return value
        box = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(box, op=dist.ReduceOp.MAX, group=self.host_group)
        return int(box.item())

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank (host objects, through the CPU group)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj, group=self.host_group)
        return out

    def check_shared(self, path: Path) -> None:
        """Stop on every rank with one line unless every rank sees the files rank 0 writes under
        ``path``: only rank 0 builds ``bin/`` and writes checkpoints, so a run directory that is not one
        filesystem for every node would leave the other nodes racing or resuming from nothing."""
        if self.world == 1:
            return
        marker = path / f".shared-check-{self.broadcast(uuid.uuid4().hex)}"
        if self.main:
            path.mkdir(parents=True, exist_ok=True)
            marker.write_text(socket.gethostname(), encoding="utf-8")
        self.barrier()
        views = self.gather((_appears(marker), socket.gethostname()))
        self.barrier()
        if self.main:
            marker.unlink(missing_ok=True)
        blind = [rank for rank, (seen, _) in enumerate(views) if not seen]
        if blind:
            raise UserError(
                f"run_dir {path} is not shared between the processes: rank {blind[0]} (host "
                f"{views[blind[0]][1]}) does not see the files rank 0 writes there; put run_dir on a "
                f"filesystem that every node mounts"
            )

    def broadcast(self, obj):
        """rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Leave the group together: no rank tears its side down (rank 0 hosts the store) while another
        still uses it, which aborted a rank at exit ("terminate called without an active exception")."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _appears(path: Path, tries: int = 5, wait: float = 0.2) -> bool:
    """Whether ``path`` exists, asking a few times (a network filesystem may show a new file late)."""
    for attempt in range(tries):
        if path.exists():
            return True
        if attempt + 1 < tries:
            time.sleep(wait)
    return False
