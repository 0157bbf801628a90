"""The train stage: build the parts (process group, tokenizers, model, optimizer, schedule, data)
in small functions and hand them to the loop in :mod:`seq2seq.training.loop`.

    train(cfg) == build_trainer(cfg).train()
"""

from __future__ import annotations

import contextlib
import random
from typing import Callable, Optional

import torch

from seq2seq.config.schema import Config, TrainConfig
from seq2seq.constants import checkpoint_file
from seq2seq.data.corpus import read_split
from seq2seq.data.sampling import SampledPairs
from seq2seq.data.token_ids import build_pairs, drop_reason, load_text, source_counts
from seq2seq.data.tokenizer import (
    Tokenizer,
    copy_parent_tokenizers,
    load_tokenizers,
    spm_paths,
    tokenizers_fingerprint,
)
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.model.compiled import training_loop
from seq2seq.model.network import Seq2Seq, build_model
from seq2seq.model.precision import choose_precision, fast_fp32_matmul, grad_scaler
from seq2seq.runs import ownership as rundir
from seq2seq.training import finetune
from seq2seq.training.cpumem import keep_freed_memory
from seq2seq.training.distributed import Dist, data_parallel, process_device
from seq2seq.training.loop import Progress, Trainer, refuse_other_settings_if_finished
from seq2seq.training.loss import TrainingLoss
from seq2seq.training.schedule import Schedule
from seq2seq.training.step import Parts, TrainData


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def setup_process(tc: TrainConfig) -> Dist:
    """Seeds, CPU threads, device (TF32 for fp32 matmuls on CUDA), the C library's memory reuse and
    (under torchrun) the process group."""
    seed_everything(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    dist = Dist(process_device(tc.device))
    if dist.device.type == "cpu":
        keep_freed_memory()  # large tensors reuse the pages of freed ones (seq2seq.training.cpumem)
    fast_fp32_matmul(dist.device)
    if dist.world > 1:
        torch.manual_seed(tc.seed + dist.rank)  # different dropout masks per rank
    return dist


def setup_parts(
    cfg: Config, src_vocab: int, tgt_vocab: int, dist: Dist, init: Optional[dict] = None
) -> Parts:
    """Model (on the device; with ``init``, those parameters: fine-tuning), what the training step calls
    (DDP wrapper, compiled decoder loop), Adam, the learning-rate schedule, and mixed precision."""
    tc = cfg.train
    model: Seq2Seq = build_model(cfg.model, src_vocab, tgt_vocab).to(dist.device)
    if init is not None:
        model.load_state_dict(init)
    forward, no_sync = TrainingLoss(model, tc.label_smoothing, training_loop(model, tc.compile)), None
    if dist.world > 1:
        forward = data_parallel(forward)  # the lengths stay on the host
        no_sync = forward.no_sync
    # fused: one kernel for all parameters (CUDA: no host syncs; CPU: a third of foreach Adam's time)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    amp_dtype, precision = choose_precision(tc.precision, dist.device)
    return Parts(
        model=model,
        forward=forward,
        no_sync=no_sync or contextlib.nullcontext,
        optimizer=optimizer,
        schedule=Schedule(tc),
        scaler=grad_scaler(amp_dtype),
        amp_dtype=amp_dtype,
        device=dist.device,
        precision=precision,
    )


def load_pairs(
    cfg: Config, split: str, src_tok: Tokenizer, tgt_tok: Tokenizer, max_len: Optional[int] = None
):
    """(source ids, target ids) of a downloaded split in memory, without empty pairs (and, with
    ``max_len``, those longer): the dev set, and small corpora in benchmarks."""
    src, tgt = read_split(cfg, split)
    pairs = [
        (s, t) for s, t in zip(src_tok.encode(src), tgt_tok.encode(tgt)) if drop_reason(s, t, max_len) is None
    ]
    return [s for s, _ in pairs], [t for _, t in pairs]


def setup_data(
    cfg: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, dist: Dist, log: Callable[[str], None]
) -> TrainData:
    """Training pairs as memory-mapped token ids (rank 0 builds them; the others wait and map them),
    sampled afresh each epoch with spm.subword_sampling (from their memory-mapped text), dev lines and ids."""
    fingerprint = tokenizers_fingerprint(src_tok, tgt_tok)
    if dist.main:
        build_pairs(cfg, src_tok, tgt_tok, fingerprint, log)
    dist.barrier()
    train_src, train_tgt = build_pairs(cfg, src_tok, tgt_tok, fingerprint, log)
    if not len(train_src):
        raise UserError("no training pairs left after filtering (train.max_len, filter_ratio, dedupe)")
    dev_lines, dev_refs = read_split(cfg, "dev")
    dev_src, dev_tgt = load_pairs(cfg, "dev", src_tok, tgt_tok)
    sampled = None
    if cfg.spm.subword_sampling:
        toks, ids = (src_tok, tgt_tok), (train_src, train_tgt)
        sampled = SampledPairs(load_text(cfg), ids, toks, cfg.spm, cfg.train.seed, cfg.train.max_len)
    shares = source_shares(cfg)
    return TrainData(train_src, train_tgt, dev_lines, dev_refs, dev_src, dev_tgt, sampled, shares)


def source_shares(cfg: Config) -> tuple[tuple[int, float], ...]:
    """(kept training pairs, weight) of each corpus of ``data.sources``; () for a single corpus."""
    if not cfg.data.sources:
        return ()
    weights = {s.name: s.weight for s in cfg.data.sources}
    return tuple((n, weights.get(name, 1.0)) for name, n in source_counts(cfg))


def load_tokenizers_of(cfg: Config, dist: Dist, log: Optional[Callable[[str], None]]):
    """The run's tokenizers; a fine-tuning run without its own gets its parent's (rank 0 copies them)."""
    if cfg.train.init_from:
        if dist.main and not spm_paths(cfg.run_path)[0].is_file():
            copy_parent_tokenizers(cfg, log or print)
        dist.barrier()
    return load_tokenizers(cfg.run_path)


def build_trainer(cfg: Config, log: Optional[Callable[[str], None]] = None) -> Trainer:
    """Every part of a training run, wired into a :class:`Trainer` (nothing trained yet)."""
    dist = setup_process(cfg.train)
    dist.check_shared(cfg.run_path)  # several nodes: rank 0 alone writes bin/ and checkpoints there
    src_tok, tgt_tok = load_tokenizers_of(cfg, dist, log)
    init = None
    if cfg.train.init_from and not checkpoint_file(cfg.run_path, "last").is_file():  # resuming wins
        say = (log or print) if dist.main else (lambda *_: None)
        init = finetune.parent_weights(cfg, (src_tok, tgt_tok), say)
    parts = setup_parts(cfg, len(src_tok), len(tgt_tok), dist, init)
    data = setup_data(cfg, src_tok, tgt_tok, dist, log or print)
    translator = Translator([parts.model], src_tok, tgt_tok, cfg, dist.device)  # validation decodes with it
    return Trainer(cfg, parts, data, dist, translator, log)


def train(cfg: Config, log: Optional[Callable[[str], None]] = None) -> Progress:
    """Train (or resume) the run of ``cfg``, holding its run directory (rank 0); returns the final progress."""
    cfg = finetune.inherit_model(cfg, log or print)
    with rundir.claim(cfg.run_path, cfg, "train"):
        refuse_other_settings_if_finished(cfg)  # before token ids or logs are written
        return build_trainer(cfg, log).train()
