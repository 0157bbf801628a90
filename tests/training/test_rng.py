"""Per-rank generator state in checkpoints (seq2seq/training/rng.py), with torch's CUDA RNG functions
monkeypatched: each rank saves and restores its own device's generator, never all devices'."""

from __future__ import annotations

import pytest
import torch

from seq2seq.training import rng


class FakeCuda:
    """torch.cuda's RNG functions for ``visible`` devices; the *_all variants must never be called."""

    def __init__(self, monkeypatch, visible: int):
        self.visible, self.states, self.calls = visible, {}, []
        for name in ("get_rng_state", "set_rng_state", "manual_seed"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        for name in ("get_rng_state_all", "set_rng_state_all"):
            monkeypatch.setattr(torch.cuda, name, lambda *a, name=name: pytest.fail(f"{name} was called"))

    def _index(self, device) -> int:
        index = torch.device(device).index or 0
        if index >= self.visible:
            raise RuntimeError(f"invalid device ordinal {index}: {self.visible} visible")
        return index

    def get_rng_state(self, device="cuda"):
        return self.states.get(self._index(device), torch.full((16,), self._index(device), dtype=torch.uint8))

    def set_rng_state(self, state, device="cuda"):
        self.calls.append(("set", self._index(device)))
        self.states[self._index(device)] = state.clone()

    def manual_seed(self, seed):
        self.calls.append(("seed", int(seed)))


def test_capture_takes_the_own_devices_cuda_state_only(monkeypatch):
    fake = FakeCuda(monkeypatch, visible=2)
    state = rng.capture(torch.device("cuda", 1))
    assert torch.equal(state["cuda"], torch.full((16,), 1, dtype=torch.uint8))
    assert torch.equal(state["cpu"], torch.get_rng_state())
    assert rng.capture(torch.device("cpu")).keys() == {"cpu"}
    assert fake.calls == []


def test_each_rank_restores_its_own_states(monkeypatch):
    fake = FakeCuda(monkeypatch, visible=2)
    saved = [
        {"cpu": torch.manual_seed(10).get_state(), "cuda": torch.full((16,), 7, dtype=torch.uint8)},
        {"cpu": torch.manual_seed(11).get_state(), "cuda": torch.full((16,), 8, dtype=torch.uint8)},
    ]
    assert rng.restore({"rng": saved}, 1, torch.device("cuda", 1), seed=1, step=50)
    assert torch.equal(torch.get_rng_state(), saved[1]["cpu"])
    assert fake.calls == [("set", 1)] and torch.equal(fake.states[1], saved[1]["cuda"])


def test_an_old_checkpoint_of_eight_gpus_resumes_on_one(monkeypatch):
    """Before per-rank states, last.pt held rank 0's CPU state and every one of its devices' CUDA states
    (set_rng_state_all on fewer visible GPUs crashed). Rank 0 takes its own device's; rank 1 is seeded."""
    fake = FakeCuda(monkeypatch, visible=1)
    old = {
        "rng_cpu": torch.manual_seed(3).get_state(),
        "rng_cuda": [torch.full((16,), i, dtype=torch.uint8) for i in range(8)],
    }
    assert rng.restore(old, 0, torch.device("cuda", 0), seed=1, step=50)
    assert torch.equal(torch.get_rng_state(), old["rng_cpu"])
    assert fake.calls == [("set", 0)] and torch.equal(fake.states[0], old["rng_cuda"][0])
    assert not rng.restore(old, 1, torch.device("cuda", 0), seed=1, step=50)
    assert fake.calls[1:] == []  # torch.manual_seed seeds the CUDA generators itself


def test_ranks_without_a_saved_state_get_seeds_of_their_own():
    """More processes than the checkpoint has states for (or an old one): seeded from (seed, rank, step)."""
    saved = {"rng": [{"cpu": torch.manual_seed(0).get_state()}]}
    draws = {}
    for rank in (1, 2, 3):
        assert not rng.restore(saved, rank, torch.device("cpu"), seed=1, step=40)
        draws[rank] = torch.rand(8)
    assert not any(torch.equal(draws[a], draws[b]) for a, b in ((1, 2), (1, 3), (2, 3)))
    rng.restore(saved, 2, torch.device("cpu"), seed=1, step=40)
    assert torch.equal(torch.rand(8), draws[2]), "deterministic"
    rng.restore(saved, 2, torch.device("cpu"), seed=1, step=41)
    assert not torch.equal(torch.rand(8), draws[2])
    assert rng.restore(saved, 0, torch.device("cpu"), seed=1, step=40)
    assert torch.equal(torch.get_rng_state(), saved["rng"][0]["cpu"])
