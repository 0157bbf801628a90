#!/usr/bin/env python3
"""Training speed side by side with JoeyNMT 2.3: same model, same corpus, same SentencePiece pieces,
batches of the same nominal size (4096 tokens), fp32 on the CPU, back to back on this machine.

JoeyNMT lives in its own venv (default data/bench/joeynmt-venv, git-ignored), never in the project's:
on first use it is created with ``python -m venv``, then torch pinned to the project's version
(installed first, from the wheel on this machine's disk; an unpinned torch would pull a CUDA build),
then ``joeynmt==2.3.*`` with its dependencies (and importlib_metadata, which it imports without
declaring it) under a constraints file that keeps torch pinned and sentencepiece below 0.2.2 (JoeyNMT
2.3 calls ``SetVocabulary``, which 0.2.2 removed). If
that fails (no network, a version conflict), one message goes to stderr and the JSON line says
``"skipped": true`` with the reason; the exit status is 0.

Runs, in this order (JoeyNMT first, ours right after it):
  1. JoeyNMT with its own token batching (random order, no length bucketing),
  2. JoeyNMT on exactly our batches (the same sentences per step, in the same order: its batch sampler
     is replaced; --joey-batching own|ours|both picks these),
  3. ours: benchmarks/train_throughput.py (fp32, CPU), the recipe's batches.

JoeyNMT is run by benchmarks/_joeynmt_driver.py in its venv: JoeyNMT's own training loop, with hooks
that record per step what its "Tokens per Sec" log line is made of. Both sides count the same tokens:
real target tokens incl. EOS, without BOS and padding.

stdout: one JSON line, "figure": "joeynmt_compare"; progress goes to stderr.

    .venv/bin/python benchmarks/joeynmt_compare.py --steps 30 --warmup 5
    .venv/bin/python benchmarks/joeynmt_compare.py --threads 1 --extra-ours-args "--compile default"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
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
    cpu_name,
    cpuinfo,
    data_arguments,
    emit,
    info,
    install_venv,
    loadavg,
    prepare,
    resolve,
    venv_check,
    venv_python,
)

from seq2seq.data.batches import make_batches  # noqa: E402
from seq2seq.data.corpus import read_split  # noqa: E402
from seq2seq.data.token_ids import drop_reason  # noqa: E402
from seq2seq.data.tokenizer import load_tokenizers, spm_paths  # noqa: E402

HERE = Path(__file__).resolve().parent
JOEY_SPEC = "joeynmt==2.3.*"
# joeynmt 2.3.0's helpers.py imports importlib_metadata without declaring it as a dependency
JOEY_UNDECLARED = ["importlib_metadata"]
# its SentencePiece tokenizer calls SentencePieceProcessor.SetVocabulary, gone from sentencepiece 0.2.2 on
JOEY_CONSTRAINTS = ["sentencepiece<0.2.2"]
# what must import in the venv (prints the versions)
JOEY_CHECK = (
    "import joeynmt.training, sentencepiece, torch; "
    "assert hasattr(sentencepiece.SentencePieceProcessor, 'SetVocabulary'); "
    "print(joeynmt.__version__, torch.__version__)"
)
CPU_FLAGS = re.compile(r"^(avx2|avx512\w*|amx\w*|fma|avx_vnni\w*)$")
# str.splitlines() (JoeyNMT's file reader) also breaks lines at these; our reader splits at "\n" only
LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

TOKEN_COUNTING = {
    "tgt_tok_per_s": "both sides: real target tokens incl. EOS, without BOS and padding, per second of the "
    "timed steps. Ours: Batch.ntokens = sum(len(target) + 1). JoeyNMT: Batch.ntokens = "
    "(trg[:, 1:] != pad).sum(), which is what its 'Tokens per Sec' log line divides by the "
    "logging interval's wall time; no correction needed",
    "step_scope": "ours (train_throughput.py): batches collated before the clock; a step is forward, loss, "
    "backward, clipping, Adam. joeynmt_tgt_tok_per_s: the same scope, from the start of "
    "TrainManager._train_step to its log call (forward, loss, backward, clipping, Adam, scheduler). "
    "joeynmt_tgt_tok_per_s_as_logged: JoeyNMT's own interval (its train.log), which also covers "
    "fetching the next batch: SentencePiece encoding on the fly, length lookups and collation",
    "batch_size_ours": "seq2seq.data.batches.make_batches: length-sorted buckets; sentences x (longest side + 1) "
    "<= batch_tokens, the longest side being the longer of source and target pieces, +1 for EOS",
    "batch_size_joeynmt": "TokenBatchSampler, batch_type token: random order, no length bucketing; a batch "
    "closes once sentences x max(src + 1, trg + 1) >= batch_size (the sentence that crosses "
    "4096 is included), so its batches hold fewer real tokens and more padding",
}


JOEY_ATTENTION = {"additive": "bahdanau", "general": "luong"}  # JoeyNMT's two attentions


def joey_cannot(m) -> str:
    """Why JoeyNMT cannot build the recipe's model ('' when it can): its recurrent encoder and decoder
    are GRU or LSTM, its attention Bahdanau (additive) or Luong (general), without coverage."""
    if m.enc_cell not in ("gru", "lstm") or m.dec_cell not in ("gru", "lstm"):
        return f"JoeyNMT has GRU and LSTM cells only, not model.enc_cell={m.enc_cell} dec_cell={m.dec_cell}"
    if m.attention not in JOEY_ATTENTION or m.coverage:
        return f"JoeyNMT has additive and general attention only, without coverage, not {m.attention}" + (
            " with coverage" if m.coverage else ""
        )
    return ""


def joey_ties_softmax(m) -> bool:
    """JoeyNMT ties its output layer to the target embedding only when embedding_dim == decoder
    hidden_size (its output layer reads the hidden-sized attentional vector); ours ties whenever asked."""
    return m.tie_embeddings and m.emb_dim == m.dec_hidden


def describe_models(m) -> tuple[str, list[str]]:
    """(the model both sides train, how the two implementations of it differ), from the recipe's model."""
    enc = f"{'bi-' if m.bidirectional else ''}{m.enc_cell.upper()} {m.enc_layers}x{m.enc_hidden}"
    model = (
        f"emb {m.emb_dim}, {enc} encoder, {m.dec_cell.upper()} {m.dec_hidden} decoder ({m.dec_layers} "
        f"layer{'s' if m.dec_layers > 1 else ''}), {m.attention} attention, "
        f"{'' if m.input_feeding else 'no '}input feeding, bridge init, dropout {m.dropout}"
    )
    if not m.tie_embeddings:
        output = f"output layer: untied on both, {m.dec_hidden}x<vocab>"
    elif joey_ties_softmax(m):
        output = (
            f"output layer: both tie it to the target embedding (<vocab>x{m.emb_dim}); ours reads it "
            f"through a {m.dec_hidden}->{m.emb_dim} projection, JoeyNMT straight from its attentional vector"
        )
    else:
        output = (
            f"output layer: ours ties it to the target embedding through a {m.dec_hidden}->{m.emb_dim} "
            f"projection; JoeyNMT's tied_softmax needs embedding_dim == decoder hidden_size ({m.emb_dim} "
            f"!= {m.dec_hidden}), so its output layer is an untied {m.dec_hidden}x<vocab> matrix"
        )
    ours_embeddings = (
        "ours too (share_embeddings true)"
        if m.share_embeddings
        else "ours has separate source and target embeddings (share_embeddings false)"
    )
    differences = [
        f"JoeyNMT's decoder runs nn.{m.dec_cell.upper()} once per target position (embedding + attentional "
        "vector fed each step); ours hoists the input projection out of the loop (see train_throughput "
        "--baseline)",
        output,
        f"tied_embeddings: JoeyNMT shares one embedding between source and target (joint vocabulary); "
        f"{ours_embeddings}",
        f"attention: JoeyNMT's Bahdanau attention has the decoder's hidden size ({m.dec_hidden}) and no "
        f"bias; ours attn_dim {m.attn_dim}",
        f"dropout {m.dropout} on embeddings and before the attentional layer on both; JoeyNMT has none "
        "on the encoder outputs, ours does",
    ]
    return model, differences


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_arguments(p)
    p.add_argument(
        "--venv", default="", help="JoeyNMT's venv, created when missing (default: <workdir>/joeynmt-venv)"
    )
    p.add_argument("--steps", type=int, default=30, help="timed training steps per run (default: 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them (default: 5)")
    p.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads on both sides (0: torch's default)"
    )
    p.add_argument(
        "--joey-batching",
        choices=("own", "ours", "both"),
        default="both",
        help="JoeyNMT on its own token batches, on exactly ours, or both runs (default: both)",
    )
    side = p.add_mutually_exclusive_group()
    side.add_argument("--ours-only", action="store_true", help="skip JoeyNMT (no venv needed)")
    side.add_argument("--joey-only", action="store_true", help="skip our side")
    p.add_argument(
        "--extra-ours-args",
        default="",
        help='more arguments for train_throughput.py, one shell-quoted string, e.g. "--compile default"',
    )
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1, --warmup >= 0")
    return args


# ---------------------------------------------------------------------------------------------- machine


def cpu_info() -> dict:
    return {
        "model": cpu_name(),
        "flags": sorted(f for f in cpuinfo().get("flags", "").split() if CPU_FLAGS.match(f)),
        "logical_cpus": os.cpu_count(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


# ------------------------------------------------------------------------------------------ JoeyNMT venv


def joey_versions(venv: Path) -> Optional[tuple[str, str]]:
    """(joeynmt, torch) versions importable in the venv, or None."""
    parts = (venv_check(venv, JOEY_CHECK) or "").split()
    return (parts[0], parts[1]) if len(parts) == 2 else None


def ensure_venv(venv: Path) -> tuple[Optional[tuple[str, str]], str]:
    """JoeyNMT's venv, created and filled when needed: ((joeynmt, torch) versions, "") or (None, why)."""
    found = joey_versions(venv)
    if found and found[1].split("+")[0] == TORCH_PIN and found[0].startswith("2.3"):
        return found, ""
    out, why = install_venv(
        venv,
        [[f"torch=={TORCH_PIN}"], [JOEY_SPEC, *JOEY_UNDECLARED]],
        [f"torch=={TORCH_PIN}", *JOEY_CONSTRAINTS],
        JOEY_CHECK,
    )
    if out is None:
        return None, why
    found = joey_versions(venv)
    return (found, "") if found else (None, f"joeynmt does not import in {venv} after installation")


# ------------------------------------------------------------------------------------------- JoeyNMT data


def export_texts(cfg, folder: Path) -> dict:
    """Training pairs exactly as our benchmark keeps them (raw lines, one per line), a small dev set and
    the vocabulary file (our 8k pieces in id order), for JoeyNMT. Returns their paths, the SentencePiece
    model's and the kept training pairs' piece lengths ("lens": source, target)."""
    src_tok, tgt_tok = load_tokenizers(cfg.run_path)
    if src_tok.path != tgt_tok.path:
        raise SystemExit(
            "error: the recipe's SentencePiece model is not joint; JoeyNMT's tied embeddings need one"
        )
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    sl, tl = cfg.data.src_lang, cfg.data.tgt_lang
    kept: dict[str, tuple[list[str], list[str]]] = {}
    lens: tuple[list[int], list[int]] = ([], [])
    cleaned = 0
    for split, name in (("train", "train"), ("dev", "dev")):
        src, tgt = read_split(cfg, split)
        ks, kt = [], []
        for line_s, line_t, ids_s, ids_t in zip(src, tgt, src_tok.encode(src), tgt_tok.encode(tgt)):
            if drop_reason(ids_s, ids_t, cfg.train.max_len if split == "train" else None) is None:
                if LINE_BREAKS.search(line_s) or LINE_BREAKS.search(line_t):
                    cleaned += 1
                    line_s, line_t = LINE_BREAKS.sub(" ", line_s), LINE_BREAKS.sub(" ", line_t)
                ks.append(line_s)
                kt.append(line_t)
                if split == "train":
                    lens[0].append(len(ids_s))
                    lens[1].append(len(ids_t))
            if split == "dev" and len(ks) >= 100:  # never validated on; JoeyNMT only wants the files
                break
        kept[name] = (ks, kt)
        for lang, lines in ((sl, ks), (tl, kt)):
            (data / f"{name}.{lang}").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    vocab = folder / "vocab.txt"
    vocab.write_text("".join(src_tok.sp.IdToPiece(i) + "\n" for i in range(len(src_tok))), encoding="utf-8")
    return {
        "data": data,
        "vocab": vocab,
        "spm": src_tok.path,
        "train_pairs": len(kept["train"][0]),
        "lines_with_other_line_breaks_replaced": cleaned,
        "lens": lens,
    }


def export_corpus(cfg, folder: Path, warmup: int, steps: int) -> dict:
    """export_texts, and our first warmup + steps batches as index lists into its training files.
    Returns paths and our batches' stats."""
    texts = export_texts(cfg, folder)
    lens = texts.pop("lens")
    tc = cfg.train
    order = make_batches(lens[0], lens[1], tc.batch_tokens, tc.seed, 0)[: warmup + steps]
    if len(order) < warmup + steps:
        raise SystemExit(f"error: only {len(order)} batches in an epoch; ask for fewer --warmup + --steps")
    batches = folder / "batches-ours.json"
    batches.write_text(json.dumps(order))
    timed = order[warmup:]
    ntok = [sum(lens[1][i] + 1 for i in b) for b in timed]
    padded = [len(b) * (max(lens[1][i] for i in b) + 1) for b in timed]
    return {
        **texts,
        "batches": batches,
        "ours_timed_tgt_tokens": sum(ntok),
        "ours_batches": {
            "mean_sentences": round(sum(len(b) for b in timed) / len(timed), 1),
            "mean_tgt_tokens": round(sum(ntok) / len(timed), 1),
            "real_share_of_padded_tgt": round(sum(ntok) / sum(padded), 3),
        },
    }


def joey_config(cfg, exported: dict, model_dir: Path, updates: int) -> dict:
    m, tc = cfg.model, cfg.train
    side = {
        "level": "bpe",
        "lowercase": False,
        "normalize": False,
        "max_length": tc.max_len,
        "voc_file": str(exported["vocab"]),
        "tokenizer_type": "sentencepiece",
        "tokenizer_cfg": {"model_file": str(exported["spm"])},
    }
    emb = {"embedding_dim": m.emb_dim, "scale": False, "dropout": m.dropout}
    return {
        "name": "joeynmt_compare",
        "joeynmt_version": "2.3.0",
        "model_dir": str(model_dir),
        "use_cuda": False,
        "fp16": False,
        "random_seed": tc.seed,
        "data": {
            "train": str(exported["data"] / "train"),
            "dev": str(exported["data"] / "dev"),
            "dataset_type": "plain",
            "src": {"lang": cfg.data.src_lang, **side},
            "trg": {"lang": cfg.data.tgt_lang, **side},
        },
        "testing": {"beam_size": 1, "eval_metrics": ["bleu"]},
        "training": {
            "optimizer": "adam",
            "adam_betas": [0.9, 0.999],
            "learning_rate": tc.lr,
            "learning_rate_min": 1.0e-8,
            # a constant rate, as ours has before its first validation: x1.0 once per epoch. (Its
            # "plateau" passes ReduceLROnPlateau's `verbose`, which this torch no longer takes.)
            "scheduling": "exponential",
            "decrease_factor": 1.0,
            "weight_decay": tc.weight_decay,
            "loss": "crossentropy",
            "label_smoothing": tc.label_smoothing,
            "normalization": "tokens",
            "clip_grad_norm": tc.clip_norm,
            "batch_size": tc.batch_tokens,
            "batch_type": "token",
            "batch_multiplier": 1,
            "epochs": 1,
            "updates": updates,
            "validation_freq": 10**9,
            "logging_freq": 1,
            "shuffle": True,
            "overwrite": True,
            "keep_best_ckpts": 1,
            "print_valid_sents": [],
            "num_workers": 0,
        },
        "model": {
            "initializer": "xavier_uniform",
            "embed_initializer": "xavier_uniform",
            "bias_initializer": "zeros",
            "tied_embeddings": True,  # one joint vocabulary: source and target share an embedding
            "tied_softmax": joey_ties_softmax(m),  # as ours, where JoeyNMT can (see joey_ties_softmax)
            "encoder": {
                "type": "recurrent",
                "rnn_type": m.enc_cell,
                "embeddings": emb,
                "hidden_size": m.enc_hidden,
                "bidirectional": m.bidirectional,
                "num_layers": m.enc_layers,
                "dropout": m.dropout,
            },
            "decoder": {
                "type": "recurrent",
                "rnn_type": m.dec_cell,
                "embeddings": emb,
                "hidden_size": m.dec_hidden,
                "num_layers": m.dec_layers,
                "dropout": m.dropout,
                "hidden_dropout": m.dropout,
                "attention": JOEY_ATTENTION[m.attention],  # joey_cannot() has checked it
                "input_feeding": m.input_feeding,
                "init_hidden": "bridge",
            },
        },
    }


LOG_LINE = re.compile(r"Step:\s+(\d+),.*Tokens per Sec:\s+(\d+)")


def run_joey(args, cfg, venv: Path, exported: dict, folder: Path, batching: str) -> dict:
    """One JoeyNMT training run of warmup + steps updates; its per-step records and our summary of them."""
    updates = args.warmup + args.steps
    model_dir = folder / f"run-{batching}"
    conf = folder / f"config-{batching}.yaml"
    conf.write_text(yaml.safe_dump(joey_config(cfg, exported, model_dir, updates), sort_keys=False))
    out = folder / f"result-{batching}.json"
    out.unlink(missing_ok=True)
    cmd = [str(venv_python(venv)), str(HERE / "_joeynmt_driver.py"), "--config", str(conf), "--out", str(out)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if batching == "ours":
        cmd += ["--batches", str(exported["batches"])]
    info(f"JoeyNMT, {'our batches' if batching == 'ours' else 'its own batches'}: {updates} updates ({conf})")
    busy = CpuShare(children=True)
    log = folder / f"driver-{batching}.log"
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            fh.write(line)
            if "Step:" in line or "Error" in line or "Traceback" in line:
                info("  joeynmt: " + line.split(" - ")[-1].rstrip())
        rc = proc.wait()
    share = busy.other_busy()
    if rc or not out.is_file():
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"error: JoeyNMT training failed (exit {rc}); its output is in {log}")
    res = json.loads(out.read_text())
    recs = [r for r in res["steps"] if r["step"] > args.warmup]
    if len(recs) != args.steps:
        raise SystemExit(f"error: JoeyNMT logged {len(recs)} timed steps, expected {args.steps} (see {log})")
    tok = sum(r["ntokens"] for r in recs)
    if tok != sum(r["interval_tokens"] for r in recs):
        raise SystemExit(
            "error: JoeyNMT's interval token counts differ from its batches' (logging_freq != 1?)"
        )
    logged = {
        int(s): int(v)
        for s, v in LOG_LINE.findall((model_dir / "train.log").read_text(encoding="utf-8", errors="replace"))
    }
    # train.log's rounded 'Tokens per Sec' against our reading of the same step (same tokens, same clock)
    log_ok = all(
        r["step"] in logged and abs(logged[r["step"]] - r["interval_tokens"] / r["loop_seconds"]) <= 1.5
        for r in recs
    )
    busy_warning(share, f"JoeyNMT ({batching} batches)")
    step_s = sum(r["step_seconds"] for r in recs)
    loop_s = sum(r["loop_seconds"] for r in recs)
    sents = sum(r["nseqs"] for r in recs)
    padded = sum(r["nseqs"] * r["trg_len"] for r in recs)
    return {
        "version": res["joeynmt_version"],
        "torch": res["torch"],
        "threads": res["threads"],
        "params": res["params"],
        "tgt_tok_per_s": round(tok / step_s, 1),
        "tgt_tok_per_s_as_logged": round(tok / loop_s, 1),
        "train_log_tokens_per_sec": [logged.get(r["step"]) for r in recs],
        "train_log_matches_hooks": log_ok,
        "data_share_of_loop": round(1 - step_s / loop_s, 3) if loop_s > 0 else None,
        "timed_tgt_tokens": tok,
        "step_ms_median": round(statistics.median(r["step_seconds"] for r in recs) * 1000, 1),
        "other_cpu_busy": share,
        "loss_per_tok_first_last": [round(recs[0]["loss"], 4), round(recs[-1]["loss"], 4)],
        "batches": {
            "mean_sentences": round(sents / len(recs), 1),
            "mean_tgt_tokens": round(tok / len(recs), 1),
            "real_share_of_padded_tgt": round(tok / padded, 3),
            "mean_padded_src_len": round(sum(r["src_len"] for r in recs) / len(recs), 1),
            "mean_padded_tgt_len": round(sum(r["trg_len"] for r in recs) / len(recs), 1),
        },
        "log": str(model_dir / "train.log"),
    }


# ----------------------------------------------------------------------------------------------- ours


def run_ours(args) -> dict:
    cmd = [
        sys.executable,
        str(HERE / "train_throughput.py"),
        "--recipe",
        str(resolve(args.recipe)),
        "--mirror",
        str(resolve(args.mirror)) if args.mirror else "",
        "--workdir",
        str(resolve(args.workdir)),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--precision",
        "fp32",
        "--device",
        "cpu",
        *(["--threads", str(args.threads)] if args.threads else []),
        *shlex.split(args.extra_ours_args),
    ]
    info(f"ours: {shlex.join(cmd[1:])}")
    busy = CpuShare(children=True)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    share = busy.other_busy()
    if res.returncode:
        raise SystemExit(f"error: train_throughput.py failed (exit {res.returncode})")
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip().startswith("{")]
    tput = [x for x in lines if x.get("figure") == "train_throughput"]
    if not tput:
        raise SystemExit("error: train_throughput.py printed no train_throughput line")
    main = tput[0]
    busy_warning(share, "ours")
    st = main["settings"]
    return {
        "tgt_tok_per_s": main["tgt_tok_per_s"],
        "variants": {f"{x['precision']}/{x['variant']}": x["tgt_tok_per_s"] for x in tput},
        "threads": main["num_threads"],
        "torch": main["torch"],
        "params": st.get("params"),
        "timed_tgt_tokens": st.get("timed_tgt_tokens"),
        "step_ms_median": main["step_ms_median"],
        "other_cpu_busy": share,
        "loss_per_tok_first_last": main.get("loss_per_tok_first_last"),
        "mean_padded_tgt_len": st.get("mean_padded_tgt_len"),
        "mean_sentences": st.get("mean_sentences_per_batch"),
    }


# ----------------------------------------------------------------------------------------------- main


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = resolve(args.workdir)
    venv = resolve(args.venv) if args.venv else workdir / "joeynmt-venv"
    cfg = bench_config(Path(args.recipe), workdir)
    if not args.ours_only and joey_cannot(cfg.model):
        raise SystemExit(f"joeynmt_compare: {joey_cannot(cfg.model)} (--ours-only runs ours alone)")
    prepare(cfg, resolve(args.mirror) if args.mirror else None)
    src_model, _ = spm_paths(cfg.run_path)
    base = {"figure": "joeynmt_compare", "joeynmt_version": None}

    joey: dict[str, dict] = {}
    exported: dict = {}
    if not args.ours_only:
        versions, why = ensure_venv(venv)
        if versions is None:
            print(f"joeynmt_compare: skipped, JoeyNMT could not be installed: {why}", file=sys.stderr)
            emit(
                {
                    **base,
                    "skipped": True,
                    "reason": f"JoeyNMT could not be installed: {why}",
                    "venv": str(venv),
                }
            )
            return 0
        info(f"JoeyNMT {versions[0]} with torch {versions[1]} in {venv}")
        folder = workdir / "joeynmt"
        exported = export_corpus(cfg, folder, args.warmup, args.steps)
        info(f"exported {exported['train_pairs']} training pairs, vocabulary and our batches to {folder}")
        for batching in ("own", "ours") if args.joey_batching == "both" else (args.joey_batching,):
            joey[batching] = run_joey(args, cfg, venv, exported, folder, batching)
        if "ours" in joey and joey["ours"]["timed_tgt_tokens"] != exported["ours_timed_tgt_tokens"]:
            info(
                f"warning: JoeyNMT counted {joey['ours']['timed_tgt_tokens']} target tokens on our batches, "
                f"we count {exported['ours_timed_tgt_tokens']}: the pieces differ"
            )
    ours = None if args.joey_only else run_ours(args)

    own, same = joey.get("own"), joey.get("ours")
    model, differences = describe_models(cfg.model)
    o = ours["tgt_tok_per_s"] if ours else None
    rec = {
        **base,
        "joeynmt_version": next((j["version"] for j in joey.values()), None),
        "ours_tgt_tok_per_s": o,
        "joeynmt_tgt_tok_per_s": own["tgt_tok_per_s"] if own else None,
        "ratio": ratio(o, own and own["tgt_tok_per_s"]),
        "joeynmt_tgt_tok_per_s_as_logged": own["tgt_tok_per_s_as_logged"] if own else None,
        "ratio_vs_logged": ratio(o, own and own["tgt_tok_per_s_as_logged"]),
        "joeynmt_same_batches_tgt_tok_per_s": same["tgt_tok_per_s"] if same else None,
        "ratio_same_batches": ratio(o, same and same["tgt_tok_per_s"]),
        "cpu": cpu_info(),
        "torch": torch.__version__,
        "threads": ours["threads"] if ours else next((j["threads"] for j in joey.values()), None),
        "steps": args.steps,
        "warmup": args.warmup,
        "loadavg_1m": loadavg(),
        "other_cpu_busy": {
            **{f"joeynmt_{k}_batches": v["other_cpu_busy"] for k, v in joey.items()},
            **({"ours": ours["other_cpu_busy"]} if ours else {}),
        },
        "ours": ours,
        "joeynmt": {f"{k}_batches": v for k, v in joey.items()},
        "settings": {
            "recipe": Path(args.recipe).name,
            "corpus": f"multi30k {cfg.data.src_lang}-{cfg.data.tgt_lang} train",
            "train_pairs": exported.get("train_pairs"),
            "spm": f"{'joint ' if cfg.spm.joint else ''}{cfg.spm.model_type} {cfg.spm.vocab_size} ({src_model})",
            "joeynmt_tokenizer": "JoeyNMT's sentencepiece tokenizer on our joint model, vocabulary file = our "
            "pieces in id order; raw training lines = the pairs our benchmark keeps (max_len "
            f"{cfg.train.max_len})",
            "same_pieces_check": (
                None
                if not same
                else same["timed_tgt_tokens"] == exported["ours_timed_tgt_tokens"]
                and (ours is None or ours["timed_tgt_tokens"] == exported["ours_timed_tgt_tokens"])
            ),
            "ours_batches": exported.get("ours_batches"),
            "model": model,
            "model_differences": differences,
            "params": {
                "ours": ours["params"] if ours else None,
                **{f"joeynmt_{k}_batches": v["params"] for k, v in joey.items()},
            },
            "training": f"fp32, CPU, Adam lr {cfg.train.lr}, label smoothing {cfg.train.label_smoothing}, "
            f"clip_grad_norm {cfg.train.clip_norm}, loss summed / target tokens, batch {cfg.train.batch_tokens} "
            "tokens; JoeyNMT: validation_freq 1e9 (never), logging_freq 1",
            "extra_ours_args": args.extra_ours_args,
            "venv": str(venv) if joey else None,
            "token_counting": TOKEN_COUNTING,
        },
    }
    emit(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
