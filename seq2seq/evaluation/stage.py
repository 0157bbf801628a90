"""The evaluate stage: translate a recipe's test splits (or any source file) with a trained run and score
them with sacreBLEU; results.json / results.txt in the run directory."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import yaml

from seq2seq.config.load import from_dict, parse_overrides
from seq2seq.config.schema import SECTIONS, Config
from seq2seq.config.values import merge
from seq2seq.constants import CONFIG, RESULTS_JSON, RESULTS_TXT
from seq2seq.data.corpus import read_split
from seq2seq.decode.loading import load_run
from seq2seq.decode.model_folder import describe, is_hub, is_model_folder, resolve
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.evaluation.metrics import score, score_refs
from seq2seq.fileio import atomic_write_text, check_not_an_input, read_lines
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs import ownership as rundir
from seq2seq.runs.settings import load_for_run
from seq2seq.text import normalize


def evaluate(cfg: Config, checkpoint: Optional[str] = None, log: Callable[[str], None] = print) -> dict:
    """Translate every test split, write ``hyp.<split>.<lang>`` and ``results.json`` into the run
    directory (holding it); the files are written only once every split is decoded and scored."""
    with rundir.claim(cfg.run_path, cfg, "eval", create=False):
        return _evaluate(cfg, checkpoint, log)


def _evaluate(cfg: Config, checkpoint: Optional[str], log: Callable[[str], None]) -> dict:
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
    outputs[run / RESULTS_JSON] = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    outputs[run / RESULTS_TXT] = "\n".join(lines) + "\n"
    for path, text in outputs.items():  # the hyps, then results.json and results.txt
        atomic_write_text(path, text)
    for line in lines:
        log(line)
    return results


def _nothing_to_score(cfg: Config, log: Callable[[str], None]) -> dict:
    """A recipe with only train and dev: results.json and results.txt say so (not an error)."""
    note = "nothing to score: data.splits names no test split besides train and dev"
    results = {"run_dir": str(cfg.run_path), "tests": {}, "note": note}
    atomic_write_text(cfg.run_path / RESULTS_JSON, json.dumps(results, indent=2) + "\n")
    atomic_write_text(cfg.run_path / RESULTS_TXT, note + "\n")
    log(note)
    return results


def _read_file(path: Path) -> list[str]:
    """The normalized lines of a source or reference file (:func:`seq2seq.text.normalize`); anything
    readable is one, as for translate -i (/dev/stdin, ``<(...)``)."""
    if not path.exists():
        raise UserError(f"file not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a file")
    with open(path, "rb") as f:  # a file, or a pipe (--ref <(...)): read once
        return [normalize(line) for line in read_lines(f, str(path), hint=None)]


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
    model_ref = describe(run_dir) if is_model_folder(run_dir) else None  # hf://...@COMMIT: pinned
    run_dir = resolve(run_dir)[0]
    cfg_path = run_dir / CONFIG
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
        "checkpoint": model_ref or str(ckpt_io.resolve(run_dir, which)),
        "source": str(src),
        "references": [str(r) for r in refs],
        "sentences": len(lines),
        **score_refs(hyps, ref_lines, cfg.data.tgt_lang, cfg.decode.bleu_tokenize, ter=True),
        "decode_seconds": round(seconds, 2),
        "decode": asdict(cfg.decode),
    }
    return results, hyps


def format_scores(name: str, s: dict, beam: int) -> list[str]:
    """The lines printed for one scored set: scores, then the signatures (TER's with its score)."""
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
) -> tuple[dict, list[str]]:
    """``seq2seq evaluate``: a recipe file scores its test splits; a run directory scores ``src``
    against ``refs``. Returns the results and the lines to print (scores and signatures)."""
    if target.is_dir() or is_hub(target):
        if src is None or not refs:
            raise UserError(
                f"{target} is a run directory: give --src FILE --ref FILE (or a recipe, to score its test splits)"
            )
        check_not_an_input(output, [("--src", src)] + [("--ref", r) for r in refs])
        results, hyps = evaluate_files(target, src, list(refs), checkpoint, tuple(overrides))
        if output is not None:
            atomic_write_text(output, "".join(h + "\n" for h in hyps))
        lines = format_scores(str(src), results, results["decode"]["beam_size"])
    else:
        if src is not None or refs or output is not None:
            raise UserError("--src, --ref and --output go with a run directory, not with a recipe")
        lines = []
        results = evaluate(load_for_run(target, tuple(overrides)), checkpoint, log=lines.append)
    return results, lines
