"""Scoring: sacreBLEU metrics, the evaluate stage (test splits or any files), and tune-decode on dev."""

from __future__ import annotations

from seq2seq.evaluation.metrics import score, score_refs
from seq2seq.evaluation.stage import evaluate, evaluate_files
from seq2seq.evaluation.tune import tune_decode

__all__ = ["score", "score_refs", "evaluate", "evaluate_files", "tune_decode"]
