"""One training step and the parts it uses: loss, per-rank shares of a global batch, clipping, Adam.

:func:`train_step` is what the loop calls and what ``benchmarks/train_throughput.py`` measures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Callable, ContextManager, Optional

import torch
import torch.nn.functional as F

from seq2seq.config.schema import TrainConfig
from seq2seq.constants import PAD
from seq2seq.data.batches import Batch, collate, make_batches
from seq2seq.data.sampling import SampledPairs
from seq2seq.data.token_ids import IdSeqs
from seq2seq.model.network import Seq2Seq
from seq2seq.model.precision import autocast
from seq2seq.training.distributed import Dist
from seq2seq.training.loss import TrainingLoss
from seq2seq.training.schedule import Schedule


@dataclasses.dataclass
class Parts:
    """What a training step uses (built by :func:`seq2seq.training.setup.setup_parts`)."""

    model: Seq2Seq
    forward: Callable  # (src, lengths, tgt_in, tgt_out) -> summed loss, NLL: TrainingLoss, maybe DDP-wrapped
    no_sync: Callable[[], ContextManager]  # DDP's no_sync (gradient accumulation), else a null context
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    amp_dtype: Optional[torch.dtype]  # autocast dtype, None for fp32
    device: torch.device
    precision: str = ""  # which precision and why, for the log (seq2seq.model.precision.choose_precision)


@dataclasses.dataclass
class TrainData:
    train_src: IdSeqs  # filtered training pairs as token ids (memory-mapped)
    train_tgt: IdSeqs
    dev_lines: list[str]  # dev source lines and references, for dev BLEU
    dev_refs: list[str]
    dev_src: list[list[int]]  # dev pairs as ids (non-empty), for dev loss
    dev_tgt: list[list[int]]
    sampled: Optional[SampledPairs] = (
        None  # spm.subword_sampling: the training pairs segmented afresh each epoch
    )
    # (kept pairs, weight) of each corpus of data.sources, in the order of train_src (): each pair once
    shares: tuple = ()

    def pairs(self, idx: list[int], epoch: int) -> tuple[list[list[int]], list[list[int]]]:
        """(source ids, target ids) of the training pairs ``idx`` at ``epoch``: sampled with spm.subword_sampling,
        else the stored ids."""
        if self.sampled is not None:
            return self.sampled.batch(idx, epoch)
        return [self.train_src[i] for i in idx], [self.train_tgt[i] for i in idx]


def loss_fn(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Summed (label-smoothed) cross-entropy over real target tokens. logits (B, T, V), target (B, T)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        target.reshape(-1),
        ignore_index=PAD,
        label_smoothing=smoothing,
        reduction="sum",
    )


@torch.no_grad()
def dev_loss(parts: Parts, data: TrainData, batch_tokens: int) -> float:
    """Cross-entropy per target token of the dev pairs, under the training's autocast (model in the
    mode the caller set)."""
    total, ntok, objective = 0.0, 0, TrainingLoss(parts.model, 0.0)
    lengths = [len(s) for s in data.dev_src], [len(t) for t in data.dev_tgt]
    for idx in make_batches(*lengths, batch_tokens, shuffle=False):
        b = collate([data.dev_src[i] for i in idx], [data.dev_tgt[i] for i in idx]).to(parts.device)
        with autocast(parts.device, parts.amp_dtype):
            total += objective(b.src, b.lengths, b.tgt_in, b.tgt_out)[1].item()
        ntok += b.ntokens
    return total / max(ntok, 1)


def train_step(
    parts: Parts,
    shares: list[tuple[Batch, float]],
    scale: float,
    lr: float,
    tc: TrainConfig,
    nll: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step at learning rate ``lr`` over ``shares``: (CPU batch, weight) pairs, one per
    accumulated batch. Each batch's summed loss x weight is scaled by ``scale`` (world / global target
    tokens) before backward. Returns (summed loss, gradient norm); both stay on the device (no sync).
    ``nll``: a device scalar the summed NLL without label smoothing is added to (comparable with the dev
    loss; the fused loss gives it for free)."""
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    parts.optimizer.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=parts.device)
    cuda = parts.device.type == "cuda"
    for j, (batch, weight) in enumerate(shares):
        b = (batch if not cuda or batch.src.is_pinned() else batch.pin_memory()).to(parts.device)  # async
        with contextlib.nullcontext() if j == len(shares) - 1 else parts.no_sync():
            with autocast(parts.device, parts.amp_dtype):
                loss, batch_nll = parts.forward(b.src, b.lengths, b.tgt_in, b.tgt_out)  # summed over tokens
            parts.scaler.scale(loss * (weight * scale)).backward()
        loss_sum += loss.detach() * weight
        if nll is not None:
            nll += batch_nll * weight
    parts.scaler.unscale_(parts.optimizer)
    clip = tc.clip_norm if tc.clip_norm > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(), clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    return loss_sum, norm.detach()


def rank_shares(
    micro: list[list[int]], data: TrainData, dist: Dist, pin: bool = False, epoch: int = 0
) -> tuple[list[tuple[Batch, float]], int]:
    """This rank's batches of one optimizer step and the global number of target tokens. ``micro`` holds
    the step's batches of sentence indices for every rank (devices x accum_steps of them, fewer at an
    epoch's end): each batch is a per-device batch, and rank r takes the r-th block of them, so a rank
    always gets full batches (``train.batch_tokens`` each) whatever the number of processes. Every rank
    scales its summed loss by world / tokens, so DDP's gradient mean is exactly the gradient one process
    gets accumulating the same batches. Every rank runs the same number of batches (DDP syncs on the
    last): a rank short of batches at an epoch's end joins with zero-weight copies.
    ``pin``: in page-locked memory, for an asynchronous copy to the GPU. ``epoch``: which sampled
    segmentation (spm.subword_sampling), where every rank samples every batch of the step for the global count.
    """
    per = -(-len(micro) // dist.world)  # batches per rank: accum_steps, or fewer at an epoch's end
    mine = [(j, 1.0) for j in range(dist.rank * per, min(len(micro), (dist.rank + 1) * per))]
    mine += [(0, 0.0)] * (per - len(mine))
    if data.sampled is None:  # the stored ids: only this rank's batches are read
        pairs = {j: data.pairs(micro[j], epoch) for j, _ in mine}
        total = sum(int(data.train_tgt.lengths[idx].sum()) + len(idx) for idx in micro)  # targets + EOS
    else:  # the sampled lengths count: every batch of the step is sampled, for the global count
        pairs = {j: data.pairs(idx, epoch) for j, idx in enumerate(micro)}
        total = sum(len(t) + 1 for _, tgt in pairs.values() for t in tgt)
    shares = []
    for j, weight in mine:
        batch = collate(*pairs[j])
        shares.append((batch.pin_memory() if pin else batch, weight))
    return shares, total


@dataclasses.dataclass
class Window:
    """Training figures summed since the last log line (kept on the device: no per-step sync)."""

    loss: torch.Tensor
    norm: torch.Tensor
    nll: Optional[torch.Tensor] = None  # summed NLL without label smoothing (train_step's ``nll``)
    norm_max: Optional[torch.Tensor] = None  # the largest single step's gradient norm (before clipping)
    tokens: int = 0
    steps: int = 0
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, loss: torch.Tensor, norm: torch.Tensor, tokens: int) -> None:
        self.loss += loss
        self.norm += norm
        torch.maximum(self.norm_max, norm, out=self.norm_max)
        self.tokens, self.steps = self.tokens + tokens, self.steps + 1

    def stats(self, dist: Dist, lr: float) -> dict:
        """Loss and unsmoothed NLL per target token (over every rank), tokens/s, ``lr``, mean gradient
        norm and the largest step's: host syncs."""
        return {
            "loss": dist.sum(self.loss).item() / self.tokens,
            "nll": dist.sum(self.nll).item() / self.tokens,
            "tokens_per_s": self.tokens / (time.perf_counter() - self.start),
            "lr": lr,
            "grad_norm": self.norm.item() / self.steps,
            "grad_norm_max": self.norm_max.item(),
        }

    def __post_init__(self) -> None:
        if self.nll is None:
            self.nll = torch.zeros_like(self.loss)
        if self.norm_max is None:
            self.norm_max = torch.zeros_like(self.norm)

    def reset(self) -> None:
        self.loss.zero_(), self.norm.zero_(), self.nll.zero_(), self.norm_max.zero_()
        self.tokens, self.steps, self.start = 0, 0, time.perf_counter()
