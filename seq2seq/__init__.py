"""seq2seq: a bidirectional-GRU encoder / attention-LSTM decoder NMT toolkit.

The package is one subpackage per pipeline stage, imported one way down this order::

    errors, constants, fileio, text  ->  config  ->  runs  ->  data  ->  model  ->  decode  ->  evaluation
    ->  training  ->  inspect  ->  cli

The Python API (each name imported on first use, so ``import seq2seq`` stays light)::

    from seq2seq import Translator, load_config, download, train_tokenizers, train, evaluate
    cfg = load_config("recipes/default.yaml", ["max_steps=200"])
    download(cfg); train_tokenizers(cfg); train(cfg); evaluate(cfg)
    t = Translator.load("data/default/run")
    t.translate(["I have twenty-one cats."], beam_size=5, n_best=1)
"""

import importlib

from seq2seq.constants import VERSION as __version__  # noqa: F401 (the package attribute)

# public name -> the module that defines it
API = {
    "Translator": "seq2seq.decode.translator",
    "Translation": "seq2seq.decode.translator",
    "load_config": "seq2seq.config.load",
    "Config": "seq2seq.config.schema",
    "UserError": "seq2seq.errors",
    "download": "seq2seq.data.corpus",
    "train_tokenizers": "seq2seq.data.tokenizer",
    "train": "seq2seq.training.setup",
    "evaluate": "seq2seq.evaluation.stage",
    "tune_decode": "seq2seq.evaluation.tune",
}
__all__ = list(API)


def __getattr__(name: str):
    if name in API:
        return getattr(importlib.import_module(API[name]), name)
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
