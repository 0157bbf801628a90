"""What a training run reports: log lines, metrics.jsonl, TensorBoard events, a progress bar.

On a terminal a tqdm bar shows step, loss, tokens/s, learning rate and ETA; elsewhere (CI, files)
only the periodic log lines are printed. Every line also goes to ``<run_dir>/train.log`` with its
wall time, through the standard :mod:`logging` module (logger ``seq2seq.training.<run>``); every scalar
goes to ``<run_dir>/metrics.jsonl`` (read by ``seq2seq plot``/``info``) and to TensorBoard event
files in ``<run_dir>/tensorboard/``. A resumed run drops what was logged after its step.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional

from seq2seq.constants import METRICS, TENSORBOARD, TRAIN_LOG
from seq2seq.fileio import append_text, atomic_write_text

LOG_FORMAT = "%(asctime)s %(message)s"  # train.log: "2025-01-31 14:02:07 step 100 epoch 1: loss ..."
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def run_logger(run_dir: Path) -> logging.Logger:
    """The logger of one run: appends timestamped lines to ``<run_dir>/train.log`` (flushed per line);
    it does not propagate, since the console gets the lines without timestamps."""
    path = (Path(run_dir) / TRAIN_LOG).resolve()
    logger = logging.getLogger("seq2seq.training." + str(path.parent).replace(".", "_"))
    for old in list(logger.handlers):  # a second Monitor for the same run (e.g. in one test process)
        logger.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    return out


TIMED_LINES = ("step ", "validation step ", "finished at step ")  # their stdout lines show the elapsed time


class Monitor:
    def __init__(
        self,
        run_dir: Path,
        start_step: int = 0,
        total_steps: Optional[int] = None,
        tensorboard: bool = True,
        stream=None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stream = stream or sys.stdout
        self.logger = run_logger(self.run_dir)
        kept = [m for m in read_metrics(self.run_dir) if m.get("step", 0) <= start_step]
        atomic_write_text(self.run_dir / METRICS, "".join(json.dumps(m) + "\n" for m in kept))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency; a broken install only loses the events
                self.log("warning: tensorboard is not importable; no event files are written")
            else:
                self.writer = SummaryWriter(str(self.run_dir / TENSORBOARD), purge_step=start_step or None)
        self.started = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_steps or None,
                initial=start_step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                leave=False,
            )

    def log(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=self.stream)
        else:  # off a terminal there is no progress bar: step and validation lines carry the time (as fairseq's wall)
            wall = f"  wall {datetime.timedelta(seconds=round(time.monotonic() - self.started))}"
            print(msg + (wall if msg.startswith(TIMED_LINES) else ""), file=self.stream, flush=True)
        self.logger.info(msg)

    def scalars(self, kind: str, step: int, values: dict[str, float]) -> None:
        """Record e.g. scalars("train", 100, {"loss": 2.3, "lr": 1e-3})."""
        append_text(self.run_dir / METRICS, json.dumps({"kind": kind, "step": step, **values}) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{kind}/{name}", value, step)
            self.writer.flush()

    def advance(self, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()
