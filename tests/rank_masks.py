"""Run by tests/test_distributed.py in each of two processes (not a test module): resume a run, then
write this rank's next dropout and word-dropout masks, and whether it restored its own saved generator
state, to OUT/rank<r>.json.

    python tests/rank_masks.py RECIPE OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from seq2seq import checkpoint as ckpt_io
from seq2seq.config import load_config
from seq2seq.training import build_trainer

cfg = load_config(sys.argv[1])
trainer = build_trainer(cfg, log=lambda *_: None)  # resumes from last.pt
rank = trainer.dist.rank
saved = ckpt_io.load(cfg.run_path / "checkpoints" / "last.pt").get("rng")
restored = saved is not None and torch.equal(torch.get_rng_state(), saved[rank]["cpu"])
trainer.model.train()
dropout = trainer.model.encoder.drop(torch.ones(256)).ne(0).tolist()  # the model's own dropout
word = (torch.rand(256) < cfg.model.word_dropout).tolist()  # what Seq2Seq.encode draws
result = {"resumed": trainer.resumed, "restored": restored, "dropout": dropout, "word": word}
Path(sys.argv[2], f"rank{rank}.json").write_text(json.dumps(result))
trainer.dist.close()
