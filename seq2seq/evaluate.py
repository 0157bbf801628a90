"""sacreBLEU scores: the test splits of a recipe, any source/reference files, and tune-decode on dev.

BLEU's tokenizer follows the target language as sacreBLEU's ``-l``/``trg_lang`` does (``zh`` for
Chinese, ``ja-mecab`` for Japanese, ``ko-mecab`` for Korean, ``13a`` otherwise), unless
``decode.bleu_tokenize`` names one; the signature printed with every score says which was used.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import sacrebleu

from seq2seq import checkpoint as ckpt_io
from seq2seq import rundir
from seq2seq.config import Config, check_setting
from seq2seq.data import read_split
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_text

# sacreBLEU's choice by target language (sacrebleu.metrics.BLEU._TOKENIZER_MAP, a private name)
DEFAULT_TOKENIZER = sacrebleu.metrics.BLEU.TOKENIZER_DEFAULT  # 13a
LANGUAGE_TOKENIZERS = getattr(
    sacrebleu.metrics.BLEU, "_TOKENIZER_MAP", {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}
)


def bleu_tokenizer(tgt_lang: str, setting: str = "auto") -> str:
    """The sacreBLEU tokenizer for BLEU on ``tgt_lang`` text: ``setting`` unless it is "auto"; for
    auto, sacreBLEU's language default of the primary language subtag ("zh-CN" -> "zh")."""
    if setting != "auto":
        return setting
    primary = re.split(r"[-_]", tgt_lang.strip().lower())[0]
    return LANGUAGE_TOKENIZERS.get(primary, DEFAULT_TOKENIZER)


def bleu_metric(tokenize: str) -> sacrebleu.metrics.BLEU:
    """sacreBLEU's BLEU (cased, exp smoothing) with ``tokenize``; a tokenizer whose extra packages
    are missing (ja-mecab, ko-mecab) is a one-line error saying what to install."""
    try:
        return sacrebleu.metrics.BLEU(tokenize=tokenize)
    except Exception as e:  # sacrebleu raises RuntimeError/ImportError with a multi-line hint
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        install = next((x for x in lines if x.startswith("pip install")), "")
        raise UserError(
            f"BLEU tokenizer '{tokenize}' is not usable here: {lines[0] if lines else type(e).__name__}"
            + (f" ({install})" if install else "")
            + "; or set decode.bleu_tokenize (e.g. char)"
        ) from None


def check_bleu_tokenizer(cfg: Config) -> str:
    """The tokenizer ``cfg``'s BLEU uses, checked to be usable (a stage run before training calls it,
    so a missing package is reported before hours of training, not at the first validation)."""
    name = bleu_tokenizer(cfg.data.tgt_lang, cfg.decode.bleu_tokenize)
    bleu_metric(name)
    return name


def score_refs(
    hyps: list[str], refs: list[list[str]], tgt_lang: str = "", tokenize: str = "auto", ter: bool = False
) -> dict:
    """Corpus BLEU (cased, tokenizer by :func:`bleu_tokenizer`) and chrF of ``hyps`` against one or
    more reference streams (each as long as ``hyps``), with their sacreBLEU signatures; ``ter``: also
    sacreBLEU's TER (slower: test scores, not validation)."""
    bleu, chrf = bleu_metric(bleu_tokenizer(tgt_lang, tokenize)), sacrebleu.metrics.CHRF()
    b, c = bleu.corpus_score(hyps, refs), chrf.corpus_score(hyps, refs)
    out = {
        "bleu": round(b.score, 2),
        "chrf": round(c.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_detail": str(b),
    }
    if ter:
        metric = sacrebleu.metrics.TER()
        out.update(
            ter=round(metric.corpus_score(hyps, refs).score, 2), ter_signature=str(metric.get_signature())
        )
    return out


def score(
    hyps: list[str], refs: list[str], tgt_lang: str = "", tokenize: str = "auto", ter: bool = False
) -> dict:
    """:func:`score_refs` with one reference per hypothesis."""
    return score_refs(hyps, [refs], tgt_lang, tokenize, ter)


def evaluate(cfg: Config, checkpoint: Optional[str] = None, log: Callable[[str], None] = print) -> dict:
    """Translate every test split, write ``hyp.<split>.<lang>`` and ``results.json`` into the run
    directory (holding it); the files are written only once every split is decoded and scored."""
    with rundir.claim(cfg.run_path, cfg, "eval", create=False):
        return _evaluate(cfg, checkpoint, log)


def _evaluate(cfg: Config, checkpoint: Optional[str], log: Callable[[str], None]) -> dict:
    from seq2seq.translator import Translator

    run = cfg.run_path
    if not cfg.test_sets:
        return _nothing_to_score(cfg, log)
    which = checkpoint or cfg.decode.checkpoint
    translator = Translator.from_run_dirs([run], which, cfg.train.device)
    # decode settings come from the recipe given now (they may differ from training's)
    dc = cfg.decode
    results = {
        "run_dir": str(run),
        "checkpoint": str(ckpt_io.resolve(run, which)),
        "decode": asdict(dc),
        "device": str(translator.device),
        "tests": {},
    }
    lines, outputs = [], {}
    for split in cfg.test_sets:
        src, ref = read_split(cfg, split)
        start = time.perf_counter()
        hyps = translator.translate(src, dc, progress=True)
        seconds = time.perf_counter() - start
        outputs[run / f"hyp.{split}.{cfg.data.tgt_lang}"] = "".join(h + "\n" for h in hyps)
        s = score(hyps, ref, cfg.data.tgt_lang, dc.bleu_tokenize, ter=True)
        s.update(sentences=len(src), decode_seconds=round(seconds, 2))
        results["tests"][split] = s
        lines += format_scores(split, s, dc.beam_size)
    outputs[run / "results.json"] = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    outputs[run / "results.txt"] = "\n".join(lines) + "\n"
    for path, text in outputs.items():  # the hyps, then results.json and results.txt
        atomic_write_text(path, text)
    for line in lines:
        log(line)
    return results


def _nothing_to_score(cfg: Config, log: Callable[[str], None]) -> dict:
    """A recipe with only train and dev: results.json and results.txt say so (not an error)."""
    note = "nothing to score: data.splits names no test split besides train and dev"
    results = {"run_dir": str(cfg.run_path), "tests": {}, "note": note}
    atomic_write_text(cfg.run_path / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(cfg.run_path / "results.txt", note + "\n")
    log(note)
    return results


def _read_file(path: Path) -> list[str]:
    from seq2seq.fileio import read_lines

    if not path.is_file():
        raise UserError(f"file not found: {path}")
    with open(path, "rb") as f:
        return list(read_lines(f, str(path), hint=None))


def evaluate_files(
    run_dir: Path,
    src: Path,
    refs: list[Path],
    checkpoint: Optional[str] = None,
    overrides: tuple[str, ...] = (),
) -> tuple[dict, list[str]]:
    """Translate the lines of ``src`` with the run (its config.yaml plus ``overrides``, e.g.
    ``beam_size=8``) and score them against one or more reference files, line by line.
    Returns (results, hypotheses)."""
    import yaml

    from seq2seq.coerce import merge
    from seq2seq.config import SECTIONS, from_dict, parse_overrides
    from seq2seq.loadrun import load_run
    from seq2seq.model_folder import describe, is_model_folder, resolve
    from seq2seq.translator import Translator

    model_ref = describe(run_dir) if is_model_folder(run_dir) else None  # hf://...@COMMIT: pinned
    run_dir = resolve(run_dir)[0]
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        load_run(run_dir)  # its one-line error: not a run directory, or not trained yet
    values = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    cfg = from_dict(merge(values, parse_overrides(list(overrides)), SECTIONS))
    lines, ref_lines = _read_file(src), [_read_file(r) for r in refs]
    if not lines:
        raise UserError(f"{src}: no lines (the file is empty)")
    for path, r in zip(refs, ref_lines):
        if len(r) != len(lines):
            raise UserError(f"{path} has {len(r)} lines but {src} has {len(lines)}: one reference per line")
    which = checkpoint or cfg.decode.checkpoint
    translator = Translator.from_run_dirs([run_dir], which, cfg.train.device)
    start = time.perf_counter()
    hyps = translator.translate(lines, cfg.decode, progress=True)
    seconds = time.perf_counter() - start
    results = {
        "run_dir": str(run_dir),
        "checkpoint": model_ref or str(run_dir / "checkpoints" / f"{which}.pt"),
        "source": str(src),
        "references": [str(r) for r in refs],
        "sentences": len(lines),
        **score_refs(hyps, ref_lines, cfg.data.tgt_lang, cfg.decode.bleu_tokenize, ter=True),
        "decode_seconds": round(seconds, 2),
        "decode": asdict(cfg.decode),
    }
    return results, hyps


def format_scores(name: str, s: dict, beam: int) -> list[str]:
    """The lines printed for one scored set: scores, then both signatures."""
    return [
        f"{name}: BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}  ({s['sentences']} sentences, "
        f"beam {beam}, {s['decode_seconds']:.1f}s)",
        f"  {s['bleu_signature']}",
        f"  {s['chrf_signature']}",
    ] + ([f"  TER {s['ter']:.2f}  {s['ter_signature']}"] if "ter" in s else [])


def evaluate_command(
    target: Path,
    overrides: tuple[str, ...],
    checkpoint: Optional[str],
    src: Optional[Path],
    refs: tuple[Path, ...],
    output: Optional[Path],
    fmt: str = "text",
) -> dict:
    """``seq2seq evaluate``: a recipe file scores its test splits; a run directory scores ``src``
    against ``refs``. Prints text (scores and signatures) or, with ``fmt`` json, one JSON document."""
    from seq2seq.model_folder import is_hub

    if target.is_dir() or is_hub(target):
        if src is None or not refs:
            raise UserError(
                f"{target} is a run directory: give --src FILE --ref FILE (or a recipe, to score its test splits)"
            )
        results, hyps = evaluate_files(target, src, list(refs), checkpoint, tuple(overrides))
        if output is not None:
            atomic_write_text(output, "".join(h + "\n" for h in hyps))
        lines = format_scores(str(src), results, results["decode"]["beam_size"])
    else:
        if src is not None or refs or output is not None:
            raise UserError("--src, --ref and --output go with a run directory, not with a recipe")
        from seq2seq.config import load_config

        lines = []
        results = evaluate(load_config(target, list(overrides)), checkpoint, log=lines.append)
    if fmt == "json":
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        print("\n".join(lines))
    return results


def tune_decode(
    cfg: Config,
    beams: list[int],
    alphas: list[float],
    split: str = "dev",
    checkpoint: Optional[str] = None,
    log: Callable[[str], None] = print,
) -> dict:
    """BLEU on ``split`` for every beam size x length penalty; writes ``tune-decode.<split>.tsv`` (holding
    the run directory) and returns the best. ``split``: dev, never a test set or train.

    The length penalty only re-ranks a beam's finished hypotheses (which ones finish does not depend
    on it), so each beam size is decoded once, keeping every finished hypothesis (at most K - 1 ended
    by EOS plus K cut at the length limit), and re-scored for every alpha.
    """
    if split in cfg.test_sets:
        raise UserError(f"tune-decode never tunes on a test set, and '{split}' is one: use --split dev")
    if split not in cfg.data.splits or split == "train":
        raise UserError(f"tune-decode needs a held-out split of data.splits, not '{split}'")
    for beam in beams:
        check_setting("decode.beam_size", beam, "--beams")
    for alpha in alphas:
        check_setting("decode.length_penalty", alpha, "--alphas")
    with rundir.claim(cfg.run_path, cfg, "tune-decode", create=False):
        return _tune(cfg, beams, alphas, split, checkpoint, log)


def best_setting(rows: list[dict]) -> dict:
    """The tune-decode row to use: the highest BLEU; as scores are rounded to 2 decimals, ties are
    common and go to the higher chrF, then the smaller beam, then the row that came first (alphas in
    the order given)."""
    return max(rows, key=lambda r: (r["bleu"], r["chrf"], -r["beam_size"]))


def _tune(cfg: Config, beams, alphas, split: str, checkpoint: Optional[str], log) -> dict:
    import dataclasses

    from seq2seq.translator import Translator

    translator = Translator.from_run_dirs(
        [cfg.run_path], checkpoint or cfg.decode.checkpoint, cfg.train.device
    )
    src, ref = read_split(cfg, split)
    rows = []
    for beam in beams:
        dc = dataclasses.replace(cfg.decode, beam_size=beam, n_best=2 * beam)
        nbest = translator.hypotheses(src, dc)
        for alpha in alphas:
            best = [max(h, key=lambda x: x.rescore(alpha)) if h else None for h in nbest]
            hyps = [translator.tgt_tok.decode([b.tokens])[0] if b else "" for b in best]
            s = score(hyps, ref, cfg.data.tgt_lang, cfg.decode.bleu_tokenize)
            rows.append({"beam_size": beam, "length_penalty": alpha, "bleu": s["bleu"], "chrf": s["chrf"]})
            log(f"beam {beam:3d}  alpha {alpha:4.2f}  BLEU {s['bleu']:6.2f}  chrF {s['chrf']:6.2f}")
    table = "beam_size\tlength_penalty\tbleu\tchrf\n" + "".join(
        f"{r['beam_size']}\t{r['length_penalty']}\t{r['bleu']}\t{r['chrf']}\n" for r in rows
    )
    atomic_write_text(cfg.run_path / f"tune-decode.{split}.tsv", table)
    best = best_setting(rows)
    log(
        f"best on {split}: beam_size={best['beam_size']} length_penalty={best['length_penalty']} "
        f"(BLEU {best['bleu']:.2f}); written {cfg.run_path / f'tune-decode.{split}.tsv'}"
    )
    return best
