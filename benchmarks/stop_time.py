"""How long the save a signal triggers takes (Trainer._stop: last.pt with Adam's state) for a recipe's
model, against torchrun's ~30 s between forwarding a signal and killing the workers. One JSON line.

    python benchmarks/stop_time.py --recipe recipes/wmt14-en-de.yaml --vocab 32000 --out /tmp/stop
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import cpu_name, emit  # sets sys.path

from seq2seq.config.load import load_config
from seq2seq.model.network import build_model, count_parameters
from seq2seq.runs import checkpoint as ckpt_io


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/wmt14-en-de.yaml")
    ap.add_argument("--vocab", type=int, default=32000, help="pieces per side (the recipe's spm.vocab_size)")
    ap.add_argument("--out", default="data/bench/stop", help="folder for the checkpoint written")
    args = ap.parse_args()
    cfg = load_config(args.recipe)
    model = build_model(cfg.model, args.vocab, args.vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # Adam's state: exp_avg and exp_avg_sq for every parameter
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    ckpt_io.save(out / "last.pt", payload)
    seconds = time.perf_counter() - start
    size = (out / "last.pt").stat().st_size
    emit(
        {
            "figure": "stop_save_s",
            "recipe": args.recipe,
            "parameters": count_parameters(model),
            "bytes": size,
            "seconds": round(seconds, 2),
            "cpu": cpu_name(),
        }
    )
    (out / "last.pt").unlink()


if __name__ == "__main__":
    main()
