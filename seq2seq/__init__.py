"""seq2seq: a bidirectional-GRU encoder / attention-LSTM decoder NMT toolkit.

The Python API is :class:`seq2seq.Translator` (imported on first use, so ``import seq2seq`` stays
light)::

    from seq2seq import Translator
    t = Translator.load("data/default/run")
    t.translate(["I have twenty-one cats."], beam_size=5, n_best=1)
"""

__version__ = "0.1.0"
__all__ = ["Translator", "Translation"]


def __getattr__(name: str):
    if name in __all__:
        from seq2seq import translator

        return getattr(translator, name)
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
