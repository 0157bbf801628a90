"""Single-sentence latency of seq2seq's Python API, for translate_compare.py (run as its own process,
so that its threads and memory are its own).

``Translator.load(RUN_DIR, checkpoint, device="cpu")``, the decode settings of the run with
``beam_size`` and ``length_penalty`` set (``Translator.decode_config``), then ``translate(line, dc)``
for each line of FILE alone, after ``--warmup`` untimed lines. Writes {"torch", "threads", "seconds":
[...]} to ``--out``: each call's wall time (SentencePiece encoding, search, decoding).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("file")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--beam", type=int, required=True)
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--checkpoint", default="last")
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()

    import torch

    from seq2seq import Translator

    if args.threads:
        torch.set_num_threads(args.threads)
    translator = Translator.load(args.run_dir, args.checkpoint, device="cpu")
    dc = translator.decode_config(beam_size=args.beam, length_penalty=args.alpha)
    lines = Path(args.file).read_text(encoding="utf-8").split("\n")[:-1]
    for line in lines[: args.warmup]:
        translator.translate(line, dc)
    seconds = []
    for line in lines:
        t0 = time.perf_counter()
        translator.translate(line, dc)
        seconds.append(time.perf_counter() - t0)
    Path(args.out).write_text(
        json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "seconds": seconds})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
