"""tune-decode: BLEU on dev for a grid of beam sizes and length penalties, to choose a recipe's decoding
(never on a test set)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from seq2seq.config.rules import check_setting
from seq2seq.config.schema import Config
from seq2seq.data.corpus import read_split
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.evaluation.metrics import score
from seq2seq.fileio import atomic_write_text
from seq2seq.runs import ownership as rundir


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
    if split not in cfg.data.split_names or split == "train":
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
