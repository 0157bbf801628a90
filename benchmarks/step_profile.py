#!/usr/bin/env python3
"""Where a training step's time goes: torch.profiler over the real training step, grouped by part.

The step is seq2seq.training.step.train_step's, taken apart into labelled pieces (same calls, same order):
batch preparation (collating the sentences into tensors), the encoder (embedding, bi-GRU, bridge,
attention keys), the decoder's time loop without attention, the attention inside it, the output layer
and loss (seq2seq.training.loss: fused, with the unsmoothed train NLL the log reports), backward,
gradient clipping and Adam.
Backward time is given to the forward part that created each autograd node (the profiler's
sequence numbers link a backward node to its forward op). "python / dispatch" is the step's wall
time minus the time inside aten ops: interpreter, module calls, autograd bookkeeping (the profiler
adds some of its own).

stdout: one JSON line per part ("figure": "step_profile") and a markdown table on stderr.

    .venv/bin/python benchmarks/step_profile.py --steps 5
"""

from __future__ import annotations

import argparse
import bisect
import collections
import sys
import time
from pathlib import Path

import torch
from _common import (
    CpuShare,
    bench_config,
    busy_warning,
    data_arguments,
    emit,
    environment,
    info,
    prepare,
    resolve,
)
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from seq2seq.data.batches import collate, make_batches
from seq2seq.data.tokenizer import load_tokenizers
from seq2seq.model import teacher_forcing
from seq2seq.model.device import pick_device
from seq2seq.model.precision import autocast
from seq2seq.training.cpumem import keep_freed_memory
from seq2seq.training.distributed import Dist
from seq2seq.training.loss import linear_cross_entropy
from seq2seq.training.setup import load_pairs, seed_everything, setup_parts

PARTS = (
    "batch preparation",
    "encoder",
    "decoder steps (without attention)",
    "attention",
    "output layer + loss",
    "clip + Adam",
)
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_arguments(p)
    p.add_argument("--steps", type=int, default=5, help="profiled steps (default: 5)")
    p.add_argument("--warmup", type=int, default=2, help="unprofiled steps first (default: 2)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="extra recipe override key=value")
    return p.parse_args(argv)


class Scope:
    """A forward hook pair that opens a profiler range around a module's forward (benchmark only)."""

    def __init__(self, module: torch.nn.Module, name: str):
        self.name, self.open = name, []
        module.register_forward_pre_hook(self.enter)
        module.register_forward_hook(self.exit)

    def enter(self, *_):
        rf = record_function(self.name)
        rf.__enter__()
        self.open.append(rf)

    def exit(self, *_):
        self.open.pop().__exit__(None, None, None)


def profiled_step(parts, model, idx, src, tgt, lr, tc):
    """seq2seq.training.step.train_step for one batch, in labelled ranges."""
    with record_function("batch preparation"):
        b = collate([src[i] for i in idx], [tgt[i] for i in idx]).to(parts.device)
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    parts.optimizer.zero_grad(set_to_none=True)
    dec = model.decoder
    with autocast(parts.device, parts.amp_dtype):  # seq2seq.training.loss.TrainingLoss.forward, in pieces
        with record_function("encoder"):
            state = model.encode(b.src, b.lengths)
        with record_function("decoder steps (without attention)"):
            feeds = dec(b.tgt_in, state)  # (B, T, H)
        with record_function("output layer + loss"):
            x = dec.pre_output(feeds) if dec.pre_output is not None else feeds
            loss, nll = linear_cross_entropy(
                x, dec.output.weight, dec.output.bias, b.tgt_out, tc.label_smoothing
            )
    with record_function("backward"):
        parts.scaler.scale(loss / b.ntokens).backward()
    with record_function("clip + Adam"):
        parts.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), tc.clip_norm or float("inf"))
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    return b.ntokens, nll


def attribute(events) -> tuple[dict, dict, float]:
    """Forward and backward microseconds per part, and microseconds inside aten ops (self time)."""
    ranges = sorted(
        ((e.time_range.start, e.time_range.end, e.name) for e in events if e.name in PARTS),
        key=lambda r: r[0],
    )
    starts = [r[0] for r in ranges]

    def part_at(t: float) -> str:
        """The innermost labelled range holding time t (attention sits inside decoder steps)."""
        best = None
        for k in range(bisect.bisect_right(starts, t) - 1, -1, -1):
            s, e, name = ranges[k]
            if s <= t <= e:
                best = name if best is None or name == "attention" else best
                if name == "attention":
                    break
            if e < t and best is not None:
                break
        return best or "other"

    seq_part, fwd, bwd, aten_self = {}, collections.Counter(), collections.Counter(), 0.0
    for e in events:
        if e.name.startswith("aten::"):
            aten_self += e.self_cpu_time_total
        # aten ops and the custom autograd nodes (seq2seq.model.encoder_gru, seq2seq.model.teacher_forcing)
        if (
            e.sequence_nr >= 0
            and not e.name.startswith(BACKWARD_PREFIX)
            and not e.name.startswith("autograd::")
        ):
            seq_part.setdefault(e.sequence_nr, part_at(e.time_range.start))
    for s, e, name in ranges:
        fwd[name] += e - s
    for e in events:
        if e.name.startswith(BACKWARD_PREFIX):
            part = seq_part.get(e.sequence_nr, "clip + Adam" if "AccumulateGrad" in e.name else "other")
            bwd[part] += e.cpu_time_total
    fwd["decoder steps (without attention)"] -= fwd["attention"]
    return fwd, bwd, aten_self


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device("cpu")
    keep_freed_memory()  # as training's setup_process does
    cfg = bench_config(
        Path(args.recipe), resolve(args.workdir), [f"train.precision={args.precision}", *args.set]
    )
    prepare(cfg, resolve(args.mirror))
    src_tok, tgt_tok = load_tokenizers(cfg.run_path)
    tc = cfg.train
    src, tgt = load_pairs(cfg, "train", src_tok, tgt_tok, tc.max_len)
    order = make_batches([len(s) for s in src], [len(t) for t in tgt], tc.batch_tokens, tc.seed, 0)
    seed_everything(tc.seed)
    parts = setup_parts(cfg, len(src_tok), len(tgt_tok), Dist(device))
    model = parts.model.train()
    Scope(model.decoder.attention, "attention")
    for k in range(args.warmup):
        profiled_step(parts, model, order[k], src, tgt, tc.lr, tc)
    cpu = CpuShare()
    batches = order[args.warmup : args.warmup + args.steps]
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tokens = sum(profiled_step(parts, model, idx, src, tgt, tc.lr, tc)[0] for idx in batches)
    wall_us = (time.perf_counter() - t0) * 1e6
    busy = cpu.other_busy()
    busy_warning(busy, "the profiled steps")
    fwd, bwd, aten_self = attribute(prof.events())
    env = environment(device)
    rows = []
    # the attention runs inside the decoder loop's one autograd node (fp32 on the CPU)
    one_node = teacher_forcing.applies(model.decoder, device) and parts.amp_dtype is None
    for part in (*PARTS, "other"):
        total = fwd[part] + bwd[part]
        if (part == "other" or (part == "attention" and one_node)) and total == 0:
            continue
        label = "decoder steps (with attention: one node)" if one_node and part == PARTS[2] else part
        rows.append((label, fwd[part], bwd[part], total))
    rows.append(("python / dispatch (outside aten ops)", 0.0, 0.0, max(wall_us - aten_self, 0.0)))
    n = len(batches)
    info(f"{n} steps, {tokens} target tokens, {tokens / wall_us * 1e6:.0f} tok/s under the profiler")
    print("| part | forward ms/step | backward ms/step | total ms/step | share |", file=sys.stderr)
    print("|---|---:|---:|---:|---:|", file=sys.stderr)
    for part, f, b, total in rows:
        share = total / wall_us
        print(
            f"| {part} | {f / n / 1e3:.0f} | {b / n / 1e3:.0f} | {total / n / 1e3:.0f} | {share:.0%} |",
            file=sys.stderr,
        )
        emit(
            {
                "figure": "step_profile",
                "part": part,
                "forward_ms_per_step": round(f / n / 1e3, 1),
                "backward_ms_per_step": round(b / n / 1e3, 1),
                "total_ms_per_step": round(total / n / 1e3, 1),
                "share_of_step": round(share, 3),
                "step_ms": round(wall_us / n / 1e3, 1),
                "tgt_tok_per_s_under_profiler": round(tokens / wall_us * 1e6, 1),
                "precision": args.precision,
                "other_cpu_busy": busy,
                **env,
                "num_threads": torch.get_num_threads(),
                "overrides": args.set,
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
