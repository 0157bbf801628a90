"""Random generator state per rank, for checkpoints: each process saves and restores its own.

Every rank draws its own dropout and word-dropout masks (:func:`seq2seq.training.setup.setup_process`
seeds rank r with seed + r). ``last.pt`` holds, under ``rng``, one entry per rank: its CPU generator
state and, on CUDA, the state of its own device's generator (never all devices': a run resumed with
fewer GPUs visible must not need them). A resumed rank takes its own entry; a rank the checkpoint has
no entry for (more processes than before, or an old checkpoint that holds rank 0's state only) is
seeded from (seed, rank, step), so no two ranks ever share masks.
"""

from __future__ import annotations

import numpy as np
import torch


def capture(device: torch.device) -> dict:
    """This process's generator states: the CPU's and, on CUDA, that of its own device."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _saved(ckpt: dict, device: torch.device) -> list[dict]:
    """The per-rank states of a checkpoint; an old one (``rng_cpu`` and a list ``rng_cuda`` of all of
    rank 0's devices) gives rank 0's CPU state and its own device's CUDA state, if it was saved."""
    if "rng" in ckpt:
        return list(ckpt["rng"])
    state = {"cpu": ckpt["rng_cpu"]}
    index = device.index or 0
    if device.type == "cuda" and index < len(ckpt.get("rng_cuda") or []):
        state["cuda"] = ckpt["rng_cuda"][index]
    return [state]


def derived_seed(seed: int, rank: int, step: int) -> int:
    """A seed of its own for each (seed, rank, step)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def restore(ckpt: dict, rank: int, device: torch.device, seed: int, step: int) -> bool:
    """Restore rank ``rank``'s generators from ``ckpt`` (True), or seed them from (seed, rank, step)
    when it holds no state for this rank (False)."""
    states = _saved(ckpt, device)
    if rank >= len(states):
        torch.manual_seed(derived_seed(seed, rank, step))  # CPU and every CUDA device
        return False
    own = states[rank]
    torch.set_rng_state(own["cpu"].cpu())
    if device.type == "cuda":
        if "cuda" in own:
            torch.cuda.set_rng_state(own["cuda"].cpu(), device)
        else:  # saved on a CPU
            torch.cuda.manual_seed(derived_seed(seed, rank, step))
    return True
