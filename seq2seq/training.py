"""The training loop: token batches, Adam, clipping, label smoothing, validation, early stopping, resume.

``last.pt`` holds everything needed to continue exactly where a run stopped (model, optimizer,
scheduler, epoch and batch position, RNG state, early-stopping state); re-running ``train`` on the
same run directory continues from it. ``best.pt`` holds the parameters with the best dev BLEU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from seq2seq import checkpoint as ckpt_io
from seq2seq.batches import collate, make_batches
from seq2seq.compiled import compile_training
from seq2seq.config import Config, save_config
from seq2seq.data import read_split
from seq2seq.distributed import Dist
from seq2seq.errors import UserError
from seq2seq.evaluate import score
from seq2seq.model import Seq2Seq, build_model, count_parameters
from seq2seq.monitor import Monitor
from seq2seq.shards import build_pairs
from seq2seq.tokenizer import PAD, Tokenizer, load_tokenizers
from seq2seq.translator import pick_device, translate_lines


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def load_pairs(cfg: Config, split: str, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: Optional[int] = None):
    """(source ids, target ids) of a split; training drops empty pairs and those longer than max_len."""
    src, tgt = read_split(cfg, split)
    s_ids, t_ids = src_tok.encode(src), tgt_tok.encode(tgt)
    keep = [i for i in range(len(s_ids)) if s_ids[i] and t_ids[i]
            and (max_len is None or (len(s_ids[i]) <= max_len and len(t_ids[i]) <= max_len))]
    return [s_ids[i] for i in keep], [t_ids[i] for i in keep]


def loss_fn(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Summed (label-smoothed) cross-entropy over real target tokens. logits (B, T, V), target (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=PAD,
                           label_smoothing=smoothing, reduction="sum")


def tokenizer_fingerprint(src_tok: Tokenizer, tgt_tok: Tokenizer) -> str:
    h = hashlib.sha256(src_tok.sp.serialized_model_proto())
    h.update(tgt_tok.sp.serialized_model_proto())
    return h.hexdigest()


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for a ``train.precision`` setting on ``device`` (None: plain fp32)."""
    cuda = device.type == "cuda"
    if precision == "fp32" or (precision == "auto" and not cuda):
        return None
    if precision == "fp16":
        if not cuda:
            raise UserError("config key 'train.precision': fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
        return torch.float16
    if cuda:
        if precision == "auto" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise UserError("config key 'train.precision': this CPU has no native bf16; use fp32")
    return torch.bfloat16


@dataclasses.dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch of this epoch
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0
    stopped_early: bool = False
    lr_scale: float = 1.0  # plateau reductions so far
    lr_bad: int = 0  # validations without improvement since the last reduction


class Trainer:
    def __init__(self, cfg: Config, log=None):
        self.cfg = cfg
        tc = cfg.train
        self.run = cfg.run_path
        self.ckpt_dir = self.run / "checkpoints"
        self.log_override = log
        self.log = log or print
        seed_everything(tc.seed)
        if tc.threads:
            torch.set_num_threads(tc.threads)
        self.dist = Dist(pick_device(tc.device))
        self.device = self.dist.device
        if self.dist.world > 1:
            torch.manual_seed(tc.seed + self.dist.rank)  # different dropout masks per rank
        self.src_tok, self.tgt_tok = load_tokenizers(self.run)
        self.fingerprint = tokenizer_fingerprint(self.src_tok, self.tgt_tok)
        self.model: Seq2Seq = build_model(cfg.model, len(self.src_tok), len(self.tgt_tok)).to(self.device)
        compile_training(self.model, tc.compile)
        # what the training step calls: the model, or its DistributedDataParallel wrapper under torchrun
        self.forward = self.model
        if self.dist.world > 1:
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.amp_dtype = autocast_dtype(tc.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.progress = Progress()
        # token ids on disk, memory-mapped (rank 0 builds them; the others wait and map them)
        if self.dist.main:
            build_pairs(cfg, self.src_tok, self.tgt_tok, self.fingerprint, self.log)
        self.dist.barrier()
        self.train_src, self.train_tgt = build_pairs(cfg, self.src_tok, self.tgt_tok, self.fingerprint, self.log)
        if not len(self.train_src):
            raise UserError("no training pairs left after filtering (train.max_len, filter_ratio, dedupe)")
        self.dev_src_lines, self.dev_ref = read_split(cfg, "dev")
        self.dev_src, self.dev_tgt = load_pairs(cfg, "dev", self.src_tok, self.tgt_tok)

    # ---- checkpoints -------------------------------------------------------------------------
    def _payload(self, full: bool) -> dict:
        p = {"config": self.cfg.to_dict(), "model": self.model.state_dict(), "src_vocab": len(self.src_tok),
             "tgt_vocab": len(self.tgt_tok), "tokenizers": self.fingerprint,
             "progress": dataclasses.asdict(self.progress)}
        if full:
            p.update(optimizer=self.optimizer.state_dict(),
                     scaler=self.scaler.state_dict(), rng_cpu=torch.get_rng_state(),
                     rng_cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])
        return p

    def save(self, name: str, full: bool = True) -> None:
        if self.dist.main:
            ckpt_io.save(self.ckpt_dir / f"{name}.pt", self._payload(full))

    def try_resume(self) -> bool:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            return False
        ckpt = ckpt_io.load(path, map_location=self.device)
        if ckpt.get("tokenizers") != self.fingerprint or ckpt["config"]["model"] != self.cfg.to_dict()["model"]:
            raise UserError(f"{path} was trained with another model config or tokenizer; delete "
                            f"{self.ckpt_dir} or choose another run_dir")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng_cpu"].cpu())
        if ckpt["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng_cuda"]])
        self.progress = Progress(**ckpt["progress"])
        return True

    def learning_rate(self) -> float:
        """lr x warm-up x (plateau reductions | cosine decay), never below min_lr after warm-up."""
        tc, p = self.cfg.train, self.progress
        step = p.step + 1  # the step about to be taken
        warm = min(1.0, step / tc.warmup_steps) if tc.warmup_steps else 1.0
        if tc.lr_schedule == "cosine":
            frac = min(1.0, max(0, step - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps))
            lr = tc.min_lr + (tc.lr - tc.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
        else:
            lr = max(tc.min_lr, tc.lr * p.lr_scale)
        return lr * warm

    # ---- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """(dev loss per token, dev BLEU) with the model in eval mode; logs a few samples."""
        self.model.eval()
        total, ntok = 0.0, 0
        for idx in make_batches([len(s) for s in self.dev_src], [len(t) for t in self.dev_tgt],
                                self.cfg.train.batch_tokens, shuffle=False):
            b = collate([self.dev_src[i] for i in idx], [self.dev_tgt[i] for i in idx]).to(self.device)
            with self._autocast():
                logits = self.model(b.src, b.lengths, b.tgt_in)
            total += loss_fn(logits, b.tgt_out, 0.0).item()
            ntok += b.ntokens
        dc = dataclasses.replace(self.cfg.decode, beam_size=self.cfg.train.valid_beam, n_best=1)
        # decoded in full precision, as evaluate and translate do
        hyps = translate_lines(self.model, self.src_tok, self.tgt_tok, self.dev_src_lines, dc, self.device)
        bleu = score(hyps, self.dev_ref)["bleu"]
        for i in range(min(self.cfg.train.samples, len(hyps))):
            self.log(f"  sample {i}: {self.dev_src_lines[i]!r} -> {hyps[i]!r} (ref {self.dev_ref[i]!r})")
        self.model.train()
        return total / max(ntok, 1), bleu

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _check(self) -> None:
        """Validate (rank 0), step the LR schedule, save best/last, update early stopping; all ranks
        then continue with rank 0's progress."""
        if self.dist.main:
            self._validate_and_save()
        self.progress = self.dist.broadcast(self.progress)
        self.dist.barrier()

    def _validate_and_save(self) -> None:
        p, tc = self.progress, self.cfg.train
        dev_loss, bleu = self.validate()
        improved = bleu > p.best_bleu
        if improved:
            p.best_bleu, p.best_step, p.bad_validations = bleu, p.step, 0
        else:
            p.bad_validations += 1
        if tc.lr_schedule == "plateau" and not improved:
            p.lr_bad += 1
            if p.lr_bad >= tc.lr_patience:
                p.lr_scale, p.lr_bad = p.lr_scale * tc.lr_factor, 0
        elif improved:
            p.lr_bad = 0
        if tc.patience and p.bad_validations >= tc.patience:
            p.stopped_early = True
        lr = self.learning_rate()
        self.monitor.scalars("dev", p.step, {"loss": dev_loss, "bleu": bleu, "lr": lr})
        self.log(f"validation step {p.step}: dev loss {dev_loss:.4f} ppl {math.exp(min(dev_loss, 50)):.2f} "
                 f"BLEU {bleu:.2f} (best {p.best_bleu:.2f} at step {p.best_step}) lr {lr:.2e}")
        if improved:
            self.save("best", full=False)
        if tc.keep_checkpoints:  # parameters only, for seq2seq average
            self.save(f"step-{p.step:08d}", full=False)
            for old in sorted(self.ckpt_dir.glob("step-*.pt"))[:-tc.keep_checkpoints]:
                old.unlink()
        self.save("last")

    # ---- the loop ----------------------------------------------------------------------------
    def budget_left(self) -> bool:
        p, tc = self.progress, self.cfg.train
        if p.stopped_early:
            return False
        if tc.max_steps and p.step >= tc.max_steps:
            return False
        return not (tc.max_epochs and p.epoch >= tc.max_epochs)

    def _train_step(self, micro: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step over ``micro`` (accum_steps global batches of sentence indices).

        Each rank takes every world-th sentence of each global batch and scales its summed loss by
        world / (global target tokens), so DDP's gradient mean is exactly the single-process gradient
        of the same global batches. Returns (this rank's summed loss, gradient norm, global tokens);
        the tensors stay on the device (no host sync).
        """
        tc, d = self.cfg.train, self.dist
        total = sum(int(self.train_tgt.lengths[idx].sum()) + len(idx) for idx in micro)  # targets + EOS
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        for j, idx in enumerate(micro):
            share, weight = idx[d.rank::d.world], 1.0
            if not share:  # fewer sentences than ranks: join the all-reduce with a zero-weight copy
                share, weight = idx[:1], 0.0
            b = collate([self.train_src[i] for i in share], [self.train_tgt[i] for i in share])
            b = (b.pin_memory() if self.device.type == "cuda" else b).to(self.device)  # async copy on CUDA
            sync = d.world == 1 or j == len(micro) - 1
            with contextlib.nullcontext() if sync else self.forward.no_sync():
                with self._autocast():
                    logits = self.forward(b.src, b.lengths, b.tgt_in)  # (B, T, V)
                loss = loss_fn(logits, b.tgt_out, tc.label_smoothing) * weight
                self.scaler.scale(loss * (d.world / total)).backward()
            loss_sum += loss.detach()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_norm if tc.clip_norm > 0 else math.inf)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_sum, norm.detach(), total

    def train(self) -> Progress:
        cfg, tc = self.cfg, self.cfg.train
        resumed = self.try_resume()
        p = self.progress
        self.monitor = None
        if self.dist.main:  # only rank 0 logs, validates and writes
            save_config(cfg, self.run / "config.yaml")
            self.monitor = Monitor(self.run, p.step, tc.max_steps or None, tensorboard=tc.tensorboard)
            self.log = self.log_override or self.monitor.log
        else:
            self.log = lambda *_: None
        try:
            return self._loop(resumed)
        finally:
            if self.monitor is not None:
                self.monitor.close()
            self.dist.close()

    def _loop(self, resumed: bool) -> Progress:
        tc, p = self.cfg.train, self.progress
        self.log(f"{'resuming at step ' + str(p.step) if resumed else 'training'}: {count_parameters(self.model):,} "
                 f"parameters, {len(self.train_src)} training pairs, device {self.device}"
                 f"{f' x {self.dist.world} processes' if self.dist.world > 1 else ''}"
                 f"{', amp ' + str(self.amp_dtype).replace('torch.', '') if self.amp_dtype else ''}, "
                 f"{torch.get_num_threads()} threads")
        if not self.budget_left():
            self.log(f"nothing to do: the run already ended at step {p.step} (best dev BLEU {p.best_bleu:.2f})")
            return p
        src_lens, tgt_lens = self.train_src.lengths, self.train_tgt.lengths
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        norm_sum = torch.zeros((), device=self.device)
        tok_sum, steps, t0, validated_at = 0, 0, time.perf_counter(), -1
        with _interrupt_flag() as interrupted:
            while self.budget_left():
                batches = make_batches(src_lens, tgt_lens, tc.batch_tokens, tc.seed, p.epoch)
                while p.batch < len(batches) and self.budget_left():
                    micro = batches[p.batch: p.batch + tc.accum_steps]
                    loss, norm, ntokens = self._train_step(micro)
                    p.step, p.batch = p.step + 1, p.batch + len(micro)
                    loss_sum += loss
                    norm_sum += norm
                    tok_sum, steps = tok_sum + ntokens, steps + 1
                    if p.step % tc.log_every == 0:  # the only host syncs: once per log_every steps
                        elapsed = time.perf_counter() - t0
                        stats = {"loss": self.dist.sum(loss_sum).item() / tok_sum, "tokens_per_s": tok_sum / elapsed,
                                 "lr": self.optimizer.param_groups[0]["lr"], "grad_norm": norm_sum.item() / steps}
                        self.log(f"step {p.step} epoch {p.epoch + 1}: loss {stats['loss']:.4f} "
                                 f"{stats['tokens_per_s']:,.0f} tgt tok/s lr {stats['lr']:.2e} "
                                 f"grad norm {stats['grad_norm']:.2f}")
                        if self.monitor is not None:
                            self.monitor.scalars("train", p.step, stats)
                            self.monitor.advance(loss=f"{stats['loss']:.3f}",
                                                 tok_s=f"{stats['tokens_per_s']:,.0f}", lr=f"{stats['lr']:.1e}")
                        loss_sum.zero_(), norm_sum.zero_()
                        tok_sum, steps, t0 = 0, 0, time.perf_counter()
                    elif self.monitor is not None:
                        self.monitor.advance()
                    if p.step % tc.valid_every == 0:
                        self._check()
                        validated_at = p.step
                        t0 = time.perf_counter()
                    p = self.progress  # rank 0's, after a validation
                    if interrupted.is_set():  # Ctrl-C: stop at a step boundary, keep everything
                        self.save("last")
                        self.log(f"interrupted at step {p.step}: saved {self.ckpt_dir / 'last.pt'}; "
                                 f"run train again to resume")
                        raise KeyboardInterrupt
                if p.batch >= len(batches):
                    p.epoch, p.batch = p.epoch + 1, 0
        if validated_at != p.step and not p.stopped_early:
            self._check()
            p = self.progress
        why = "early stopping" if p.stopped_early else "budget reached"
        self.log(f"finished at step {p.step} ({why}): best dev BLEU {p.best_bleu:.2f} at step {p.best_step}")
        return p


@contextlib.contextmanager
def _interrupt_flag():
    """SIGINT sets a flag instead of raising mid-step (main thread only); restored on exit."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda *_: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def train(cfg: Config, log=None) -> Progress:
    return Trainer(cfg, log).train()
