#!/usr/bin/env python3
"""int8 and bf16 translation on the CPU against fp32: speed, BLEU and model file size of a trained run.

Translates the run's test split (Multi30k: test_2016_flickr; or --src FILE --ref FILE) with beam 5 as
``seq2seq translate`` does (seq2seq.decode.translator.Translator), once per precision: fp32 (the run's
checkpoint), int8 (the checkpoint quantized by seq2seq.model.quantized, as ``seq2seq quantize`` writes
it and ``translate --precision int8`` builds it) and bf16 (autocast; only where the CPU has native bf16,
else a line saying it was skipped). One untimed warm-up batch per precision comes first.

stdout: one JSON object per precision: sent_per_s, tgt_tok_per_s (pieces of the best hypotheses, EOS not
counted), seconds, sacreBLEU bleu and its signature, same_output_as_fp32 (share of lines translated
identically), model_bytes (the fp32 checkpoint's parameters alone / the int8 file), the CPU's name and
flags, threads and the quantized engine. Progress on stderr.

    .venv/bin/python benchmarks/int8_speed.py data/multi30k-de-en/run
    .venv/bin/python benchmarks/int8_speed.py RUN --src test.de --ref test.en --threads 1 --limit 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch  # noqa: E402
from _common import CpuShare, busy_warning, cpuinfo, csv_list, emit, environment, info, resolve

from seq2seq.config.schema import CHOICES  # noqa: E402
from seq2seq.data.corpus import read_split  # noqa: E402
from seq2seq.decode.int8 import int8_payload, serialized_size  # noqa: E402
from seq2seq.decode.loading import load_run  # noqa: E402
from seq2seq.decode.translator import Translator  # noqa: E402
from seq2seq.errors import UserError  # noqa: E402
from seq2seq.evaluation.metrics import score_refs  # noqa: E402
from seq2seq.model.precision import cpu_has_native_bf16  # noqa: E402
from seq2seq.runs import checkpoint as ckpt_io  # noqa: E402
from seq2seq.runs.ownership import load_run_config  # noqa: E402
from seq2seq.text import normalize  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni", "asimd", "i8mm")


def cpu_flags() -> list[str]:
    """The flags of /proc/cpuinfo that int8 and bf16 matmuls use (VNNI, AVX512-BF16, AMX, ...)."""
    flags = set(cpuinfo().get("flags", cpuinfo().get("Features", "")).split())
    return [f for f in FLAGS if f in flags]


def lines_of(run: Path, args) -> tuple[list[str], list[str], str, str]:
    """(source lines, reference lines, target language, what they are)."""
    cfg = load_run_config(run)
    if args.src:
        src = [normalize(x) for x in resolve(args.src).read_text(encoding="utf-8").splitlines()]
        ref = [normalize(x) for x in resolve(args.ref).read_text(encoding="utf-8").splitlines()]
        where = args.src
    else:
        src, ref = read_split(cfg, args.split)
        where = f"{cfg.data_dir}/{args.split}"
    if len(src) != len(ref):
        raise UserError(f"{len(src)} source lines but {len(ref)} references")
    n = args.limit or len(src)
    return src[:n], ref[:n], cfg.data.tgt_lang, where


def file_sizes(run: Path, checkpoint: str) -> dict[str, int]:
    """Bytes of the fp32 parameters alone and of the int8 checkpoint file (written to a temp folder)."""
    path = ckpt_io.resolve(run, checkpoint)
    _, model = load_run(run, checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.pt"
        ckpt_io.save(out, int8_payload(ckpt_io.load(path), model))
        int8 = out.stat().st_size
    return {
        "fp32": serialized_size(model.state_dict()),
        "int8": int8,
        "fp32_checkpoint_file": path.stat().st_size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="a trained run directory")
    parser.add_argument("--checkpoint", default="best", help="the fp32 checkpoint (default: %(default)s)")
    parser.add_argument("--split", default="test", help="the run's split to translate (default: %(default)s)")
    parser.add_argument("--src", help="a source file instead of the split (with --ref)")
    parser.add_argument("--ref", help="its reference file")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the run's decode.batch_size")
    parser.add_argument(
        "--precisions", default="fp32,int8,bf16", help="comma-separated (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N lines (0: all)")
    args = parser.parse_args()
    if bool(args.src) != bool(args.ref):
        parser.error("--src and --ref go together")
    precisions = csv_list(args.precisions)
    bad = [p for p in precisions if p not in CHOICES["decode.search_precision"]]
    if bad:
        parser.error(f"--precisions: unknown {bad}")
    if args.threads:
        torch.set_num_threads(args.threads)
    run = resolve(args.run_dir)
    try:
        src, ref, tgt_lang, where = lines_of(run, args)
        sizes = file_sizes(run, args.checkpoint)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info(
        f"{len(src)} lines of {where}; fp32 parameters {sizes['fp32'] / 1e6:.1f} MB, int8 {sizes['int8'] / 1e6:.1f} MB"
    )
    device = torch.device("cpu")
    common = {
        **environment(device),
        "cpu_flags": cpu_flags(),
        "quantized_engine": torch.backends.quantized.engine,
        "run_dir": str(run),
        "checkpoint": args.checkpoint,
        "source": where,
        "sentences": len(src),
        "beam_size": args.beam_size,
    }
    fp32_out = None
    for precision in precisions:
        if precision == "bf16" and not cpu_has_native_bf16():
            emit(
                {
                    "figure": "int8_speed",
                    "precision": "bf16",
                    "skipped": "no native bf16 on this CPU",
                    **common,
                }
            )
            continue
        translator = Translator.from_run_dirs([run], args.checkpoint, device, precision=precision)
        dc = translator.decode_config(beam_size=args.beam_size, batch_size=args.batch_size, n_best=1)
        warm = sorted(src, key=len)[-dc.batch_size :]
        translator.translate(warm, dc)  # untimed: the first batch pays one-time costs
        info(f"{precision}: translating {len(src)} lines, beam {dc.beam_size}")
        share = CpuShare()
        start = time.perf_counter()
        found = translator.translate(src, dc, with_scores=True)
        seconds = time.perf_counter() - start
        busy = share.other_busy()
        busy_warning(busy, f"{precision} decoding")
        hyps = [ts[0].text if ts else "" for ts in found]
        tokens = sum(len(ts[0].tokens) for ts in found if ts)
        scores = score_refs(hyps, [ref], tgt_lang, dc.bleu_tokenize)
        fp32_out = hyps if precision == "fp32" else fp32_out
        record = {
            "figure": "int8_speed",
            "precision": precision,
            "sent_per_s": round(len(src) / seconds, 2),
            "tgt_tok_per_s": round(tokens / seconds, 1),
            "seconds": round(seconds, 2),
            "bleu": round(scores["bleu"], 2),
            "bleu_signature": scores["bleu_signature"],
            "model_bytes": sizes["int8" if precision == "int8" else "fp32"],
            "fp32_params_bytes": sizes["fp32"],
            "size_ratio_to_fp32": round(sizes["int8"] / sizes["fp32"], 3) if precision == "int8" else 1.0,
            "other_cpu_busy": busy,
            **common,
        }
        if fp32_out is not None and precision != "fp32":
            record["same_output_as_fp32"] = round(sum(a == b for a, b in zip(hyps, fp32_out)) / len(src), 3)
        emit(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
