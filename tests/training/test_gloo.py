"""The multi-process path in gloo processes on the CPU, by CUDA's rules where they differ: one optimizer
step of 2 ranks equals one process accumulating the same batches, the encoder gets its lengths on the
host through DDP, ``device: auto`` under torchrun needs CUDA, gloo follows NCCL's network interface,
fused Adam and pinned batches."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import random_ids
from fixtures.gloo import spawn

import seq2seq.model.precision as precision
import seq2seq.training.distributed as distributed
from seq2seq.config.schema import Config, ModelConfig, TrainConfig
from seq2seq.data.batches import Batch
from seq2seq.errors import UserError
from seq2seq.training.distributed import Dist, gloo_follows_nccl, gloo_ifname, process_device
from seq2seq.training.loop import Trainer
from seq2seq.training.setup import setup_parts
from seq2seq.training.step import TrainData, rank_shares, train_step

VOCAB = 40
MICRO = [list(range(0, 5)), list(range(5, 11))]  # two per-device batches of sentence indices


class _Seqs(list):
    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self])


def _data():
    src, tgt = random_ids(12, VOCAB, 2, 9, seed=3), random_ids(12, VOCAB, 2, 9, seed=4)
    return TrainData(_Seqs(src), _Seqs(tgt), [], [], [], [])


def _cfg(**train) -> Config:
    return Config(
        model=ModelConfig(emb_dim=16, enc_hidden=12, enc_layers=2, dec_hidden=20, attn_dim=10, dropout=0.0),
        train=TrainConfig(lr=0.01, device="cpu", **train),
    )


def one_step(compile: str = "off") -> dict:
    """One optimizer step over MICRO in this process (a rank, or the only process)."""
    cfg = _cfg(compile=compile)
    dist = Dist(process_device(cfg.train.device))
    torch.manual_seed(0)
    parts = setup_parts(cfg, VOCAB, VOCAB, dist)
    seen = []
    parts.model.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[1].device.type))
    shares, total = rank_shares(MICRO, _data(), dist)
    train_step(parts, shares, dist.world / total, cfg.train.lr, cfg.train)
    return {
        "params": {k: v.clone() for k, v in parts.model.state_dict().items()},
        "lengths": seen,
        "ddp": getattr(parts.forward, "device_ids", "no ddp"),
    }


def _worst(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_ranks_step_as_one_process_accumulating_their_batches():
    """Each rank takes one of MICRO's per-device batches; one process takes both (accum_steps=2)."""
    alone = one_step()
    ranks = spawn(one_step, 2)
    assert alone["ddp"] == "no ddp" and [r["ddp"] for r in ranks] == [None, None]  # DDP moves no input
    assert alone["lengths"] == ["cpu", "cpu"] and [r["lengths"] for r in ranks] == [["cpu"], ["cpu"]]
    assert _worst(ranks[0]["params"], ranks[1]["params"]) == 0.0
    assert _worst(alone["params"], ranks[0]["params"]) < 1e-6


def test_ddp_leaves_the_inputs_where_the_step_put_them(monkeypatch):
    """With device_ids, DDP copies every input to the GPU, the source lengths included, and the encoder's
    lengths.cpu() then waits for the previous step (finding 3): DDP is built without them."""
    calls = []
    monkeypatch.setattr(
        torch.nn.parallel,
        "DistributedDataParallel",
        lambda *a, **k: calls.append(k) or SimpleNamespace(no_sync=None),
    )
    monkeypatch.setattr(Dist, "__init__", lambda self, device: None)
    fake = Dist(torch.device("cpu"))
    fake.world, fake.rank, fake.device = 2, 0, torch.device("cuda", 0)  # a CUDA rank ...
    monkeypatch.setattr(torch.Tensor, "to", lambda t, *a, **k: t)  # ... whose model stays on the CPU
    monkeypatch.setattr(precision, "cuda_has_native_bf16", lambda: True)
    setup_parts(_cfg(), VOCAB, VOCAB, fake)
    assert calls == [{}]


def test_auto_under_torchrun_without_cuda_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(UserError) as err:
        process_device("auto")
    assert "auto found no CUDA device for 4 processes" in str(err.value) and "train.device=cpu" in str(
        err.value
    )
    assert "\n" not in str(err.value)
    assert process_device("cpu") == torch.device("cpu")  # explicit: N gloo processes on the CPU
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert process_device("auto") == torch.device("cpu")  # one process: as before


@pytest.mark.parametrize(
    "nccl,expected",
    [
        ("eth", "eth0,eth1"),  # NCCL: a prefix
        ("=eth0", "eth0"),  # exact
        ("ib,eth1", "eth1,ib0"),
        ("^docker,lo", None),  # exclusions: gloo keeps its own choice
        ("wlan", None),
    ],
)
def test_gloo_takes_ncclls_interfaces(nccl, expected):
    assert gloo_ifname(nccl, ["lo", "eth0", "eth1", "docker0", "ib0"]) == expected


def test_gloo_ifname_is_set_from_nccl_only_when_unset(monkeypatch):
    monkeypatch.setattr(socket, "if_nameindex", lambda: [(1, "lo"), (2, "eth0")])
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "eth")
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    gloo_follows_nccl()
    assert distributed.os.environ["GLOO_SOCKET_IFNAME"] == "eth0"
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    gloo_follows_nccl()
    assert distributed.os.environ["GLOO_SOCKET_IFNAME"] == "lo"  # the user's own setting wins


def test_adam_is_fused():
    """One kernel for every parameter (CUDA: no host syncs); the optimizer setup_parts builds."""
    parts = setup_parts(_cfg(), VOCAB, VOCAB, Dist(torch.device("cpu")))
    assert parts.optimizer.defaults["fused"] is True


def test_batches_for_a_gpu_are_pinned(monkeypatch):
    """The background collation pins each share for a CUDA device (an asynchronous copy), not for a CPU."""
    pinned = []
    monkeypatch.setattr(Batch, "pin_memory", lambda b: pinned.append(b) or b)
    for device, expected in (("cpu", 0), ("cuda", 2)):
        pinned.clear()
        fake = SimpleNamespace(
            device=torch.device(device), data=_data(), dist=SimpleNamespace(world=1, rank=0)
        )
        shares, _ = Trainer._prepare(fake, MICRO)
        assert len(pinned) == expected and len(shares) == 2
