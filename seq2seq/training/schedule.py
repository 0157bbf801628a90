"""The learning-rate schedule: warm-up, then cosine decay to ``min_lr`` or plateau reductions.

:func:`get_lr` is a pure function of the step (as nanoGPT's ``get_lr(it)``); the plateau part needs
memory of past validations, kept by :class:`Schedule` (``observe`` after each validation) and saved
in checkpoints through ``state_dict``.
"""

from __future__ import annotations

import math

from seq2seq.config.schema import TrainConfig


def get_lr(step: int, tc: TrainConfig, plateau_scale: float = 1.0) -> float:
    """The learning rate of optimizer step ``step`` (1-based): lr x linear warm-up x (cosine decay to
    min_lr over max_steps | plateau_scale, never below min_lr)."""
    warm = min(1.0, step / tc.warmup_steps) if tc.warmup_steps else 1.0
    if tc.lr_schedule == "cosine":
        frac = min(1.0, max(0, step - tc.warmup_steps) / max(1, tc.max_steps - tc.warmup_steps))
        lr = tc.min_lr + (tc.lr - tc.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
    else:
        lr = max(tc.min_lr, tc.lr * plateau_scale)
    return lr * warm


class Schedule:
    """``lr(step)`` plus the plateau tracker: after ``lr_patience`` validations without a new best dev
    BLEU the rate is multiplied by ``lr_factor`` (plateau schedule only)."""

    def __init__(self, tc: TrainConfig):
        self.tc = tc
        self.scale = 1.0  # product of the plateau reductions so far
        self.bad = 0  # validations without improvement since the last reduction

    def lr(self, step: int) -> float:
        return get_lr(step, self.tc, self.scale)

    def observe(self, improved: bool) -> None:
        """Record one validation's outcome."""
        if improved:
            self.bad = 0
        elif self.tc.lr_schedule == "plateau":
            self.bad += 1
            if self.bad >= self.tc.lr_patience:
                self.scale, self.bad = self.scale * self.tc.lr_factor, 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.bad = float(state["scale"]), int(state["bad"])
