"""Decode the test splits with beam search and score them with sacreBLEU (BLEU and chrF)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Callable, Optional

import sacrebleu

from seq2seq import rundir
from seq2seq.config import Config, check_setting
from seq2seq.data import read_split
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_text


def score(hyps: list[str], refs: list[str]) -> dict:
    """Corpus BLEU (13a tokenization, cased) and chrF with their sacreBLEU signatures."""
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    b, c = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
    return {
        "bleu": round(b.score, 2),
        "chrf": round(c.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_detail": str(b),
    }


def evaluate(cfg: Config, checkpoint: Optional[str] = None, log: Callable[[str], None] = print) -> dict:
    """Translate every test split, write ``hyp.<split>.<lang>`` and ``results.json`` into the run
    directory (holding it); the files are written only once every split is decoded and scored."""
    with rundir.claim(cfg.run_path, cfg, "eval", create=False):
        return _evaluate(cfg, checkpoint, log)


def _evaluate(cfg: Config, checkpoint: Optional[str], log: Callable[[str], None]) -> dict:
    from seq2seq.translator import Translator

    run = cfg.run_path
    which = checkpoint or cfg.decode.checkpoint
    translator = Translator.from_run_dirs([run], which, cfg.train.device)
    # decode settings come from the recipe given now (they may differ from training's)
    dc = cfg.decode
    results = {
        "run_dir": str(run),
        "checkpoint": str(run / "checkpoints" / f"{which}.pt"),
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
        s = score(hyps, ref)
        s.update(sentences=len(src), decode_seconds=round(seconds, 2))
        results["tests"][split] = s
        lines.append(
            f"{split}: BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}  ({len(src)} sentences, "
            f"beam {dc.beam_size}, {seconds:.1f}s)"
        )
        lines.append(f"  {s['bleu_signature']}")
        lines.append(f"  {s['chrf_signature']}")
    outputs[run / "results.json"] = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    outputs[run / "results.txt"] = "\n".join(lines) + "\n"
    for path, text in outputs.items():  # the hyps, then results.json and results.txt
        atomic_write_text(path, text)
    for line in lines:
        log(line)
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
            s = score(hyps, ref)
            rows.append({"beam_size": beam, "length_penalty": alpha, "bleu": s["bleu"], "chrf": s["chrf"]})
            log(f"beam {beam:3d}  alpha {alpha:4.2f}  BLEU {s['bleu']:6.2f}  chrF {s['chrf']:6.2f}")
    table = "beam_size\tlength_penalty\tbleu\tchrf\n" + "".join(
        f"{r['beam_size']}\t{r['length_penalty']}\t{r['bleu']}\t{r['chrf']}\n" for r in rows
    )
    atomic_write_text(cfg.run_path / f"tune-decode.{split}.tsv", table)
    best = max(rows, key=lambda r: (r["bleu"], -r["beam_size"]))
    log(
        f"best on {split}: beam_size={best['beam_size']} length_penalty={best['length_penalty']} "
        f"(BLEU {best['bleu']:.2f}); written {cfg.run_path / f'tune-decode.{split}.tsv'}"
    )
    return best
