#!/usr/bin/env python3
"""Training throughput (target tokens/s) and peak memory of the Multi30k de-en recipe's model.

Real Multi30k batches (the recipe's token batching, epoch 0's batch order), the training step of
seq2seq.training (Adam, gradient clipping, label-smoothed summed cross-entropy / tokens, autocast as
train.precision does it). The first --warmup steps are run but not timed.

Variants, each on the same batches from the same initial weights, side by side in one process:
  * one per --precision (fp32, bf16, fp16 on CUDA, auto)
  * with --baseline, per precision also "stepped": the un-hoisted decoder, model.decoder.step()
    called per target position, feeds stacked, then logits and loss once. A "hoisting_speedup"
    line gives hoisted / stepped tokens/s.
  * with --compile MODE, per precision also "compiled": the hoisted model with train.compile=MODE
    (seq2seq.model.compiled: torch.compile of the decoder step on bucketed shapes; training never records
    CUDA graphs, so reduce-overhead trains as default and max-autotune without its graphs). Every
    bucket shape of the batches is compiled before the clock starts (the compile time is reported);
    a "compile_speedup" line gives compiled / hoisted tokens/s and the largest logit difference from
    the eager model.

Each variant's line also says how much of the machine's matmul peak the step reaches
(benchmarks/_flops.py): ``matmul_flops_per_tgt_token``, the model's training matmul FLOPs over the
timed batches (analytic from the model's sizes and each batch's shape; forward + backward = 3 x
forward) per target token; ``matmul_gflop_per_s`` = that x tgt_tok_per_s; ``matmul_peak_gflop_per_s``,
the best rate of one large matmul per dtype (fp32, and bf16 where the device has it natively),
measured in this process at the same thread count before the variants run; ``fraction_of_peak``, the
step's rate over each of those peaks.

stdout: one JSON object per line (one per variant, then the ratio lines); progress goes to stderr.

    .venv/bin/python benchmarks/train_throughput.py --steps 10 --precision fp32,bf16 --baseline
    .venv/bin/python benchmarks/train_throughput.py --device cuda --precision bf16 --compile reduce-overhead
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch  # noqa: E402
from _common import (
    CpuShare,
    bench_config,
    busy_warning,
    csv_list,
    current_rss_mib,
    data_arguments,
    emit,
    environment,
    info,
    peak_rss_mib,
    prepare,
    resolve,
    sync,
)
from _flops import matmul_peak, training_flops

from seq2seq.config.schema import CHOICES  # noqa: E402
from seq2seq.data.batches import collate, make_batches  # noqa: E402
from seq2seq.data.tokenizer import load_tokenizers  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402
from seq2seq.model.cells import lstm_cell  # noqa: E402
from seq2seq.model.compiled import bucket_len, bucket_rows  # noqa: E402
from seq2seq.model.device import pick_device  # noqa: E402
from seq2seq.model.network import DecoderState, Seq2Seq, count_parameters  # noqa: E402
from seq2seq.model.precision import (  # noqa: E402
    autocast,
    autocast_dtype,
    cpu_has_native_bf16,
    cuda_has_native_bf16,
)
from seq2seq.training.cpumem import keep_freed_memory  # noqa: E402
from seq2seq.training.distributed import Dist  # noqa: E402
from seq2seq.training.setup import load_pairs, seed_everything, setup_parts  # noqa: E402
from seq2seq.training.step import loss_fn, train_step  # noqa: E402

MODES = ("hoisted", "stepped")


def stepped_forward(
    model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor
) -> torch.Tensor:
    """The plain eager path: the search step's LSTM cell per position (teacher forcing), then the output
    layer once.

    Same numbers as model(src, lengths, tgt_in) (checked below in eval mode); only the hoisting of the
    embedding/input projection out of the time loop differs.
    """
    dec = model.decoder
    state = model.encode(src, lengths)
    feeds = []
    for t in range(tgt_in.size(1)):
        emb = dec.drop(dec.embed(tgt_in[:, t]))  # (B, E)
        x = torch.cat([emb, state.feed], dim=1) if dec.input_feeding else emb
        h0, c0 = lstm_cell(dec.cells[0], x, state.h[0], state.c[0])
        h, c, feed, _ = dec.finish_step(h0, c0, state)
        state = DecoderState(h, c, feed, state.memory, state.keys, state.mask)
        feeds.append(feed)
    return dec.logits(torch.stack(feeds, dim=1))  # (B, T, V)


def stepped_loss(model: Seq2Seq, smoothing: float, src, lengths, tgt_in, tgt_out):
    """What a training step calls (seq2seq.training.loss.TrainingLoss's signature), over :func:`stepped_forward`
    and the unfused output layer + cross-entropy."""
    logits = stepped_forward(model, src, lengths, tgt_in)
    return loss_fn(logits, tgt_out, smoothing), loss_fn(logits.detach(), tgt_out, 0.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_arguments(p)
    p.add_argument("--steps", type=int, default=20, help="timed training steps per variant (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default: 3)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated train.precision values measured side by side: fp32,bf16,fp16,auto",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also measure the stepped (un-hoisted) decoder and print the hoisting speed-up",
    )
    p.add_argument(
        "--compile",
        default="off",
        choices=CHOICES["train.compile"],
        help="also measure the hoisted model with train.compile=MODE (default: off)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--batch-tokens", type=int, default=0, help="override train.batch_tokens (0: the recipe's)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe override (repeatable), e.g. --set model.dec_hidden=256",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the variant list this many times, interleaved; figures are medians (default: 1)",
    )
    p.add_argument(
        "--isolate",
        action="store_true",
        help="run each variant in a fresh subprocess, so each peak-RSS figure is that variant's alone",
    )
    p.add_argument("--no-check", action="store_true", help="skip the stepped == hoisted numerical check")
    p.add_argument(
        "--peak-size",
        type=int,
        default=2048,
        help="side of the square matmul whose rate is the peak (default: 2048; 0: no peak, no fractions)",
    )
    p.add_argument("--only", default="", help=argparse.SUPPRESS)  # precision:mode, used by --isolate
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1:
        p.error("--steps must be >= 1, --warmup >= 0, --repeats >= 1")
    return args


class Bench:
    def __init__(self, args):
        self.args = args
        if args.threads:
            torch.set_num_threads(args.threads)
        self.device = pick_device(args.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # as training's setup_process does
        workdir = resolve(args.workdir)
        overrides = [*args.set, *([f"train.batch_tokens={args.batch_tokens}"] if args.batch_tokens else [])]
        self.cfg = bench_config(Path(args.recipe), workdir, overrides)
        prepare(self.cfg, resolve(args.mirror) if args.mirror else None)
        self.src_tok, self.tgt_tok = load_tokenizers(self.cfg.run_path)
        tc = self.cfg.train
        info("encoding the training split")
        src, tgt = load_pairs(self.cfg, "train", self.src_tok, self.tgt_tok, tc.max_len)
        order = make_batches([len(s) for s in src], [len(t) for t in tgt], tc.batch_tokens, tc.seed, 0)
        n = args.warmup + args.steps
        if len(order) < n:
            raise UserError(f"only {len(order)} batches in an epoch; ask for fewer --warmup + --steps")
        # collated once, outside the timed region (CPU tensors); each step moves its batch to the device
        self.batches = [collate([src[i] for i in idx], [tgt[i] for i in idx]) for idx in order[:n]]
        self.n_pairs = len(src)
        del src, tgt
        timed = self.batches[args.warmup :]
        self.batch_stats = {
            "timed_tgt_tokens": sum(b.ntokens for b in timed),
            "timed_sentences": sum(b.src.size(0) for b in timed),
            "mean_sentences_per_batch": round(sum(b.src.size(0) for b in timed) / len(timed), 1),
            "mean_padded_tgt_len": round(sum(b.tgt_in.size(1) for b in timed) / len(timed), 1),
        }
        flops = training_flops(self.cfg.model, len(self.tgt_tok), timed)
        self.flops_per_token = flops / self.batch_stats["timed_tgt_tokens"]
        self.peaks: dict[str, float] = {}

    def measure_peaks(self) -> None:
        """The large-matmul peak per dtype (fp32; bf16 where native), in GFLOP/s (benchmarks/_flops.py)."""
        size, kind = self.args.peak_size, self.device.type
        if not size:
            return
        dtypes = {"fp32": torch.float32}
        if cuda_has_native_bf16() if kind == "cuda" else cpu_has_native_bf16():
            dtypes["bf16"] = torch.bfloat16
        for name, dtype in dtypes.items():
            self.peaks[name] = round(matmul_peak(dtype, size, device=str(self.device)) / 1e9, 1)
            info(f"matmul peak {name} ({size}^3): {self.peaks[name]} GFLOP/s")

    def settings(self) -> dict:
        m, tc, a = self.cfg.model, self.cfg.train, self.args
        return {
            "recipe": Path(a.recipe).name,
            "corpus": "multi30k train (epoch-0 batch order, seed %d)" % tc.seed,
            "train_pairs": self.n_pairs,
            "vocab": [len(self.src_tok), len(self.tgt_tok)],
            "spm": f"{'joint ' if self.cfg.spm.joint else ''}{self.cfg.spm.model_type} {self.cfg.spm.vocab_size}",
            "model": {
                k: getattr(m, k)
                for k in (
                    "emb_dim",
                    "enc_cell",
                    "bidirectional",
                    "enc_hidden",
                    "enc_layers",
                    "dec_cell",
                    "dec_hidden",
                    "dec_layers",
                    "attention",
                    "attn_dim",
                    "coverage",
                    "input_feeding",
                    "tie_embeddings",
                    "dropout",
                )
            },
            "batch_tokens": tc.batch_tokens,
            "optimizer": f"Adam lr={tc.lr} wd={tc.weight_decay}",
            "clip_norm": tc.clip_norm,
            "label_smoothing": tc.label_smoothing,
            "steps": a.steps,
            "warmup_steps": a.warmup,
            "repeats": a.repeats,
            "isolated_process": bool(a.only),
            **self.batch_stats,
        }

    def new_parts(self, precision: str, mode: str):
        """seq2seq.training's parts (model, optimizer, schedule, scaler) from the seeded initial weights;
        the stepped variant swaps in the un-hoisted forward."""
        seed_everything(self.cfg.train.seed)
        compile_mode = self.args.compile if mode == "compiled" else "off"
        cfg = dataclasses.replace(
            self.cfg, train=dataclasses.replace(self.cfg.train, precision=precision, compile=compile_mode)
        )
        parts = setup_parts(cfg, len(self.src_tok), len(self.tgt_tok), Dist(self.device))
        if mode == "stepped":
            parts.forward = functools.partial(stepped_loss, parts.model, cfg.train.label_smoothing)
        return parts

    def compile_shapes(self, parts) -> float:
        """Forward + backward once per bucket shape of the batches (no optimizer step): seconds taken."""
        t0, seen = time.perf_counter(), set()
        for cpu_batch in self.batches:
            key = (
                bucket_rows(cpu_batch.src.size(0)),
                bucket_len(cpu_batch.src.size(1)),
                cpu_batch.tgt_in.size(1),
            )
            if key[:2] in seen:
                continue
            seen.add(key[:2])
            b = cpu_batch.to(self.device)
            with autocast(self.device, parts.amp_dtype):
                loss, _ = parts.forward(b.src, b.lengths, b.tgt_in, b.tgt_out)
            loss.backward()
            parts.model.zero_grad(set_to_none=True)
            info(f"  compiled shape bucket {key[:2]} ({len(seen)})")
        sync(self.device)
        return time.perf_counter() - t0

    def run_variant(self, precision: str, mode: str) -> dict:
        """Warm-up + timed steps of one variant from freshly initialized weights."""
        a, tc, device = self.args, self.cfg.train, self.device
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        rss_before, peak_before = current_rss_mib(), peak_rss_mib()
        cpu = CpuShare()
        parts = self.new_parts(precision, mode)
        parts.model.train()
        compile_s = self.compile_shapes(parts) if mode == "compiled" else None
        times, losses = [], []
        for k, b in enumerate(self.batches):
            sync(device)
            t0 = time.perf_counter()
            # the real training step (seq2seq.training.loop.train_step): schedule, autocast, scaler, clipping, Adam
            loss, _ = train_step(parts, [(b, 1.0)], 1.0 / b.ntokens, parts.schedule.lr(k + 1), tc)
            sync(device)
            dt = time.perf_counter() - t0
            if k >= a.warmup:
                times.append(dt)
            losses.append(loss.item() / b.ntokens)  # after the clock: the .item() sync is not timed
            info(
                f"  {precision}/{mode} step {k + 1}/{len(self.batches)}{' (warm-up)' if k < a.warmup else ''}: "
                f"{dt * 1000:.0f} ms, {b.ntokens} tgt tokens, {b.src.size(0)} sentences, loss/tok {losses[-1]:.3f}"
            )
        out = {
            "seconds": sum(times),
            "step_ms": [round(t * 1000, 1) for t in times],
            "other_cpu_busy": cpu.other_busy(),
            "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4),
            "params": count_parameters(parts.model),
        }
        if compile_s is not None:
            out["compile_seconds"] = round(compile_s, 1)
        if device.type == "cuda":
            out["peak_mem_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            out["peak_mem_kind"] = "torch.cuda.max_memory_allocated (this variant)"
        else:
            out["peak_mem_mib"] = peak_rss_mib()
            out["peak_mem_kind"] = "peak RSS, getrusage ru_maxrss: this process's high-water mark so far" + (
                "" if a.only else " (variants before this one included; --isolate for per-variant figures)"
            )
            out["rss_before_variant_mib"] = rss_before
            out["peak_rss_raised_by_variant"] = out["peak_mem_mib"] > peak_before
        busy_warning(out["other_cpu_busy"], f"{precision}/{mode}")
        del parts
        gc.collect()
        return out

    def check_equivalence(self, mode: str = "stepped") -> float:
        """max |hoisted - stepped (or compiled)| logits on the first batch, eval mode, fp32."""
        model = self.new_parts("fp32", "hoisted").model.eval()
        b = self.batches[0].to(self.device)
        with torch.no_grad():
            ref = model(b.src, b.lengths, b.tgt_in)
            if mode == "stepped":
                other = stepped_forward(model, b.src, b.lengths, b.tgt_in)
            else:
                compiled = self.new_parts("fp32", "compiled")
                compiled.model.eval()
                other = compiled.model(b.src, b.lengths, b.tgt_in, loop=compiled.forward.loop)
            diff = (ref - other).abs().max()
        return diff.item()


def record(bench: Bench, env: dict, precision: str, mode: str, runs: list[dict]) -> dict:
    tok = bench.batch_stats["timed_tgt_tokens"]
    sents = bench.batch_stats["timed_sentences"]
    rates = [tok / r["seconds"] for r in runs]
    rate = statistics.median(rates)
    steps_ms = [ms for r in runs for ms in r["step_ms"]]
    last = runs[-1]
    amp = autocast_dtype(precision, bench.device)
    rec = {
        "figure": "train_throughput",
        "variant": mode,
        "precision": precision,
        "dtype": f"autocast {str(amp).replace('torch.', '')}" if amp else "float32 (no autocast)",
        **env,
        "tgt_tok_per_s": round(rate, 1),
        "tgt_tok_per_s_runs": [round(r, 1) for r in rates],
        "sent_per_s": round(rate * sents / tok, 2),
        "step_ms_median": round(statistics.median(steps_ms), 1),
        "step_ms_min": min(steps_ms),
        "step_ms_max": max(steps_ms),
        "timed_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
        "other_cpu_busy": [r["other_cpu_busy"] for r in runs],
        "peak_mem_mib": max(r["peak_mem_mib"] for r in runs),
        "peak_mem_kind": last["peak_mem_kind"],
        "loss_per_tok_first_last": [last["loss_first"], last["loss_last"]],
        **matmul_fraction(bench, rate),
        "settings": {
            **bench.settings(),
            "params": last["params"],
            "variant_desc": (
                "Seq2Seq.forward (hoisted Decoder.forward)"
                if mode == "hoisted"
                else f"hoisted, train.compile={bench.args.compile}"
                if mode == "compiled"
                else "decoder.step() per position, logits + loss once"
            ),
        },
    }
    for k in ("rss_before_variant_mib", "peak_rss_raised_by_variant", "compile_seconds"):
        if k in last:
            rec[k] = last[k]
    return rec


def matmul_fraction(bench: Bench, rate: float) -> dict:
    """The step's matmul rate (analytic FLOPs per token x tokens/s) and its fraction of each peak."""
    achieved = bench.flops_per_token * rate / 1e9  # GFLOP/s
    out = {
        "matmul_flops_per_tgt_token": round(bench.flops_per_token),
        "matmul_gflop_per_s": round(achieved, 2),
    }
    if bench.peaks:
        out["matmul_peak_gflop_per_s"] = bench.peaks
        out["fraction_of_peak"] = {k: round(achieved / v, 4) for k, v in bench.peaks.items()}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    precisions = csv_list(args.precision)
    modes = list(MODES if args.baseline else MODES[:1]) + (["compiled"] if args.compile != "off" else [])
    specs = [(p, m) for p in precisions for m in modes]
    if args.only:
        p, m = args.only.split(":")
        specs = [(p, m)]
    try:
        bench = Bench(args)
        for p in precisions:  # fail early on e.g. fp16 on CPU
            autocast_dtype(p, bench.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = environment(bench.device)
    bench.measure_peaks()
    info(
        f"{len(specs)} variant(s) x {args.repeats} on {env['device_name']}, {env['num_threads']} threads; "
        f"{args.warmup} warm-up + {args.steps} timed steps each"
    )

    runs: dict[tuple[str, str], list[dict]] = {s: [] for s in specs}
    records: dict[tuple[str, str], dict] = {}
    if args.isolate and not args.only:
        # one fresh process per variant and repeat; their JSON lines are re-emitted as they are
        base = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--isolate"]
        for r in range(args.repeats):
            for p, m in specs:
                info(f"subprocess for {p}/{m} (repeat {r + 1})")
                res = subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        *base,
                        "--repeats",
                        "1",
                        "--no-check",
                        "--only",
                        f"{p}:{m}",
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                if res.returncode:
                    return res.returncode
                recs = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
                rec = next(x for x in recs if x.get("figure") == "train_throughput")
                if r + 1 == args.repeats:
                    rate_runs = [x["tgt_tok_per_s"] for x in runs[(p, m)]] + [rec["tgt_tok_per_s"]]
                    rec["tgt_tok_per_s_runs"], rec["tgt_tok_per_s"] = rate_runs, statistics.median(rate_runs)
                    records[(p, m)] = rec
                    emit(rec)
                runs[(p, m)].append(rec)
    else:
        for r in range(args.repeats):
            for p, m in specs:
                info(f"variant {p}/{m} (repeat {r + 1}/{args.repeats})")
                runs[(p, m)].append(bench.run_variant(p, m))
        for s in specs:
            records[s] = record(bench, env, s[0], s[1], runs[s])
            emit(records[s])
    if args.only:
        return 0

    settings = {k: v for k, v in records[specs[0]]["settings"].items() if k != "variant_desc"}
    if args.baseline:
        diff = None if args.no_check else bench.check_equivalence()
        for p in precisions:
            h, s = records[(p, "hoisted")], records[(p, "stepped")]
            emit(
                {
                    "figure": "hoisting_speedup",
                    "precision": p,
                    "dtype": h["dtype"],
                    **env,
                    "ratio": round(h["tgt_tok_per_s"] / s["tgt_tok_per_s"], 3),
                    "hoisted_tgt_tok_per_s": h["tgt_tok_per_s"],
                    "stepped_tgt_tok_per_s": s["tgt_tok_per_s"],
                    "check_max_abs_logit_diff_fp32_eval": diff,
                    "settings": settings,
                }
            )
    if args.compile != "off":
        diff = None if args.no_check else bench.check_equivalence("compiled")
        for p in precisions:
            h, c = records[(p, "hoisted")], records[(p, "compiled")]
            emit(
                {
                    "figure": "compile_speedup",
                    "precision": p,
                    "dtype": h["dtype"],
                    "compile": args.compile,
                    **env,
                    "ratio": round(c["tgt_tok_per_s"] / h["tgt_tok_per_s"], 3),
                    "compiled_tgt_tok_per_s": c["tgt_tok_per_s"],
                    "hoisted_tgt_tok_per_s": h["tgt_tok_per_s"],
                    "compile_seconds": c.get("compile_seconds"),
                    "check_max_abs_logit_diff_fp32_eval": diff,
                    "settings": settings,
                }
            )
    if len(precisions) > 1:
        ref = precisions[0]
        for p in precisions[1:]:
            for m in modes:
                emit(
                    {
                        "figure": "precision_speedup",
                        "variant": m,
                        "precision": p,
                        "relative_to": ref,
                        "dtype": records[(p, m)]["dtype"],
                        **env,
                        "ratio": round(
                            records[(p, m)]["tgt_tok_per_s"] / records[(ref, m)]["tgt_tok_per_s"], 3
                        ),
                        "settings": settings,
                    }
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
