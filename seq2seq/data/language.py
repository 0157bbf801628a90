"""Language identification of one line, by py3langid (langid.py's naive Bayes model over byte n-grams,
140 languages in 0.4; the model ships inside the wheel, so nothing is downloaded). Loading the model
takes about a second, once per process; a line then takes about 0.1 ms."""

from __future__ import annotations

import functools

from seq2seq.errors import UserError


@functools.lru_cache(maxsize=1)
def _identifier():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise UserError(
            "config key 'clean.language' needs py3langid, a dependency of seq2seq: pip install 'py3langid>=0.4'"
        ) from None

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def base_language(lang: str) -> str:
    """The language code of a corpus language name: ``de`` of ``de``, ``de-src``, ``de_DE``."""
    return lang.replace("_", "-").split("-")[0].lower()


def check_language(lang: str, key: str) -> str:
    """``lang``'s base code if the identifier knows it, else a UserError naming the config ``key``."""
    code = base_language(lang)
    if code not in _identifier().labels:
        raise UserError(
            f"config key '{key}': the language identifier does not know {code!r} (from {lang!r}); "
            f"it knows {', '.join(sorted(_identifier().labels))}"
        )
    return code


def identify(line: str) -> tuple[str, float]:
    """(the most probable language's code, its probability) of one line."""
    lang, prob = _identifier().classify(line)
    return lang, float(prob)
