"""Decoding in one room: search (greedy, beam, sampling) as plain functions over ``encode`` /
``decode_step``, step constraints, loading a trained run, the :class:`Translator` API, translating files
and attention heatmaps."""

from __future__ import annotations

from seq2seq.decode.loading import load_run, load_run_with_tokenizers
from seq2seq.decode.search import Hypothesis, beam_search, decode, greedy, sample
from seq2seq.decode.translator import Translation, Translator

__all__ = [
    "Translator",
    "Translation",
    "Hypothesis",
    "decode",
    "greedy",
    "beam_search",
    "sample",
    "load_run",
    "load_run_with_tokenizers",
]
