"""What one decoding step may pick, and how it picks: :class:`Rules` mask the log-probabilities (a
minimum length, no repeated n-grams) the same way in every search; :func:`argmax` is greedy's choice
and :func:`draw` samples (temperature, top-k)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from seq2seq.config.schema import DecodeConfig
from seq2seq.constants import EOS, PAD


@dataclass(frozen=True)
class Rules:
    """What a decoding step may not pick besides PAD and BOS: EOS before ``min_len`` output pieces, and
    a piece that would complete an n-gram of ``no_repeat_ngram`` pieces already in the output."""

    min_len: int = 0
    no_repeat_ngram: int = 0  # 0 = off

    @classmethod
    def of(cls, cfg: DecodeConfig) -> "Rules":
        return cls(cfg.min_len, cfg.no_repeat_ngram)

    def apply(self, logp: torch.Tensor, t: int, tokens: Optional[torch.Tensor]) -> None:
        """Mask ``logp`` (R, V) in place: the log-probs of output position ``t`` after ``tokens`` (R, t),
        the pieces so far (needed only for no_repeat_ngram). A row left with nothing may end (EOS)."""
        if t < self.min_len:
            logp[:, EOS] = float("-inf")
        n = self.no_repeat_ngram
        if n and t >= n:
            windows = tokens.unfold(1, n, 1)  # (R, t - n + 1, n): every n-gram so far
            prefix = tokens[:, t - n + 1 :]  # (R, n - 1): what the next piece would complete
            seen = (windows[:, :, :-1] == prefix.unsqueeze(1)).all(-1)  # (R, t - n + 1)
            logp.scatter_(1, windows[:, :, -1].masked_fill(~seen, PAD), float("-inf"))
        if self.min_len or n:
            stuck = torch.isinf(logp).all(1)  # (R,)
            logp[:, EOS] = torch.where(stuck, torch.zeros_like(logp[:, EOS]), logp[:, EOS])


NO_RULES = Rules()


def argmax(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob, id) of the most likely piece per row of ``logp`` (R, V): greedy's choice."""
    return logp.max(dim=1)


def draw(
    logp: torch.Tensor, temperature: float = 1.0, topk: int = 0, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob, id) of a piece drawn per row from softmax(logp / temperature) over the ``topk`` most
    likely pieces (0: all); the log-prob is the model's own (before temperature). logp (R, V)."""
    scaled = logp.float() / temperature
    if 0 < topk < scaled.size(1):
        kth = scaled.topk(topk, dim=1).values[:, -1:]  # (R, 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    tok = torch.multinomial(torch.softmax(scaled, dim=1), 1, generator=generator)  # (R, 1)
    return logp.gather(1, tok).squeeze(1), tok.squeeze(1)
