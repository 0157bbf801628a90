"""Peak memory and time of the data path on a large synthetic corpus (default 5 million pairs).

Generates English/German number sentences with seq2seq.data.embedded (streamed to disk), then runs each
stage in its own process and reports its wall time and peak RSS: the download stage (local files,
streamed), SentencePiece training on a sample (spm.input_sentence_size), building the memory-mapped
token ids (seq2seq.data.token_ids), and iterating one epoch of length-bucketed batches (collated tensors).
One JSON line per stage on stdout.

    .venv/bin/python benchmarks/corpus_memory.py --pairs 5000000
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGES = {
    "download": "from seq2seq.data import download; download(cfg, log=lambda *_: None)",
    "spm": "from seq2seq.data.tokenizer import train_tokenizers; train_tokenizers(cfg, log=lambda *_: None)",
    "token_ids": (
        "from seq2seq.data.tokenizer import load_tokenizers; from seq2seq.data.token_ids import build_pairs\n"
        "from seq2seq.data.tokenizer import tokenizers_fingerprint\n"
        "s, t = load_tokenizers(cfg.run_path)\n"
        "build_pairs(cfg, s, t, tokenizers_fingerprint(s, t), log=lambda *_: None)"
    ),
    "epoch_of_batches": (
        "from seq2seq.data.tokenizer import load_tokenizers; from seq2seq.data.token_ids import build_pairs\n"
        "from seq2seq.data.tokenizer import tokenizers_fingerprint\n"
        "from seq2seq.data.batches import make_batches, collate\n"
        "s, t = load_tokenizers(cfg.run_path)\n"
        "src, tgt = build_pairs(cfg, s, t, tokenizers_fingerprint(s, t), log=lambda *_: None)\n"
        "n = 0\n"
        "for idx in make_batches(src.lengths, tgt.lengths, cfg.train.batch_tokens, 1, 0):\n"
        "    n += collate([src[i] for i in idx], [tgt[i] for i in idx]).ntokens\n"
        "print('target tokens', n, file=sys.stderr)"
    ),
}


def generate(folder: Path, pairs: int, seed: int = 7) -> None:
    from seq2seq.data.embedded import _sentence

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sizes = {"train": pairs, "dev": 1000, "test": 1000}
    for split, n in sizes.items():
        with (
            open(folder / f"{split}.en", "w", encoding="utf-8") as en,
            open(folder / f"{split}.de", "w", encoding="utf-8") as de,
        ):
            for _ in range(n):
                a, b = _sentence(rng)
                en.write(a + "\n")
                de.write(b + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5_000_000)
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench-memory")
    ap.add_argument("--spm-sample", type=int, default=1_000_000, help="spm.input_sentence_size")
    ap.add_argument("--stages", default=",".join(STAGES))
    args = ap.parse_args()
    raw = args.workdir / f"raw-{args.pairs}"
    if not (raw / "train.de").is_file():
        t0 = time.perf_counter()
        generate(raw, args.pairs)
        print(f"generated {args.pairs} pairs in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    overrides = [
        "data.source=text",
        f"data.url={raw}",
        "data.file_pattern={split}.{lang}",
        "data.splits={train: train, dev: dev, test: test}",
        f"data.dir={args.workdir}/corpus",
        f"run_dir={args.workdir}/run",
        "spm.vocab_size=1000",
        f"spm.input_sentence_size={args.spm_sample}",
        "batch_tokens=4096",
        "dedupe=true",
    ]
    for stage in args.stages.split(","):
        code = (
            f"import sys; from seq2seq.config import load_config\n"
            f"cfg = load_config({str(ROOT / 'recipes' / 'default.yaml')!r}, {overrides!r})\n" + STAGES[stage]
        )
        code += "\nimport resource; print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"stage {stage} failed")
        peak_kb = int(proc.stdout.split("PEAK_RSS_KB")[-1])
        print(
            json.dumps(
                {
                    "benchmark": "corpus_memory",
                    "stage": stage,
                    "pairs": args.pairs,
                    "seconds": round(seconds, 1),
                    "peak_rss_mb": round(peak_kb / 1024, 1),
                    "python": platform.python_version(),
                    "spm_sample": args.spm_sample,
                    "batch_tokens": 4096,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
