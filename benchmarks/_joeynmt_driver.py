"""Runs JoeyNMT 2.3 training for joeynmt_compare.py and translate_compare.py, and (``--latency``) times
single sentences for translate_compare.py, inside JoeyNMT's own venv (never the project's).

Only the standard library, torch and joeynmt are imported here. Training is JoeyNMT's own
``joeynmt.training.train`` (what ``python -m joeynmt train CONFIG --skip-test`` runs), with two
read-only hooks on ``TrainManager`` that record what its log line "Tokens per Sec" is made of, per step
(the config sets ``logging_freq: 1``):

* ``_log_scores(epoch, elapsed_time, start_tokens, ...)``: JoeyNMT's own interval time (wall clock
  from the end of the previous step's logging to this step's, so it includes fetching and collating
  the batch, which JoeyNMT tokenises on the fly) and the interval's tokens (``Batch.ntokens``: target
  tokens incl. EOS, no BOS, no padding);
* ``_train_step(batch)``: the batch's shape and the clock at its start, so that "step_seconds" covers
  forward, loss, backward, gradient clipping, the optimizer and scheduler step, as the other side's
  benchmark times a step (batches collated beforehand).

With ``--batches FILE`` (a JSON list of index lists into the training files), JoeyNMT's token batch
sampler yields exactly those batches, in that order, instead of its own.

Writes a JSON object to ``--out``: {"joeynmt_version", "torch", "threads", "params", "steps": [...]}.

With ``--latency FILE``, no training: the trained model of the config's model_dir (its latest
checkpoint) is loaded through JoeyNMT's Python API (``joeynmt.hub_interface``: ``_from_pretrained`` and
``TranslatorHubInterface``, what ``torch.hub.load(..., "joeynmt")`` returns), and each line of FILE is
translated alone, ``translate([line])`` with the config's testing settings (beam, alpha), after
``--warmup`` untimed lines; ``--out`` gets {"joeynmt_version", "torch", "threads", "seconds": [...]},
each call's wall time (SentencePiece encoding, search, decoding).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batches", default="")
    p.add_argument("--latency", default="", help="time single sentences of this file instead of training")
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.latency:
        return latency(args)

    import joeynmt
    from joeynmt import datasets, training
    from joeynmt.config import load_config
    from joeynmt.helpers import make_model_dir
    from joeynmt.helpers_for_ddp import get_logger

    cfg = load_config(Path(args.config))
    model_dir = Path(cfg["model_dir"])
    make_model_dir(model_dir, overwrite=True)  # as `python -m joeynmt train` does
    shutil.copy2(args.config, model_dir / "config.yaml")
    get_logger("", log_file=str(model_dir / "train.log"))

    if args.batches:
        fixed = json.loads(Path(args.batches).read_text())

        def fixed_iter(self):
            yield from (list(b) for b in fixed)

        datasets.TokenBatchSampler.__iter__ = fixed_iter

    steps: list[dict] = []
    pending: dict = {}
    tm = training.TrainManager
    orig_train_step, orig_log_scores = tm._train_step, tm._log_scores

    def train_step(self, batch):
        pending.update(
            t0=time.perf_counter(),
            nseqs=int(batch.nseqs),
            ntokens=int(batch.ntokens),
            src_tokens=int(batch.src_length.sum()),  # incl. EOS
            src_len=int(batch.src.size(1)),
            trg_len=int(batch.trg.size(1)),  # target side incl. EOS column
        )
        return orig_train_step(self, batch)

    def log_scores(self, epoch_no, elapsed_time, start_tokens, start_correct, total_batch_loss):
        t1 = time.perf_counter()
        steps.append(
            {
                "step": int(self.stats.steps),
                "loop_seconds": float(elapsed_time),
                "step_seconds": t1 - pending["t0"],
                "interval_tokens": int(self.stats.total_tokens - start_tokens),
                "loss": float(total_batch_loss),
                **{k: v for k, v in pending.items() if k != "t0"},
            }
        )
        return orig_log_scores(self, epoch_no, elapsed_time, start_tokens, start_correct, total_batch_loss)

    orig_init = tm.__init__
    params: dict = {}

    def init(self, *a, **kw):
        orig_init(self, *a, **kw)
        params["n"] = sum(p.numel() for p in self.model.parameters())  # tied weights once

    tm.__init__, tm._train_step, tm._log_scores = init, train_step, log_scores
    training.train(rank=0, world_size=None, cfg=cfg, skip_test=True)

    result = {
        "joeynmt_version": getattr(joeynmt, "__version__", None),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "params": params.get("n"),
        "steps": steps,
    }
    Path(args.out).write_text(json.dumps(result))
    return 0


def latency(args) -> int:
    """Single-sentence wall times through JoeyNMT's Python API (see the module's docstring)."""
    import joeynmt
    import torch
    from joeynmt.config import load_config
    from joeynmt.hub_interface import TranslatorHubInterface, _from_pretrained

    cfg = load_config(Path(args.config))
    model, dataset, hub_args = _from_pretrained(cfg["model_dir"], cfg_file=args.config)
    hub = TranslatorHubInterface(model, dataset, hub_args)
    lines = [x.rstrip("\n") for x in Path(args.latency).read_text(encoding="utf-8").splitlines()]
    for line in lines[: args.warmup]:
        hub.translate([line])
    seconds = []
    for line in lines:
        t0 = time.perf_counter()
        hub.translate([line])
        seconds.append(time.perf_counter() - t0)
    result = {
        "joeynmt_version": getattr(joeynmt, "__version__", None),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
    }
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
