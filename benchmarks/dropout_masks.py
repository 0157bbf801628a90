#!/usr/bin/env python3
"""Dropout on the CPU: ``nn.Dropout`` against seq2seq.model.dropout.Dropout, forward + backward, per shape.

The shapes are what one 2048-token training step of the CPU recipes' model drops (~110 sentences,
~20 source and ~18 target positions): the source embeddings (B, S, 256), the encoder's outputs
(B, S, 512), the target embeddings (B, T, 256) and one decoder position's attentional vector (B, 256),
which is dropped once per target position. Both modules run side by side in one process, alternately,
--repeats times each; the figure is the median. No model, no corpus.

stdout: one JSON line per shape ("figure": "dropout_masks") and one for a whole step's masks.

    .venv/bin/python benchmarks/dropout_masks.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _common import CpuShare, busy_warning, emit, environment, info

from seq2seq.model.dropout import Dropout

# (name, shape, calls per training step) for 110 sentences, 20 source / 18 target positions
SHAPES = [
    ("source embeddings", (110, 20, 256), 1),
    ("encoder outputs", (110, 20, 512), 1),
    ("target embeddings", (110, 18, 256), 1),
    ("attentional vector, one position", (110, 256), 18),
]


def seconds(module: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """Forward + backward of one dropout of ``shape``."""
    x = torch.randn(shape, requires_grad=True)
    grad = torch.ones(shape)
    start = time.perf_counter()
    module(x).backward(grad)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--p", type=float, default=0.3, help="dropout probability (default: the recipes' 0.3)"
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed runs of each module per shape")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    modules = {"nn.Dropout": torch.nn.Dropout(args.p).train(), "seq2seq Dropout": Dropout(args.p).train()}
    env = environment(torch.device("cpu"))
    cpu = CpuShare()
    step = dict.fromkeys(modules, 0.0)
    for name, shape, calls in SHAPES:
        times = {m: [] for m in modules}
        for _ in range(args.repeats + 1):  # the first round warms up
            for m, module in modules.items():
                times[m].append(seconds(module, shape))
        ms = {m: statistics.median(t[1:]) * 1e3 for m, t in times.items()}
        for m in modules:
            step[m] += ms[m] * calls
        info(f"{name} {shape}: " + ", ".join(f"{m} {v:.3f} ms" for m, v in ms.items()))
        emit(
            {
                "figure": "dropout_masks",
                "tensor": name,
                "shape": list(shape),
                "calls_per_step": calls,
                "ms_fwd_bwd": {m: round(v, 4) for m, v in ms.items()},
                "speedup": round(ms["nn.Dropout"] / ms["seq2seq Dropout"], 2),
                "p": args.p,
                "num_threads": torch.get_num_threads(),
                **env,
            }
        )
    busy = cpu.other_busy()
    busy_warning(busy, "the timed runs")
    emit(
        {
            "figure": "dropout_masks_per_step",
            "ms_per_step": {m: round(v, 2) for m, v in step.items()},
            "saved_ms_per_step": round(step["nn.Dropout"] - step["seq2seq Dropout"], 2),
            "p": args.p,
            "num_threads": torch.get_num_threads(),
            "other_cpu_busy": busy,
            **env,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
