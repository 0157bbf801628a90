#!/usr/bin/env python3
"""Decoding speed: sentences/s and output tokens/s, greedy and beam search, on Multi30k test_2016_flickr.

End to end as seq2seq.decode.translator.Translator.translate does it: SentencePiece encoding of the source
lines, decode_ids (length-sorted batches of --batch-size sentences, greedy for beam 1, beam_search
otherwise), SentencePiece decoding of the best hypotheses. One untimed warm-up batch first.

The model is a trained run directory (--run-dir, via seq2seq.decode.loading.load_run) or, by default,
a random-weight model of the recipe's architecture. A random model rarely emits EOS, so nearly every
output runs to the length limit (int(max_len_ratio * source length) + max_len_offset, source length
counting its EOS): the JSON shows mean output length and the share of outputs at that limit, and
--max-len-ratio/--max-len-offset change it.

stdout: one JSON object per line, one per (beam size, precision, --compile mode); progress goes to stderr.

    .venv/bin/python benchmarks/decode_speed.py                     # random weights, beams 1,5
    .venv/bin/python benchmarks/decode_speed.py --run-dir data/multi30k-de-en/run
    .venv/bin/python benchmarks/decode_speed.py --device cuda --compile off,reduce-overhead
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch  # noqa: E402
from _common import (
    DEFAULT_MIRROR,
    DEFAULT_RECIPE,
    DEFAULT_WORKDIR,
    CpuShare,
    bench_config,
    busy_warning,
    csv_list,
    emit,
    environment,
    info,
    prepare,
    resolve,
    sync,
)

from seq2seq.config.schema import CHOICES  # noqa: E402
from seq2seq.data.corpus import read_split  # noqa: E402
from seq2seq.data.tokenizer import load_tokenizers  # noqa: E402
from seq2seq.decode.loading import load_run  # noqa: E402
from seq2seq.decode.search import max_lengths  # noqa: E402
from seq2seq.decode.translator import Translator  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402
from seq2seq.model.device import pick_device  # noqa: E402
from seq2seq.model.network import build_model, count_parameters  # noqa: E402
from seq2seq.model.precision import autocast_dtype  # noqa: E402
from seq2seq.training.setup import seed_everything  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--recipe",
        default=str(DEFAULT_RECIPE),
        help="recipe YAML for the random model's architecture and the corpus (default: %(default)s)",
    )
    p.add_argument(
        "--mirror", default=str(DEFAULT_MIRROR), help="corpus mirror folder (as train_throughput.py)"
    )
    p.add_argument(
        "--workdir", default=str(DEFAULT_WORKDIR), help="as train_throughput.py (default: data/bench)"
    )
    p.add_argument("--run-dir", default="", help="a trained run directory; default: random weights")
    p.add_argument(
        "--checkpoint", default="best", choices=("best", "last"), help="with --run-dir (default: best)"
    )
    p.add_argument(
        "--split", default="test", help="corpus split to translate (default: test = test_2016_flickr)"
    )
    p.add_argument("--limit", type=int, default=0, help="only the first N sentences (0: all)")
    p.add_argument("--beams", default="1,5", help="comma-separated beam sizes, 1 = greedy (default: 1,5)")
    p.add_argument("--batch-size", type=int, default=100, help="sentences per decoding batch (default: 100)")
    p.add_argument("--length-penalty", type=float, default=None, help="default: the recipe's (or run's)")
    p.add_argument("--max-len-ratio", type=float, default=None, help="default: the recipe's (or run's), 2.0")
    p.add_argument("--max-len-offset", type=int, default=None, help="default: the recipe's (or run's), 10")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated: fp32 (as translate/evaluate decode) or bf16/fp16 autocast (default: fp32)",
    )
    p.add_argument(
        "--compile",
        default="off",
        help="comma-separated decode.compile_search modes measured side by side: off, default, "
        "reduce-overhead, max-autotune (default: off). A compiled mode is warmed up by one "
        "untimed pass over all sentences (compiling every bucket shape), whose time is reported",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=1, help="timed passes per setting; figures are medians")
    p.add_argument("--seed", type=int, default=1, help="random model's initialization seed (default: 1)")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1:
        p.error("--batch-size and --repeats must be positive")
    return args


def measure(
    args,
    model,
    src_tok,
    tgt_tok,
    lines,
    keep,
    src_ids,
    limits,
    env,
    cfg,
    model_desc,
    arch,
    dc,
    amp,
    precision,
    eager_texts,
) -> None:
    """Time one (beam size, precision, compile mode) setting and emit its JSON line."""
    device, beam, mode = next(model.parameters()).device, dc.beam_size, dc.compile_search
    translator = Translator(
        [model], src_tok, tgt_tok, cfg, device
    )  # compiles once per mode, for warm-up and timing
    src_tokens = sum(len(s) for s in src_ids)
    ctx = (lambda: torch.autocast(device.type, dtype=amp)) if amp else contextlib.nullcontext
    if mode == "off":  # warm-up: one batch of the longest sentences, untimed
        warm = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))[
            -min(args.batch_size, len(src_ids)) :
        ]
        warm_desc = f"1 untimed batch of the {len(warm)} longest sentences"
    else:  # every shape bucket is compiled before the clock starts
        warm = list(range(len(src_ids)))
        warm_desc = "1 untimed pass over all sentences (compiles every shape bucket)"
    sync(device)
    t0 = time.perf_counter()
    with ctx():
        translator.hypotheses_from_ids([src_ids[i] for i in warm], dc)
    sync(device)
    warm_s = time.perf_counter() - t0
    secs, hyps, texts, busy = [], None, None, []
    for r in range(args.repeats):
        sync(device)
        cpu = CpuShare()
        t0 = time.perf_counter()
        # == translator.translate(lines, dc), keeping the hypotheses
        with ctx():
            hyps = translator.hypotheses([lines[i] for i in keep], dc)
        texts = tgt_tok.decode([h[0].tokens for h in hyps])
        sync(device)
        secs.append(time.perf_counter() - t0)
        busy.append(cpu.other_busy())
        busy_warning(busy[-1], f"beam {beam} {precision} compile {mode}")
        info(f"  beam {beam} {precision} compile {mode} pass {r + 1}: {secs[-1]:.2f} s")
    if mode == "off":
        eager_texts[precision] = texts
    sec = statistics.median(secs)
    out_lens = [len(h[0].tokens) for h in hyps]
    out_tokens = sum(out_lens)
    at_limit = sum(n >= lim for n, lim in zip(out_lens, limits))
    same = None
    if mode != "off" and precision in eager_texts:
        same = sum(a == b for a, b in zip(texts, eager_texts[precision])) / max(len(texts), 1)
    emit(
        {
            "figure": "decode_speed",
            "search": "greedy" if beam == 1 else "beam",
            "beam_size": beam,
            "precision": precision,
            "compile": mode,
            "dtype": f"autocast {str(amp).replace('torch.', '')}" if amp else "float32 (no autocast)",
            **env,
            "sent_per_s": round(len(lines) / sec, 2),
            "tgt_tok_per_s": round(out_tokens / sec, 1),
            "seconds": round(sec, 3),
            "seconds_runs": [round(s, 3) for s in secs],
            "warmup_seconds": round(warm_s, 2),
            "same_output_as_compile_off": same,
            "other_cpu_busy": busy,
            "sentences": len(lines),
            "src_tokens": src_tokens,
            "out_tokens": out_tokens,
            "mean_out_len": round(out_tokens / max(len(hyps), 1), 2),
            "mean_src_len": round(src_tokens / max(len(src_ids), 1), 2),
            "frac_at_max_len": round(at_limit / max(len(hyps), 1), 3),
            "mean_out_chars": round(sum(map(len, texts)) / max(len(texts), 1), 1),
            "settings": {
                "model": model_desc,
                "params": count_parameters(model),
                "arch": f"emb {arch.emb_dim}, bi-GRU {arch.enc_layers}x{arch.enc_hidden}, "
                f"LSTM {arch.dec_layers}x{arch.dec_hidden}, {arch.attention} attention",
                "vocab": [len(src_tok), len(tgt_tok)],
                "split": args.split,
                "source_file": str(cfg.data_dir / f"{args.split}.{cfg.data.src_lang}"),
                "batch_size": dc.batch_size,
                "beam_size": beam,
                "length_penalty": dc.length_penalty,
                "max_len_ratio": dc.max_len_ratio,
                "max_len_offset": dc.max_len_offset,
                "repeats": args.repeats,
                "warmup": warm_desc,
                "timed": "SPM encode + decode_ids + SPM decode (as Translator.translate)",
                "tokens_counted": "output pieces of the best hypothesis, EOS not counted",
            },
        }
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
        cfg = bench_config(Path(args.recipe), resolve(args.workdir))
        prepare(cfg, resolve(args.mirror) if args.mirror else None)  # the corpus (+ SPM for a random model)
        lines = read_split(cfg, args.split)[0]
        if args.limit:
            lines = lines[: args.limit]
        if args.run_dir:
            run_dir = resolve(args.run_dir)
            model_cfg, model = load_run(run_dir, args.checkpoint, device)
            src_tok, tgt_tok = load_tokenizers(run_dir)
            model_desc = f"trained: {run_dir} ({args.checkpoint}.pt)"
            base_dc = model_cfg.decode
            arch = model_cfg.model
        else:
            src_tok, tgt_tok = load_tokenizers(cfg.run_path)
            seed_everything(args.seed)
            model = build_model(cfg.model, len(src_tok), len(tgt_tok)).to(device).eval()
            model_desc = f"random weights (seed {args.seed}), architecture of {Path(args.recipe).name}"
            base_dc = cfg.decode
            arch = cfg.model
        precisions = csv_list(args.precision)
        compile_modes = csv_list(args.compile)
        modes = CHOICES["decode.compile_search"]
        for m in compile_modes:
            if m not in modes:
                raise UserError(f"--compile: unknown mode {m!r} (choose from {', '.join(modes)})")
        amps = {p: autocast_dtype(p, device) for p in precisions}
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    keep = [i for i, x in enumerate(lines) if x.strip()]
    if len(keep) != len(lines):
        info(
            f"{len(lines) - len(keep)} empty source lines are skipped (Translator.translate gives them empty output)"
        )
    env = environment(device)
    src_ids = src_tok.encode([lines[i] for i in keep])  # for the statistics only; the timed run encodes again
    src_tokens = sum(len(s) for s in src_ids)
    info(
        f"{len(lines)} sentences, {src_tokens} source pieces, {env['device_name']}, {env['num_threads']} threads"
    )

    for beam in [int(b) for b in csv_list(args.beams)]:
        dc = dataclasses.replace(
            base_dc,
            beam_size=beam,
            n_best=1,
            batch_size=args.batch_size,
            length_penalty=base_dc.length_penalty if args.length_penalty is None else args.length_penalty,
            max_len_ratio=base_dc.max_len_ratio if args.max_len_ratio is None else args.max_len_ratio,
            max_len_offset=base_dc.max_len_offset if args.max_len_offset is None else args.max_len_offset,
        )
        limits = max_lengths(torch.tensor([len(s) + 1 for s in src_ids]), dc.max_len_ratio, dc.max_len_offset)
        eager_texts: dict[str, list[str]] = {}
        for precision in precisions:
            for mode in compile_modes:
                measure(
                    args,
                    model,
                    src_tok,
                    tgt_tok,
                    lines,
                    keep,
                    src_ids,
                    limits,
                    env,
                    cfg,
                    model_desc,
                    arch,
                    dataclasses.replace(dc, compile_search=mode),
                    amps[precision],
                    precision,
                    eager_texts,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
