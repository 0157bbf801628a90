#!/usr/bin/env python3
"""Where beam search spends its time: a profile of translating a file, part by part, and how close the
decoder's matrix products come to this CPU's fp32 matmul peak.

    .venv/bin/python benchmarks/decode_profile.py                      # random model, CPU recipe's size
    .venv/bin/python benchmarks/decode_profile.py data/multi30k-de-en-cpu/run --limit 0

The model is RUN_DIR's best checkpoint or, without it, a random-weight model of the recipe's
architecture (default recipes/multi30k-de-en-cpu.yaml) with the recipe's SentencePiece model, trained on
the corpus on first use (under --workdir). The source lines are the corpus' test split
(Multi30k test_2016_flickr), the first --limit of them. A random model rarely emits EOS, so nearly
every sentence runs to its length limit: the parts' shares are those of long outputs.

How it is measured: the search (seq2seq.decode.translator.decode_ids, length-sorted batches) runs once
untimed, once timed without the profiler (the total, the FLOP rate), and once under torch.profiler
with record_function ranges: around ``encode`` and ``decode_step`` (a wrapper of the model) and, by
module hooks, around the attention (with the attentional vector's ``combine`` layer) and the output
layer. The parts are these ranges' wall times, with the ops found by name (aten::log_softmax inside the
step, aten::topk in the search) moved to the output row:

- encoder: ``encode`` (embedding, bi-GRU, bridge, attention keys)
- decoder step (LSTM): ``decode_step`` without the attention, the output layer and the log-softmax
- attention: scores, softmax, context, ``combine``
- output layer + log-softmax + top-k
- beam bookkeeping / Python: the rest of the search (candidate sums, selection, reordering rows, host
  transfers, the interpreter)
- SentencePiece: encoding the lines and decoding the best hypotheses (timed without the profiler)

The profiler adds a few microseconds to every op, most to the parts made of many small ops (the
bookkeeping): the shares are of the profiled pass, ``total_ms`` of the unprofiled one.

FLOPs are counted analytically from the model's sizes, 2 per multiply-add, matrix products only.
One decoder step of one beam row over a source of S positions (E embedding, H decoder, M = 2He memory,
A attention width, L layers, V vocabulary, G gates: 4 LSTM, 3 GRU, 1 RNN; F = H with input feeding):

    step(S) = 2 G H (E + F + H) + 2 (L - 1) G H (2 H)        recurrences
            + 2 H A + 2 S A + 2 S M                          additive attention: query, v . tanh, context
              (general: 2 S H + 2 S M; dot: 4 S M; none: 0; coverage: + 2 S A)
            + 2 H (M + H)                                    combine
            + 2 H E + 2 E V  (tied: pre_output, output)      or 2 H V untied

and the encoder per source piece 2 G_e He (In + He) per layer and direction (In = E, then 2He) plus
the keys 2 M A. decode FLOPs per target token = (sum over steps of rows x step(S) + encoder) / output
pieces of the best hypotheses (EOS included where produced); the rate is those FLOPs over the
unprofiled pass's search time. The peak is the best of 5 square fp32 torch.matmul of --peak-size, with
the same threads, run right before and right after that pass.

stdout: one JSON line per part ("figure": "decode_profile") and one "figure": "decode_flops" line;
a table on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from _common import (
    DEFAULT_MIRROR,
    ROOT,
    CpuShare,
    bench_config,
    busy_warning,
    emit,
    environment,
    info,
    prepare,
    resolve,
)
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from seq2seq.config.schema import ModelConfig
from seq2seq.data.corpus import read_split
from seq2seq.data.tokenizer import load_tokenizers
from seq2seq.decode.loading import load_run
from seq2seq.decode.translator import decode_ids
from seq2seq.model.network import build_model, count_parameters
from seq2seq.training.setup import seed_everything

PARTS = (
    "encoder",
    "decoder step (LSTM)",
    "attention",
    "output layer + log-softmax + top-k",
    "beam bookkeeping / Python",
    "SentencePiece encode + decode",
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", default="", help="a trained run directory (default: random weights)")
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "multi30k-de-en-cpu.yaml"))
    p.add_argument("--mirror", default=str(DEFAULT_MIRROR), help="corpus mirror folder")
    p.add_argument("--workdir", default=str(ROOT / "data" / "bench-cpu"), help="corpus and SentencePiece")
    p.add_argument("--split", default="test", help="corpus split to translate (default: test)")
    p.add_argument("--limit", type=int, default=200, help="the first N source lines (0: all; default 200)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--peak-size", type=int, default=2048, help="square matmul size for the peak")
    p.add_argument("--seed", type=int, default=1, help="random model's initialization seed")
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


class Ranged:
    """The model for search, its ``encode`` and ``decode_step`` in profiler ranges; counts the FLOPs of
    what it runs (``flops``, by :func:`step_flops` and :func:`encoder_flops`)."""

    def __init__(self, model):
        self.model, self.flops, self.steps, self.rows = model, 0, 0, 0

    def encode(self, src, lengths):
        self.flops += encoder_flops(self.model.cfg, int(lengths.sum())) + bridge_flops(
            self.model.cfg, src.size(0)
        )
        with record_function("encoder"):
            return self.model.encode(src, lengths)

    def decode_step(self, prev, state):
        self.steps, self.rows = self.steps + 1, self.rows + prev.size(0)
        self.flops += prev.size(0) * step_flops(self.model.cfg, self.vocab, state.memory.size(1))
        with record_function("decoder step"):
            return self.model.decode_step(prev, state)

    @property
    def vocab(self) -> int:
        return self.model.decoder.output.out_features


def gates(cell: str) -> int:
    return {"lstm": 4, "gru": 3}.get(cell, 1)


def step_flops(cfg: ModelConfig, V: int, S: int) -> int:
    """Matmul FLOPs of one decoder step of one row over S source positions (the module's docstring)."""
    E, H, L, A, M, G = (
        cfg.emb_dim,
        cfg.dec_hidden,
        cfg.dec_layers,
        cfg.attn_dim,
        cfg.memory_dim,
        gates(cfg.dec_cell),
    )
    F = H if cfg.input_feeding else 0
    flops = 2 * G * H * (E + F + H) + 2 * (L - 1) * G * H * 2 * H
    if cfg.attention == "additive":
        flops += 2 * H * A + 2 * S * A + 2 * S * M + (2 * S * A if cfg.coverage else 0)
    elif cfg.attention == "general":
        flops += 2 * S * H + 2 * S * M
    elif cfg.attention == "dot":
        flops += 4 * S * M
    flops += 2 * H * (M + H)
    flops += 2 * H * E + 2 * E * V if cfg.tie_embeddings else 2 * H * V
    return flops


def encoder_flops(cfg: ModelConfig, tokens: int) -> int:
    """Matmul FLOPs of encoding ``tokens`` source pieces (padding skipped) and their attention keys."""
    He, dirs, G = cfg.enc_hidden, 2 if cfg.bidirectional else 1, gates(cfg.enc_cell)
    per = sum(
        2 * G * He * ((cfg.emb_dim if i == 0 else dirs * He) + He) * dirs for i in range(cfg.enc_layers)
    )
    keys = {"additive": 2 * cfg.memory_dim * cfg.attn_dim, "general": 2 * cfg.memory_dim * cfg.dec_hidden}
    return tokens * (per + keys.get(cfg.attention, 0))


def bridge_flops(cfg: ModelConfig, sentences: int) -> int:
    states = (2 if cfg.dec_cell == "lstm" else 1) * cfg.dec_layers * cfg.dec_hidden
    return sentences * 2 * cfg.memory_dim * states


def matmul_peak(n: int) -> float:
    """FLOP/s of the best of 5 square fp32 (n x n) @ (n x n) products, after one warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def attribute(events) -> dict[str, float]:
    """Microseconds per part from the profiled pass's events (see the module's docstring)."""
    spans = {"encoder": 0.0, "decoder step": 0.0, "attention": 0.0, "output layer": 0.0}
    ops = {"aten::log_softmax": 0.0, "aten::topk": 0.0}
    for e in events:
        if e.name in spans:
            spans[e.name] += e.time_range.end - e.time_range.start
        elif e.name in ops:
            ops[e.name] += e.cpu_time_total
    return {
        "encoder": spans["encoder"],
        "decoder step (LSTM)": spans["decoder step"]
        - spans["attention"]
        - spans["output layer"]
        - ops["aten::log_softmax"],
        "attention": spans["attention"],
        "output layer + log-softmax + top-k": spans["output layer"]
        + ops["aten::log_softmax"]
        + ops["aten::topk"],
        "search": spans["encoder"] + spans["decoder step"] + ops["aten::topk"],  # bookkeeping: the rest
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    cfg = bench_config(Path(args.recipe), resolve(args.workdir))
    prepare(cfg, resolve(args.mirror) if args.mirror else None)
    lines = [x for x in read_split(cfg, args.split)[0] if x.strip()]
    lines = lines[: args.limit] if args.limit else lines
    if args.run_dir:
        run_dir = resolve(args.run_dir)
        run_cfg, model = load_run(run_dir, "best", device)
        src_tok, tgt_tok = load_tokenizers(run_dir)
        arch, base_dc, desc = run_cfg.model, run_cfg.decode, f"trained: {run_dir} (best.pt)"
    else:
        src_tok, tgt_tok = load_tokenizers(cfg.run_path)
        seed_everything(args.seed)
        model = build_model(cfg.model, len(src_tok), len(tgt_tok)).eval()
        arch, base_dc = cfg.model, cfg.decode
        desc = f"random weights (seed {args.seed}), architecture of {Path(args.recipe).name}"
    dc = dataclasses.replace(base_dc, beam_size=args.beam, n_best=1, batch_size=args.batch_size)
    ranged = Ranged(model)
    Scope(model.decoder.attention, "attention")
    Scope(model.decoder.combine, "attention")
    Scope(model.decoder.output, "output layer")
    if model.decoder.pre_output is not None:
        Scope(model.decoder.pre_output, "output layer")

    t0 = time.perf_counter()
    ids = src_tok.encode(lines)
    spm_s = time.perf_counter() - t0
    info(f"{len(lines)} lines, {sum(map(len, ids))} source pieces; warm-up pass")
    decode_ids(ranged, ids, dc, device)  # untimed: allocator and kernels warm
    ranged.flops = ranged.steps = ranged.rows = 0
    peak = matmul_peak(args.peak_size)  # right before and after the timed pass: the best of both
    cpu = CpuShare()
    t0 = time.perf_counter()
    hyps = decode_ids(ranged, ids, dc, device)
    search_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tgt_tok.decode([h[0].tokens for h in hyps])
    spm_s += time.perf_counter() - t0
    busy = cpu.other_busy()
    busy_warning(busy, "the timed pass")
    peak = max(peak, matmul_peak(args.peak_size))
    flops, steps, rows = ranged.flops, ranged.steps, ranged.rows
    out_tokens = sum(len(h[0].tokens) + h[0].eos for h in hyps)

    info("profiled pass")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        decode_ids(ranged, ids, dc, device)
        profiled_us = (time.perf_counter() - t0) * 1e6
    parts = attribute(prof.events())
    parts["beam bookkeeping / Python"] = max(profiled_us - parts.pop("search"), 0.0)
    # shares of the whole (search + SentencePiece), the search's parts scaled to the unprofiled time
    total_s = search_s + spm_s
    scale = search_s / (profiled_us / 1e6)
    ms = {p: parts[p] / 1e3 * scale for p in PARTS[:-1]}
    ms[PARTS[-1]] = spm_s * 1e3
    env = environment(device)
    settings = {
        "beam_size": args.beam,
        "batch_size": args.batch_size,
        "sentences": len(lines),
        "split": args.split,
        "model": desc,
        "params": count_parameters(model),
        "arch": f"emb {arch.emb_dim}, {arch.enc_cell} {arch.enc_layers}x{arch.enc_hidden}"
        f"{' bi' if arch.bidirectional else ''}, {arch.dec_cell} {arch.dec_layers}x{arch.dec_hidden}, "
        f"{arch.attention} attention, vocab {len(tgt_tok)}",
        "length_limit": f"int({dc.max_len_ratio} x source pieces) + {dc.max_len_offset}",
        "timing": "parts: shares of a profiled pass, scaled to an unprofiled pass's time",
    }
    common = {"precision": "fp32", "other_cpu_busy": busy, **env, "settings": settings}
    print("| part | ms | share |", file=sys.stderr)
    print("|---|---:|---:|", file=sys.stderr)
    for part in PARTS:
        share = ms[part] / (total_s * 1e3)
        print(f"| {part} | {ms[part]:.0f} | {share:.0%} |", file=sys.stderr)
        emit(
            {
                "figure": "decode_profile",
                "part": part,
                "ms": round(ms[part], 1),
                "share": round(share, 3),
                **common,
            }
        )
    print(f"| total | {total_s * 1e3:.0f} | 100% |", file=sys.stderr)
    emit({"figure": "decode_profile", "part": "total", "ms": round(total_s * 1e3, 1), "share": 1.0, **common})
    achieved = flops / search_s
    record = {
        "figure": "decode_flops",
        "flops_per_target_token": round(flops / max(out_tokens, 1)),
        "step_flops_per_row_at_mean_source": step_flops(
            arch, ranged.vocab, round(sum(map(len, ids)) / len(ids)) + 1
        ),
        "target_tokens": out_tokens,
        "decoder_steps": steps,
        "mean_rows_per_step": round(rows / max(steps, 1), 1),
        "search_gflop_per_s": round(achieved / 1e9, 2),
        "matmul_peak_gflop_per_s": round(peak / 1e9, 2),
        "peak_matmul_size": args.peak_size,
        "fraction_of_peak": round(achieved / peak, 3),
        **common,
    }
    info(
        f"{record['flops_per_target_token'] / 1e6:.1f} MFLOP per target token; search {achieved / 1e9:.1f} "
        f"GFLOP/s = {achieved / peak:.0%} of the {peak / 1e9:.1f} GFLOP/s fp32 matmul peak "
        f"({args.peak_size}^3, {torch.get_num_threads()} threads)"
    )
    emit(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
