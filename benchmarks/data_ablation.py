#!/usr/bin/env python3
"""What the data-side techniques buy: dev BLEU of the 2-core CPU recipe with each of cleaning, subword
regularization, back-translation and checkpoint averaging on and off, at the same budget.

Every row is a plain ``seq2seq run RECIPE name=<prefix>-<row> ... --until train`` (the commands are
printed, so any row can be re-run by hand) with the same training budget (``--steps`` steps of the
recipe's 2048 tokens, a validation every third of it, the last 3 validations kept and averaged by
``train.average_last=3``); only dev is decoded (greedy, as training validates), never a test set.

- base:     recipes/multi30k-de-en-cpu.yaml as it ships (29,000 pairs);
- clean:    + the cleaning rules that find Multi30k's junk (docs/data.md#cleaning-the-training-pairs);
- sampling: + SentencePiece sampling of the training pairs each epoch (spm.subword_sampling);
- half:     train pairs 1-14,500 only: recipes/multi30k-de-en-bt.yaml without its synthetic corpus;
- bt:       recipes/multi30k-de-en-bt.yaml: those pairs + the English of pairs 14,501-29,000
            back-translated by recipes/multi30k-en-de-bt-reverse.yaml (trained on pairs 1-14,500 with
            the same budget) and tagged <BT>;
- averaging is read from every row: the dev BLEU of checkpoints/averaged.pt next to the last step's.

Finished rows are reused (``seq2seq run`` skips up-to-date stages). stdout: one JSON line per row, then
the table as markdown.

    .venv/bin/python benchmarks/data_ablation.py --jobs 2 --threads 1     # ~1 h on 2 cores
    .venv/bin/python benchmarks/data_ablation.py --rows base --steps 30   # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from _common import ROOT, cpu_name, emit, info, resolve

S2S = str(Path(sys.executable).parent / "seq2seq")
CPU_RECIPE = ROOT / "recipes" / "multi30k-de-en-cpu.yaml"
BT_RECIPE = ROOT / "recipes" / "multi30k-de-en-bt.yaml"
REVERSE_RECIPE = ROOT / "recipes" / "multi30k-en-de-bt-reverse.yaml"
CLEAN = [
    "clean.duplicates=true",
    "clean.near_duplicates=true",
    "clean.length_ratio=3",
    "clean.brackets=true",
]
# row -> (what it changes, recipe, overrides); "half" is written from BT_RECIPE by half_recipe()
ROWS = {
    "base": ("the CPU recipe as it ships (29,000 pairs)", CPU_RECIPE, []),
    "clean": ("cleaning: duplicates, near duplicates, length ratio 3, brackets", CPU_RECIPE, CLEAN),
    "sampling": ("subword regularization (alpha 0.1, 64-best)", CPU_RECIPE, ["spm.subword_sampling=true"]),
    "half": ("pairs 1-14,500 only (the back-translation baseline)", None, []),
    "bt": ("pairs 1-14,500 + 14,500 back-translated, tagged <BT>", BT_RECIPE, []),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--rows", default="bt,base,clean,sampling,half", help="comma-separated rows, started in this order"
    )
    p.add_argument("--steps", type=int, default=1500, help="training steps per row (default: 1500)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per training (default: 1)")
    p.add_argument("--jobs", type=int, default=2, help="rows trained at once (default: 2)")
    p.add_argument("--precision", default="fp32", help="train.precision of every row (default: fp32)")
    p.add_argument("--prefix", default="abl", help="run names are <prefix>-<row> (data/<prefix>-<row>/)")
    p.add_argument(
        "--mirror",
        default=str(ROOT / ".." / "shared" / "corpora" / "multi30k"),
        help="folder holding Multi30k's files (default: ../shared/corpora/multi30k)",
    )
    args = p.parse_args(argv)
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; rows: {', '.join(ROWS)}")
    return args


def budget(args) -> list[str]:
    """The overrides every run shares: the same steps, validations, kept and averaged checkpoints."""
    return [
        f"train.max_steps={args.steps}",
        f"train.valid_every={max(1, args.steps // 3)}",
        "train.keep_checkpoints=3",
        "train.average_last=3",
        f"train.threads={args.threads}",
        f"train.precision={args.precision}",
    ]


def half_recipe(workdir: Path) -> Path:
    """recipes/multi30k-de-en-bt.yaml without its synthetic corpus: the same real pairs alone."""
    recipe = yaml.safe_load(BT_RECIPE.read_text())
    recipe["data"]["sources"] = [s for s in recipe["data"]["sources"] if s["name"] != "bt"]
    path = workdir / "multi30k-de-en-half.yaml"
    path.write_text("# written by benchmarks/data_ablation.py\n" + yaml.safe_dump(recipe, sort_keys=False))
    return path


def real_pairs() -> int:
    """The real pairs of recipes/multi30k-de-en-bt.yaml (its multi30k source's ``take``): the reverse
    model trains on them, and back-translation skips them in train.en."""
    sources = yaml.safe_load(BT_RECIPE.read_text())["data"]["sources"]
    return next(s["take"] for s in sources if s["name"] != "bt")


def run(cmd: list[str], log: Path) -> None:
    info("$ " + " ".join(cmd))
    with open(log, "a") as f:
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode:
            raise SystemExit(f"error: {cmd[1]} failed, see {log}")


def train_row(args, row: str, workdir: Path) -> dict:
    change, recipe, overrides = ROWS[row]
    name = f"{args.prefix}-{row}"
    log = workdir / f"{row}.log"
    if row == "half":
        recipe = half_recipe(workdir)
    if row == "bt":
        synthetic = workdir / "bt-synthetic"
        overrides = [f"data.sources.bt.url={synthetic}"]
        reverse = f"{args.prefix}-reverse"
        run([S2S, "run", str(REVERSE_RECIPE), f"name={reverse}", *budget(args), "--mirror", args.mirror,
             "--until", "train"], log)  # fmt: skip
        run([S2S, "back-translate", str(recipe), f"name={name}", *overrides, *budget(args), "--source", "bt",
             "--model", str(ROOT / "data" / reverse / "run"), "--input", f"{args.mirror}/train.en.gz",
             "--skip", str(real_pairs())], log)  # fmt: skip
    start = time.time()
    run([S2S, "run", str(recipe), f"name={name}", *overrides, *budget(args), "--mirror", args.mirror,
         "--until", "train"], log)  # fmt: skip
    return record(row, change, ROOT / "data" / name / "run", time.time() - start)


def record(row: str, change: str, run_dir: Path, seconds: float) -> dict:
    """The row's dev BLEU at each validation, at the end and of the averaged checkpoint, from metrics.jsonl."""
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    dev = [m for m in metrics if m["kind"] == "dev"]
    averaged = [m for m in metrics if m["kind"] == "averaged"]
    tok_s = [m["tokens_per_s"] for m in metrics if m["kind"] == "train"]
    return {
        "row": row,
        "change": change,
        "dev_bleu_by_step": {m["step"]: m["bleu"] for m in dev},
        "dev_bleu_last": dev[-1]["bleu"],
        "dev_bleu_best": max(m["bleu"] for m in dev),
        "dev_bleu_averaged": averaged[-1]["bleu"] if averaged else None,
        "tgt_tok_per_s": round(sum(tok_s) / len(tok_s)),
        "seconds": round(seconds),
        "run_dir": str(run_dir),
    }


def markdown(records: list[dict], args) -> str:
    base = {r["row"]: r for r in records}
    lines = [
        f"Multi30k de->en, 2-core CPU recipe's model, {args.steps} steps of 2048 tokens per row, "
        f"{args.precision}, dev BLEU (greedy, sacreBLEU 13a); {cpu_name()}.",
        "",
        "| row | dev BLEU, last step | dev BLEU, last 3 averaged | averaging gives | tgt tok/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in records:
        avg = r["dev_bleu_averaged"]
        gain = "" if avg is None else f"{avg - r['dev_bleu_last']:+.2f}"
        ref = base.get("half" if r["row"] == "bt" else "base")
        vs = (
            ""
            if ref is None or ref is r
            else f" ({r['dev_bleu_last'] - ref['dev_bleu_last']:+.2f} vs {ref['row']})"
        )
        lines.append(
            f"| {r['row']}: {r['change']} | {r['dev_bleu_last']:.2f}{vs} | "
            f"{'' if avg is None else f'{avg:.2f}'} | {gain} | {r['tgt_tok_per_s']:,} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    args.mirror = str(resolve(args.mirror))
    workdir = ROOT / "data" / f"{args.prefix}-ablation"
    workdir.mkdir(parents=True, exist_ok=True)
    rows = args.rows.split(",")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        records = list(pool.map(lambda row: train_row(args, row, workdir), rows))
    records.sort(key=lambda r: list(ROWS).index(r["row"]))  # the table in ROWS' order
    for r in records:
        emit(r)
    print(markdown(records, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
