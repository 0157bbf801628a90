#!/usr/bin/env python3
"""The ablation table: what each classic piece of a recurrent NMT model buys, on Multi30k de->en.

Every row trains the recipe's model (default: recipes/multi30k-de-en.yaml, bi-GRU 2x256 encoder,
LSTM 512 decoder, additive attention, input feeding) with one change, for the same fixed budget
(``--steps`` x ``--batch-tokens``, cosine schedule), into its own run directory
``<workdir>/<row>/run``. Decoding is chosen on dev only (``tune-decode``: beam x length penalty, and
for the coverage-penalty row the penalty too); the test sets are then decoded once with that choice.
Per row: test_2016 BLEU and chrF, dev BLEU of the chosen decoding, parameters, training tokens/s (the
mean of the logged windows), the largest logged gradient norm (a window's mean and a single step's,
before clipping) and the wall time. Rows that finished are reused when the script is run again
(delete the row's folder to retrain it).

stdout: one JSON line per row, then the table as markdown (also written to ``<workdir>/ablation.md``).

    .venv/bin/python benchmarks/ablation.py                      # the whole table (~10 min a row on 2 cores)
    .venv/bin/python benchmarks/ablation.py --rows default,no-attention --steps 50   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from _common import ROOT, data_arguments, emit, info, resolve

from seq2seq.config.load import load_config, with_decode
from seq2seq.data.corpus import MANIFEST, download, read_split
from seq2seq.data.tokenizer import spm_paths, train_tokenizers
from seq2seq.errors import UserError
from seq2seq.evaluation.metrics import score
from seq2seq.evaluation.stage import evaluate
from seq2seq.evaluation.tune import tune_decode
from seq2seq.model.network import build_model, count_parameters
from seq2seq.training.setup import train

# row name -> (what it changes, recipe overrides); the default row's model also serves the coverage
# penalty row, which changes decoding only
ROWS = {
    "default": ("bi-GRU 2x256 encoder, LSTM 512 decoder, additive attention, input feeding", []),
    "no-attention": (
        "no attention: the encoder's final state is every step's context",
        ["model.attention=none"],
    ),
    "no-input-feeding": ("attention without input feeding", ["model.input_feeding=false"]),
    "dot-attention": ("dot attention", ["model.attention=dot"]),
    "general-attention": ("general attention", ["model.attention=general"]),
    "unidirectional": ("unidirectional encoder (GRU 2x256, forward only)", ["model.bidirectional=false"]),
    "one-encoder-layer": ("one encoder layer instead of two", ["model.enc_layers=1"]),
    "lstm-encoder": ("LSTM encoder", ["model.enc_cell=lstm"]),
    "gru-decoder": ("GRU decoder", ["model.dec_cell=gru"]),
    "rnn-cells": ("vanilla (tanh) RNN encoder and decoder", ["model.enc_cell=rnn", "model.dec_cell=rnn"]),
    "coverage": ("coverage vector in the attention (Tu et al. 2016)", ["model.coverage=true"]),
    "coverage-penalty": ("the default model, coverage penalty in beam search (Wu et al. 2016)", []),
    "no-clipping": ("no gradient clipping (clip_norm 0)", ["train.clip_norm=0"]),
}
COVERAGE_PENALTIES = (0.1, 0.2, 0.4)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_arguments(p, ROOT / "data" / "ablation")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names (default: all)")
    p.add_argument("--steps", type=int, default=400, help="training steps per row (default: 400)")
    p.add_argument("--batch-tokens", type=int, default=2048, help="tokens per batch (default: 2048)")
    p.add_argument("--lr", type=float, default=0.002, help="peak learning rate (default: 0.002)")
    p.add_argument("--beams", default="1,5", help="beam sizes tune-decode tries on dev (default: 1,5)")
    p.add_argument("--alphas", default="0.6,1.0,1.5", help="length penalties tried on dev")
    p.add_argument("--set", action="append", default=[], help="another override for every row")
    args = p.parse_args(argv)
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; rows: {', '.join(ROWS)}")
    return args


def row_config(args, workdir: Path, row: str):
    model_row = "default" if row == "coverage-penalty" else row
    budget = [
        f"train.max_steps={args.steps}",
        f"train.batch_tokens={args.batch_tokens}",
        f"train.lr={args.lr}",
        "train.lr_schedule=cosine",
        f"train.warmup_steps={max(1, args.steps // 10)}",
        "train.min_lr=0.00005",
        f"train.valid_every={max(1, args.steps // 2)}",
        f"train.log_every={max(1, args.steps // 10)}",
        "train.patience=0",
        "train.precision=auto",
        "train.tensorboard=false",
    ]
    return load_config(
        args.recipe,
        [
            f"data.dir={workdir / 'corpus'}",
            f"run_dir={workdir / model_row / 'run'}",
            *budget,
            *ROWS[model_row][1],
            *args.set,
        ],
    )


def train_row(cfg, log) -> float:
    """Tokenizers, then training, unless the run finished before; returns the training seconds."""
    done = cfg.run_path / "checkpoints" / "best.pt"
    marker = cfg.run_path / "ablation-train-seconds"
    if done.is_file() and marker.is_file():
        return float(marker.read_text())
    src, tgt = spm_paths(cfg.run_path)
    if not (src.is_file() and tgt.is_file()):
        train_tokenizers(cfg, log=log)
    start = time.perf_counter()
    train(cfg, log=log)
    seconds = time.perf_counter() - start
    marker.write_text(f"{seconds:.1f}\n")
    return seconds


def logged(cfg) -> tuple[float, float, float | None]:
    """Mean training tokens/s, the largest logged gradient norm (a log window's mean) and the largest
    single step's (None for a run logged before metrics.jsonl had ``grad_norm_max``)."""
    rows = [json.loads(x) for x in (cfg.run_path / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train_rows = [r for r in rows if r.get("kind") == "train"]
    toks = [r["tokens_per_s"] for r in train_rows]
    step_max = [r["grad_norm_max"] for r in train_rows if "grad_norm_max" in r]
    return (
        sum(toks) / max(len(toks), 1),
        max((r["grad_norm"] for r in train_rows), default=float("nan")),
        max(step_max) if step_max and len(step_max) == len(train_rows) else None,
    )


def choose_coverage_penalty(cfg, best: dict, log) -> tuple[float, float]:
    """Dev BLEU of each coverage penalty at the dev-chosen beam (> 1) and length penalty -> the best
    (beta, BLEU)."""
    from seq2seq.decode.translator import Translator

    translator = Translator.from_run_dirs([cfg.run_path], cfg.decode.checkpoint, cfg.train.device)
    src, ref = read_split(cfg, "dev")
    scores = {}
    for beta in COVERAGE_PENALTIES:
        dc = dataclasses.replace(
            cfg.decode,
            beam_size=best["beam_size"],
            length_penalty=best["length_penalty"],
            coverage_penalty=beta,
        )
        scores[beta] = score(translator.translate(src, dc), ref, cfg.data.tgt_lang, dc.bleu_tokenize)["bleu"]
        log(f"coverage penalty {beta}: dev BLEU {scores[beta]:.2f}")
    beta = max(scores, key=lambda b: (scores[b], -b))
    return beta, scores[beta]


def test_scores(cfg, split: str) -> dict:
    from seq2seq.decode.translator import Translator

    translator = Translator.from_run_dirs([cfg.run_path], cfg.decode.checkpoint, cfg.train.device)
    src, ref = read_split(cfg, split)
    return score(translator.translate(src, cfg.decode), ref, cfg.data.tgt_lang, cfg.decode.bleu_tokenize)


def run_row(args, workdir: Path, row: str) -> dict:
    cfg = row_config(args, workdir, row)
    log = lambda msg: info(f"[{row}] {msg}")  # noqa: E731
    wall = time.perf_counter()
    seconds = train_row(cfg, log)
    beams = [int(b) for b in args.beams.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    if row == "coverage-penalty":  # the penalty re-ranks a beam's hypotheses: greedy has none to re-rank
        beams = [b for b in beams if b > 1] or [5]
    best = tune_decode(cfg, beams, alphas, "dev", log=log)  # dev only
    decode = {"beam_size": best["beam_size"], "length_penalty": best["length_penalty"]}
    dev_bleu = best["bleu"]
    if row == "coverage-penalty":
        beta, dev_bleu = choose_coverage_penalty(cfg, best, log)
        decode["coverage_penalty"] = beta
    if row == "coverage-penalty":  # the default row's run: score without rewriting its results.json
        split = cfg.test_sets[0]
        test = test_scores(with_decode(cfg, **decode), split)
    else:
        results = evaluate(with_decode(cfg, **decode), log=log)
        split, test = next(iter(results["tests"].items()))
    tok_s, max_norm, max_step_norm = logged(cfg)
    return {
        "figure": "ablation",
        "row": row,
        "change": ROWS[row][0],
        "test_split": split,
        "test_bleu": test["bleu"],
        "test_chrf": test["chrf"],
        "dev_bleu": dev_bleu,
        "decode": decode,
        "params": count_parameters(build_model(cfg.model, *vocab_sizes(cfg))),
        "tgt_tok_per_s": round(tok_s, 1),
        "max_logged_grad_norm": round(max_norm, 2),
        "max_step_grad_norm": None if max_step_norm is None else round(max_step_norm, 2),
        "train_seconds": round(seconds, 1),
        "row_seconds": round(time.perf_counter() - wall, 1),
        "steps": args.steps,
        "batch_tokens": args.batch_tokens,
        "run_dir": str(cfg.run_path),
    }


def vocab_sizes(cfg) -> tuple[int, int]:
    from seq2seq.data.tokenizer import load_tokenizers

    src, tgt = load_tokenizers(cfg.run_path)
    return len(src), len(tgt)


def markdown(records: list[dict], cpu: str) -> str:
    lines = [
        f"Multi30k de->en, {records[0]['steps']} steps of {records[0]['batch_tokens']} tokens per row, "
        f"decoding chosen on dev; {cpu}.",
        "",
        "| row | test BLEU | test chrF | dev BLEU | decoding (dev-chosen) | params | tok/s | "
        f"max grad norm ({max(1, records[0]['steps'] // 10)}-step mean / one step) |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in records:
        dec = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["decode"].items())
        lines.append(
            f"| {r['change']} | {r['test_bleu']:.2f} | {r['test_chrf']:.2f} | {r['dev_bleu']:.2f} | {dec} | "
            f"{r['params'] / 1e6:.2f}M | {r['tgt_tok_per_s']:,.0f} | {r['max_logged_grad_norm']:.1f}"
            + (" |" if r.get("max_step_grad_norm") is None else f" / {r['max_step_grad_norm']:.1f} |")
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run_table(args)
    except UserError as e:  # a bad override or budget: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


def run_table(args) -> int:
    from _common import cpu_name

    workdir = resolve(args.workdir)
    first = row_config(args, workdir, "default")
    if not (first.data_dir / MANIFEST).is_file():
        download(first, mirror=resolve(args.mirror), log=info)
    records = []
    for row in args.rows.split(","):
        records.append(run_row(args, workdir, row))
        emit(records[-1])
    table = markdown(records, cpu_name())
    (workdir / "ablation.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
