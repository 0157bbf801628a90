"""Operators dispatched per training step (forward, backward, clipping, Adam), counted with a
TorchDispatchMode on the CPU: on a GPU each is (at least) one kernel launch, and a step whose count does
not grow with the rows is launch-bound at small per-device batches. One JSON line per row count.

    python benchmarks/dispatch_count.py --rows 8,64 --positions 30

The model is the wmt14 recipe's (2 decoder layers: the eager per-position loop a GPU runs) with a small
vocabulary (the count does not depend on the sizes); fp32 and, with --amp, CPU bf16 autocast.
"""

from __future__ import annotations

import argparse
import collections

import torch
from _common import emit  # sets sys.path
from torch.utils._python_dispatch import TorchDispatchMode

from seq2seq.config.load import load_config
from seq2seq.data.batches import collate
from seq2seq.model.network import build_model
from seq2seq.training.loss import TrainingLoss


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket) + (" (view)" if func.is_view else "")] += 1
        return func(*args, **(kwargs or {}))


def step_ops(cfg, rows: int, positions: int, amp: bool) -> collections.Counter:
    torch.manual_seed(0)
    model = build_model(cfg.model, 500, 500).train()
    objective = TrainingLoss(model, 0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(1)
    src = [torch.randint(4, 500, (positions,), generator=g).tolist() for _ in range(rows)]
    b = collate(src, src)
    with Count() as count:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, _ = objective(b.src, b.lengths, b.tgt_in, b.tgt_out)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return count.ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/wmt14-en-de.yaml")
    ap.add_argument("--rows", default="8,64")
    ap.add_argument("--positions", type=int, default=30, help="source and target length")
    ap.add_argument("--amp", action="store_true", help="under CPU bf16 autocast")
    ap.add_argument("--top", type=int, default=8, help="the most frequent operators in the record")
    args = ap.parse_args()
    cfg = load_config(args.recipe, ["model.dropout=0.2"])
    torch.set_num_threads(1)
    for rows in map(int, args.rows.split(",")):
        ops = step_ops(cfg, rows, args.positions, args.amp)
        total = sum(ops.values())
        compute = {k: n for k, n in ops.items() if not k.endswith("(view)") and k != "aten.detach"}
        emit(
            {
                "figure": "dispatched_ops_per_step",
                "rows": rows,
                "positions": args.positions,
                "amp": args.amp,
                "ops": total,
                "kernels": sum(compute.values()),  # without views and detach (no kernel on a GPU)
                "kernels_per_position": round(sum(compute.values()) / args.positions, 1),
                "top": dict(collections.Counter(compute).most_common(args.top)),
            }
        )


if __name__ == "__main__":
    main()
