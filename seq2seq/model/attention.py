"""Attention over encoder states: additive (Bahdanau) and multiplicative (Luong dot / general).

Keys are projected once per batch (:meth:`Attention.project_keys`); each decoder step then
costs one query projection and a score over the source positions.

Additive attention with coverage (Tu et al. 2016, the linguistics-free variant) also scores the
attention each source position got so far: score = v . tanh(W_k k + W_q q + w_c cov). Kind ``none`` is
the plain encoder-decoder (Cho et al. 2014): the "keys" are the encoder's final state at every
position, the context is that fixed summary at every step, and the weights are all 0.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, kind: str, query_dim: int, memory_dim: int, attn_dim: int, coverage: bool = False):
        super().__init__()
        self.kind = kind
        if kind == "additive":  # score = v . tanh(W_k k + W_q q [+ w_c cov])
            self.key_proj = nn.Linear(memory_dim, attn_dim, bias=False)
            self.query_proj = nn.Linear(query_dim, attn_dim)
            self.v = nn.Linear(attn_dim, 1, bias=False)
            self.coverage_proj = nn.Linear(1, attn_dim, bias=False) if coverage else None
        elif kind == "general":  # score = q . (W k)
            self.key_proj = nn.Linear(memory_dim, query_dim, bias=False)
        elif kind == "dot":  # score = q . k
            if query_dim != memory_dim:
                raise ValueError(f"dot attention needs query_dim == memory_dim ({query_dim} != {memory_dim})")
        elif kind != "none":
            raise ValueError(f"unknown attention {kind!r}")
        if coverage and kind != "additive":
            raise ValueError("coverage needs additive attention")

    def project_keys(self, memory: torch.Tensor, final: Optional[torch.Tensor] = None) -> torch.Tensor:
        """memory (B, S, M) -> keys (B, S, K); K = attn_dim (additive) or query_dim. Kind none: the encoder's
        final state ``final`` (B, M) repeated at every position (a view), K = M."""
        if self.kind == "none":
            return final.unsqueeze(1).expand(-1, memory.size(1), -1)
        return memory if self.kind == "dot" else self.key_proj(memory)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
        coverage: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q), keys (B, S, K), memory (B, S, M), mask (B, S) True at real tokens, coverage (B, S)
        the weights summed over the previous steps (None: no coverage).

        Returns context (B, M) and weights (B, S); padded positions get weight exactly 0. Kind none: the
        fixed context keys[:, 0] and weights 0 everywhere.
        """
        if self.kind == "none":
            return keys[:, 0], torch.zeros_like(mask, dtype=torch.float32)
        if self.kind == "additive" and coverage is not None:
            pre = keys + self.query_proj(query).unsqueeze(1) + self.coverage_proj(coverage.unsqueeze(2))
            scores = self.v(torch.tanh(pre)).squeeze(2)  # (B, S)
        elif self.kind == "additive":
            scores = self.v(torch.tanh(keys + self.query_proj(query).unsqueeze(1))).squeeze(2)  # (B, S)
        else:
            scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # (B, S)
        scores = scores.float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # (B, S)
        context = torch.bmm(weights.to(memory.dtype).unsqueeze(1), memory).squeeze(1)  # (B, M)
        return context, weights
