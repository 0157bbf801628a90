"""sacreBLEU scores of hypotheses against references: BLEU (tokenizer by :mod:`seq2seq.config.bleu`) and
chrF (and TER where asked), each with its signature."""

from __future__ import annotations

import sacrebleu

from seq2seq.config.bleu import bleu_metric, bleu_tokenizer


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
