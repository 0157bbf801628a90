"""Which BLEU a recipe means: sacreBLEU's tokenizer for the target language (or ``decode.bleu_tokenize``),
checked to be usable here before any stage that needs it runs.

BLEU's tokenizer follows the target language as sacreBLEU's ``-l``/``trg_lang`` does (``zh`` for
Chinese, ``ja-mecab`` for Japanese, ``ko-mecab`` for Korean, ``13a`` otherwise), unless
``decode.bleu_tokenize`` names one; the signature printed with every score says which was used.
"""

from __future__ import annotations

import re

import sacrebleu

from seq2seq.config.schema import Config
from seq2seq.errors import UserError

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
