#!/usr/bin/env python3
"""Translation speed side by side with JoeyNMT 2.3 (and OpenNMT-py 3.5 where it installs): the same
model, the same corpus and SentencePiece pieces, the same test file, beam search on the CPU.

1. Each toolkit trains the recipe's architecture (default recipes/multi30k-de-en-cpu.yaml) on Multi30k
   de-en for --steps updates of the recipe's batch size (ours: ``seq2seq train`` with ``max_steps``;
   JoeyNMT: benchmarks/_joeynmt_driver.py, JoeyNMT's own training loop, on the pairs, pieces and
   vocabulary of joeynmt_compare.py). Training is not measured; a trained model is kept and reused
   while its step count matches (--retrain trains afresh).
2. Each translates the test split (test_2016_flickr, --limit N: its first N lines) from a file with
   beam --beam and length penalty --length-penalty, once per --threads value, as a process of its own:
   ``python -m seq2seq translate RUN -i FILE -o OUT -b 5 -a A --batch-size B --checkpoint last`` and
   ``python -m joeynmt translate CONFIG < FILE > OUT`` (its config's testing section: beam_size,
   beam_alpha, batch_size B sentences; its ``-o`` fails in 2.3.0, see Joey.translate_cmd). Threads:
   OMP_NUM_THREADS and MKL_NUM_THREADS in the process's environment. The same command on the first
   line alone (the quicker of two runs) gives the start-up time (interpreter, imports, model
   loading), which the main figures leave out.
3. Single-sentence latency: one process per toolkit and thread count, kept warm (3 untimed lines),
   translating the first --latency-sentences lines one call each through the Python API (ours:
   benchmarks/_seq2seq_latency.py, ``Translator.translate(line, dc)``; JoeyNMT: the driver's
   ``--latency``, ``TranslatorHubInterface.translate([line])``); the median wall time of a call.

Figures (one JSON line per toolkit and thread count, "figure": "translate_compare"; a markdown table in
CTranslate2's README layout on stderr at the end): see TOKEN_COUNTING and the settings object.

    .venv/bin/python benchmarks/translate_compare.py                       # the real measurement
    .venv/bin/python benchmarks/translate_compare.py --steps 5 --limit 50  # plumbing check

OpenNMT-py 3.5 is tried in its own venv (pip, torch pinned to the project's) and reported skipped with
pip's reason: 3.5.0 and 3.5.1 require torch<2.3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import yaml
from _common import (
    ROOT,
    TORCH_PIN,
    CpuShare,
    bench_config,
    busy_warning,
    csv_list,
    data_arguments,
    emit,
    environment,
    info,
    install_venv,
    prepare,
    resolve,
    venv_python,
)
from joeynmt_compare import cpu_info, describe_models, ensure_venv, export_texts, joey_cannot, joey_config

from seq2seq.constants import VERSION, spm_dir  # noqa: E402
from seq2seq.data.corpus import read_split  # noqa: E402
from seq2seq.data.tokenizer import load_tokenizers  # noqa: E402

HERE = Path(__file__).resolve().parent
CPU_RECIPE = ROOT / "recipes" / "multi30k-de-en-cpu.yaml"
ONMT_SPEC = "OpenNMT-py==3.5.*"
ONMT_CHECK = "import onmt, torch; print(onmt.__version__, torch.__version__)"
TRAINED = "translate_compare.json"  # beside a trained model: the settings it was trained with

TOKEN_COUNTING = {
    "tgt_tok_per_s": "target tokens / translation seconds. Target tokens: the SentencePiece pieces of the "
    "detokenized output lines, re-encoded with the recipe's joint SentencePiece model (the one both "
    "toolkits use), no EOS; the same count for every toolkit",
    "seconds": "wall time of the translating process minus its start-up (the same command on the "
    "first line alone, the quicker of two runs: interpreter start, imports, model loading); "
    "*_end_to_end: the whole process",
    "peak_rss_mib": "the translating process's peak resident set (os.wait4's ru_maxrss), whole file",
    "bleu": "sacreBLEU corpus BLEU of the detokenized output against the raw reference lines",
    "latency_ms_median": "median wall time of one Python API call translating one sentence, over "
    "--latency-sentences lines, in a warm process (see the module's docstring)",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_arguments(p, workdir=ROOT / "data" / "bench-cpu")
    p.set_defaults(recipe=str(CPU_RECIPE))
    p.add_argument(
        "--venv",
        default=str(ROOT / "data" / "bench" / "joeynmt-venv"),
        help="JoeyNMT's venv, created when missing (default: %(default)s)",
    )
    p.add_argument(
        "--onmt-venv",
        default=str(ROOT / "data" / "bench" / "opennmt-venv"),
        help="OpenNMT-py's venv, its install tried on every run (default: %(default)s)",
    )
    p.add_argument("--steps", type=int, default=300, help="training updates per toolkit (default: 300)")
    p.add_argument("--threads", default="2,1", help="thread counts to translate with (default: 2,1)")
    p.add_argument("--beam", type=int, default=5, help="beam size (default: 5)")
    p.add_argument(
        "--length-penalty", type=float, default=None, help="GNMT length penalty alpha (default: the recipe's)"
    )
    p.add_argument("--batch-size", type=int, default=100, help="sentences per decoding batch (default: 100)")
    p.add_argument("--split", default="test", help="the recipe's split to translate (default: test)")
    p.add_argument("--limit", type=int, default=0, help="translate the split's first N lines (0: all)")
    p.add_argument("--latency-sentences", type=int, default=50, help="single sentences timed (default: 50)")
    p.add_argument("--toolkits", default="ours,joeynmt,opennmt", help="which toolkits (default: %(default)s)")
    p.add_argument("--retrain", action="store_true", help="train afresh even where a trained model matches")
    args = p.parse_args(argv)
    args.threads = [int(x) for x in csv_list(args.threads)]
    args.toolkits = csv_list(args.toolkits)
    if args.steps < 1 or args.beam < 1 or args.batch_size < 1 or not args.threads or min(args.threads) < 1:
        p.error("--steps, --beam, --batch-size and every --threads value must be >= 1")
    if unknown := set(args.toolkits) - {"ours", "joeynmt", "opennmt"}:
        p.error(f"unknown toolkit(s): {', '.join(sorted(unknown))}")
    return args


# ------------------------------------------------------------------------------------------- processes


def thread_env(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def timed_process(
    cmd: list[str], env: dict, log: Path, stdin: Optional[Path] = None, stdout: Optional[Path] = None
) -> dict:
    """Run ``cmd`` (stdin from ``stdin``, stdout to ``stdout`` or ``log``, stderr to ``log``); its wall
    seconds and peak RSS (MiB). Exits on failure."""
    with (
        log.open("w", encoding="utf-8") as err,
        stdout.open("w", encoding="utf-8") if stdout else open(os.devnull, "w") as out,
        stdin.open("rb") if stdin else open(os.devnull, "rb") as inp,
    ):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=inp, stdout=out if stdout else err, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-10:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"error: {cmd[0]} ... failed (exit {proc.returncode}); its output is in {log}")
    return {"wall": wall, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def stream(cmd: list[str], env: dict, log: Path, every: int) -> None:
    """Run a training command, its output to ``log`` and every ``every``-th step line to stderr."""
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )
        for line in proc.stdout:
            out.write(line)
            step = step_of(line)
            if (step is not None and step % every == 0) or "Error" in line or "finished" in line:
                info("  " + line.split(" - ")[-1].rstrip())
        rc = proc.wait()
    if rc:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"error: training failed (exit {rc}); its output is in {log}")


def step_of(line: str) -> Optional[int]:
    """The step number of a training log line (ours: 'step N ...', JoeyNMT: 'Step: N, ...'), else None."""
    for key in ("Step:", "step "):
        if key in line:
            word = line.split(key, 1)[1].strip().split(" ", 1)[0].rstrip(",")
            return int(word) if word.isdigit() else None
    return None


def git_commit() -> str:
    """The checkout's short commit id, "" outside a git checkout."""
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return res.stdout.strip() if res.returncode == 0 else ""


def trained(folder: Path, settings: dict, retrain: bool) -> bool:
    marker = folder / TRAINED
    if retrain or not marker.is_file():
        return False
    return json.loads(marker.read_text()) == settings


def mark_trained(folder: Path, settings: dict) -> None:
    (folder / TRAINED).write_text(json.dumps(settings))


# ------------------------------------------------------------------------------------------------ ours


class Ours:
    name = "ours"

    def __init__(self, args, cfg, folder: Path):
        self.args, self.cfg, self.run_dir = args, cfg, folder / "ours-run"
        self.version = f"seq2seq {VERSION}" + (f" ({commit})" if (commit := git_commit()) else "")

    def train(self) -> None:
        a, cfg = self.args, self.cfg
        settings = {"recipe": str(resolve(a.recipe)), "steps": a.steps}
        if trained(self.run_dir, settings, a.retrain):
            info(f"ours: reusing the model trained for {a.steps} steps in {self.run_dir}")
            return
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        shutil.copytree(spm_dir(cfg.run_path), spm_dir(self.run_dir))  # the same pieces as JoeyNMT's
        every = max(1, a.steps // 10)
        cmd = [
            sys.executable,
            "-m",
            "seq2seq",
            "train",
            str(resolve(a.recipe)),
            f"data.dir={cfg.data_dir}",
            f"run_dir={self.run_dir}",
            f"train.max_steps={a.steps}",
            f"train.valid_every={a.steps}",
            f"train.log_every={every}",
            "train.precision=fp32",
            "train.device=cpu",
            f"train.threads={max(a.threads)}",
        ]
        info(f"ours: training {a.steps} steps into {self.run_dir}")
        stream(cmd, thread_env(max(a.threads)), self.run_dir.parent / "ours-train.log", every)
        mark_trained(self.run_dir, settings)

    def translate_cmd(self, src: Path, out: Path) -> tuple[list[str], Optional[Path], Optional[Path]]:
        """(command, its stdin, its stdout) translating ``src`` into ``out``."""
        a = self.args
        cmd = [
            sys.executable,
            "-m",
            "seq2seq",
            "translate",
            str(self.run_dir),
            "-i",
            str(src),
            "-o",
            str(out),
        ]
        cmd += ["-b", str(a.beam), "-a", str(a.length_penalty), "--batch-size", str(a.batch_size)]
        return cmd + ["--checkpoint", "last", "--device", "cpu"], None, None

    def latency_cmd(self, src: Path, out: Path, threads: int) -> list[str]:
        a = self.args
        return [
            sys.executable,
            str(HERE / "_seq2seq_latency.py"),
            str(self.run_dir),
            str(src),
            "--out",
            str(out),
            "--threads",
            str(threads),
            "--beam",
            str(a.beam),
            "--alpha",
            str(a.length_penalty),
        ]

    def decode_settings(self) -> str:
        dc = self.cfg.decode
        return (
            f"beam {self.args.beam}, length penalty ((5 + length) / 6)^{self.args.length_penalty} (length counts "
            f"EOS), output at most int({dc.max_len_ratio} x (source pieces + 1)) + {dc.max_len_offset} pieces "
            f"per sentence, length-sorted batches of {self.args.batch_size} sentences, checkpoint last"
        )


# --------------------------------------------------------------------------------------------- JoeyNMT


class Joey:
    name = "joeynmt"

    def __init__(self, args, cfg, folder: Path, venv: Path, version: str):
        self.args, self.cfg, self.venv, self.version = args, cfg, venv, f"JoeyNMT {version}"
        self.folder = folder / "joeynmt"
        self.model_dir = self.folder / "model"
        self.config = self.folder / "config.yaml"

    def train(self) -> None:
        a, cfg = self.args, self.cfg
        exported = export_texts(cfg, self.folder)
        conf = joey_config(cfg, exported, self.model_dir, a.steps)
        conf["name"] = "translate_compare"
        conf["training"]["epochs"] = 1000  # --steps (its "updates") ends training, not an epoch's end
        conf["testing"] = {
            "beam_size": a.beam,
            "beam_alpha": a.length_penalty,
            "batch_size": a.batch_size,
            "batch_type": "sentence",
            "eval_metrics": ["bleu"],
        }
        self.config.write_text(yaml.safe_dump(conf, sort_keys=False))
        settings = {"model": conf["model"], "training": conf["training"], "data": conf["data"]}
        if trained(self.model_dir, settings, a.retrain):
            info(f"JoeyNMT: reusing the model trained for {a.steps} steps in {self.model_dir}")
            return
        info(f"JoeyNMT: training {a.steps} steps into {self.model_dir} ({exported['train_pairs']} pairs)")
        cmd = [str(venv_python(self.venv)), str(HERE / "_joeynmt_driver.py"), "--config", str(self.config)]
        cmd += ["--out", str(self.folder / "train-steps.json"), "--threads", str(max(a.threads))]
        stream(cmd, thread_env(max(a.threads)), self.folder / "train-driver.log", max(1, a.steps // 10))
        mark_trained(self.model_dir, settings)

    def translate_cmd(self, src: Path, out: Path) -> tuple[list[str], Optional[Path], Optional[Path]]:
        """(command, its stdin, its stdout): JoeyNMT 2.3.0's ``translate -o FILE`` fails after translating
        (``save_hypothese(..., args.n_best)``: AttributeError, BaseConfig has no n_best), so its
        translations are taken from stdout, where it prints one per line (its log goes to stderr)."""
        return [str(venv_python(self.venv)), "-m", "joeynmt", "translate", str(self.config)], src, out

    def latency_cmd(self, src: Path, out: Path, threads: int) -> list[str]:
        cmd = [str(venv_python(self.venv)), str(HERE / "_joeynmt_driver.py"), "--config", str(self.config)]
        return cmd + ["--out", str(out), "--latency", str(src), "--threads", str(threads)]

    def decode_settings(self) -> str:
        return (
            f"beam {self.args.beam}, beam_alpha {self.args.length_penalty}: length penalty ((5 + length) / "
            "6)^alpha (length counts EOS), output at most 1.5 x the longest source of the batch (pieces + EOS; "
            f"its default max_output_length -1), batches of {self.args.batch_size} sentences in file order "
            "(batch_type sentence), its latest checkpoint"
        )


def try_opennmt(venv: Path) -> tuple[str, str]:
    """Why OpenNMT-py 3.5 is skipped, in full and in a few words: it could not be installed beside the
    project's torch, or (should it install) this script does not drive it."""
    found, why = install_venv(venv, [[f"torch=={TORCH_PIN}", ONMT_SPEC]], [f"torch=={TORCH_PIN}"], ONMT_CHECK)
    if found is None:
        conflict = next((x for x in why.split(" | ") if " depends on torch" in x), "see its install log")
        return (
            f"{ONMT_SPEC} could not be installed beside torch {TORCH_PIN}: {why}",
            f"not installable beside torch {TORCH_PIN} ({conflict})",
        )
    return (
        f"OpenNMT-py installed ({found}), but this script does not train or translate with it yet",
        "installed, not driven by this script",
    )


# ---------------------------------------------------------------------------------------------- figures


def pieces(sp, lines: list[str]) -> int:
    return sum(len(x) for x in sp.encode(lines))


def bleu(hyps: list[str], refs: list[str]) -> tuple[float, str]:
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    return round(metric.corpus_score(hyps, [refs]).score, 2), str(metric.get_signature())


def measure(tk, args, src: Path, first: Path, refs: list[str], tgt_tok, threads: int, folder: Path) -> dict:
    """One toolkit, one thread count: the file, its start-up, single-sentence latency."""
    env = thread_env(threads)
    tag = f"{tk.name}-t{threads}"
    out, out1 = folder / f"{tag}.out", folder / f"{tag}.first.out"
    info(f"{tk.name}, {threads} thread(s): start-up (first line alone)")
    cmd1, stdin1, stdout1 = tk.translate_cmd(first, out1)
    startup = min(  # the quicker of two: less noise from the page cache and other processes
        (timed_process(cmd1, env, folder / f"{tag}.first.log", stdin1, stdout1) for _ in range(2)),
        key=lambda r: r["wall"],
    )
    info(f"{tk.name}, {threads} thread(s): {len(refs)} lines")
    cmd, stdin, stdout = tk.translate_cmd(src, out)
    busy = CpuShare(children=True)
    run = timed_process(cmd, env, folder / f"{tag}.log", stdin, stdout)
    share = busy.other_busy()
    busy_warning(share, f"{tk.name} translating with {threads} thread(s)")
    hyps = out.read_text(encoding="utf-8").split("\n")[:-1]
    if len(hyps) != len(refs):
        raise SystemExit(f"error: {tk.name} wrote {len(hyps)} lines for {len(refs)} ({out})")
    info(f"{tk.name}, {threads} thread(s): latency of {args.latency_sentences} single sentences")
    lat_out = folder / f"{tag}.latency.json"
    lat_src = folder / "latency.src"
    timed_process(tk.latency_cmd(lat_src, lat_out, threads), env, folder / f"{tag}.latency.log")
    lat = json.loads(lat_out.read_text())
    seconds = run["wall"] - startup["wall"]  # <= 0 only for a file as short as its first line: no figure
    ntok = pieces(tgt_tok, hyps)
    score, signature = bleu(hyps, refs)
    ms = sorted(x * 1000 for x in lat["seconds"])
    return {
        "tgt_tok_per_s": round(ntok / seconds, 1) if seconds > 0 else None,
        "sent_per_s": round(len(hyps) / seconds, 2) if seconds > 0 else None,
        "peak_rss_mib": run["peak_rss_mib"],
        "bleu": score,
        "latency_ms_median": round(statistics.median(ms), 1),
        "latency_ms_p90": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "seconds": round(seconds, 2),
        "startup_seconds": round(startup["wall"], 2),
        "tgt_tok_per_s_end_to_end": round(ntok / run["wall"], 1),
        "sent_per_s_end_to_end": round(len(hyps) / run["wall"], 2),
        "tgt_tokens": ntok,
        "sentences": len(hyps),
        "mean_out_pieces": round(ntok / len(hyps), 2),
        "latency_sentences": len(ms),
        "latency_threads_seen": lat["threads"],
        "other_cpu_busy": share,
        "bleu_signature": signature,
        "output": str(out),
    }


def table(rows: list[dict]) -> str:
    """The rows in CTranslate2's README layout, plus sentences/s and latency."""
    lines = [
        "| | Tokens per second | Sentences per second | Max. memory | BLEU | Latency (1 sentence, median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['toolkit']} | skipped: {r['reason_short']} | | | | |")
            continue
        who = f"{r['version']}, {r['threads']} thread{'s' if r['threads'] > 1 else ''}"
        tok, sent = (
            f"{x:,.{d}f}" if x is not None else "n/a"
            for x, d in ((r["tgt_tok_per_s"], 0), (r["sent_per_s"], 1))
        )
        lines.append(
            f"| {who} | {tok} | {sent} | {r['peak_rss_mib']:,.0f}MB | {r['bleu']:.2f} | "
            f"{r['latency_ms_median']:,.1f} ms |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = resolve(args.workdir)
    cfg = bench_config(Path(args.recipe), workdir)
    if args.length_penalty is None:
        args.length_penalty = cfg.decode.length_penalty
    if "joeynmt" in args.toolkits and joey_cannot(cfg.model):
        raise SystemExit(f"translate_compare: {joey_cannot(cfg.model)} (--toolkits ours runs ours alone)")
    prepare(cfg, resolve(args.mirror) if args.mirror else None)
    folder = workdir / "translate"
    folder.mkdir(parents=True, exist_ok=True)

    src_lines, refs = read_split(cfg, args.split)
    if args.limit:
        src_lines, refs = src_lines[: args.limit], refs[: args.limit]
    src, first = folder / f"{args.split}.{cfg.data.src_lang}", folder / "first.src"
    src.write_text("".join(x + "\n" for x in src_lines), encoding="utf-8")
    first.write_text(src_lines[0] + "\n", encoding="utf-8")
    (folder / "latency.src").write_text(
        "".join(x + "\n" for x in src_lines[: args.latency_sentences]), encoding="utf-8"
    )
    _, tgt_tok = load_tokenizers(cfg.run_path)

    toolkits = []
    skipped: list[dict] = []
    if "ours" in args.toolkits:
        toolkits.append(Ours(args, cfg, folder))
    if "joeynmt" in args.toolkits:
        venv = resolve(args.venv)
        versions, why = ensure_venv(venv)
        if versions is None:
            info(f"JoeyNMT skipped: {why}")
            reason = f"JoeyNMT could not be installed: {why}"
            skipped.append(
                {"toolkit": "joeynmt", "skipped": True, "reason": reason, "reason_short": "not installed"}
            )
        else:
            info(f"JoeyNMT {versions[0]} with torch {versions[1]} in {venv}")
            toolkits.append(Joey(args, cfg, folder, venv, versions[0]))
    if "opennmt" in args.toolkits:
        reason, short = try_opennmt(resolve(args.onmt_venv))
        info(f"OpenNMT-py skipped: {reason}")
        skipped.append({"toolkit": "opennmt-py", "skipped": True, "reason": reason, "reason_short": short})

    for tk in toolkits:
        tk.train()

    model, differences = describe_models(cfg.model)
    base = {"figure": "translate_compare", **environment(torch.device("cpu")), "cpu": cpu_info()}
    rows = []
    for threads in args.threads:
        for tk in toolkits:
            res = measure(tk, args, src, first, refs, tgt_tok, threads, folder)
            rec = {
                **base,
                "toolkit": tk.name,
                "version": tk.version,
                "threads": threads,
                "num_threads": threads,
                **res,
                "settings": {
                    "recipe": Path(args.recipe).name,
                    "split": f"{args.split} ({cfg.data.splits.get(args.split, args.split)}), {len(refs)} lines",
                    "training_steps": args.steps,
                    "batch_tokens": cfg.train.batch_tokens,
                    "model": model,
                    "model_differences": differences,
                    "decoding": tk.decode_settings(),
                    "threads_how": "OMP_NUM_THREADS and MKL_NUM_THREADS of the translating process; the latency "
                    "process also calls torch.set_num_threads",
                    "token_counting": TOKEN_COUNTING,
                },
            }
            emit(rec)
            rows.append(rec)
    for rec in skipped:
        emit({**base, **rec})
    print("\n" + table(rows + skipped), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
