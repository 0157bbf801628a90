"""Looking at a run: a summary (``seq2seq info``) and PNG figures (``seq2seq plot``)."""

from __future__ import annotations

from seq2seq.inspect.info import format_info, run_info
from seq2seq.inspect.plots import plot_curves, plot_run

__all__ = ["run_info", "format_info", "plot_run", "plot_curves"]
