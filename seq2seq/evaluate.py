"""Decode the test splits with beam search and score them with sacreBLEU (BLEU and chrF)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import sacrebleu

from seq2seq.checkpoint import atomic_write_text
from seq2seq.config import Config
from seq2seq.data import read_split


def score(hyps: list[str], refs: list[str]) -> dict:
    """Corpus BLEU (13a tokenization, cased) and chrF with their sacreBLEU signatures."""
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    b, c = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
    return {"bleu": round(b.score, 2), "chrf": round(c.score, 2), "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()), "bleu_detail": str(b)}


def evaluate(cfg: Config, checkpoint: Optional[str] = None, log: Callable[[str], None] = print) -> dict:
    """Translate every test split, write ``hyp.<split>.<lang>`` and ``results.json`` into the run directory."""
    from seq2seq.translator import Translator

    run = cfg.run_path
    which = checkpoint or cfg.decode.checkpoint
    translator = Translator.from_run_dirs([run], which, cfg.train.device)
    # decode settings come from the recipe given now (they may differ from training's)
    dc = cfg.decode
    results = {"run_dir": str(run), "checkpoint": str(run / "checkpoints" / f"{which}.pt"),
               "decode": asdict(dc), "device": str(translator.device), "tests": {}}
    lines = []
    for split in cfg.test_sets:
        src, ref = read_split(cfg, split)
        start = time.perf_counter()
        hyps = translator.translate(src, dc)
        seconds = time.perf_counter() - start
        atomic_write_text(run / f"hyp.{split}.{cfg.data.tgt_lang}", "".join(h + "\n" for h in hyps))
        s = score(hyps, ref)
        s.update(sentences=len(src), decode_seconds=round(seconds, 2))
        results["tests"][split] = s
        lines.append(f"{split}: BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}  ({len(src)} sentences, "
                     f"beam {dc.beam_size}, {seconds:.1f}s)")
        lines.append(f"  {s['bleu_signature']}")
        lines.append(f"  {s['chrf_signature']}")
    atomic_write_text(run / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(run / "results.txt", "\n".join(lines) + "\n")
    for line in lines:
        log(line)
    return results
