"""Attention over encoder states: additive (Bahdanau) and multiplicative (Luong dot / general).

Keys are projected once per batch (:meth:`Attention.project_keys`); each decoder step then
costs one query projection and a score over the source positions.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, kind: str, query_dim: int, memory_dim: int, attn_dim: int):
        super().__init__()
        self.kind = kind
        if kind == "additive":  # score = v . tanh(W_k k + W_q q)
            self.key_proj = nn.Linear(memory_dim, attn_dim, bias=False)
            self.query_proj = nn.Linear(query_dim, attn_dim)
            self.v = nn.Linear(attn_dim, 1, bias=False)
        elif kind == "general":  # score = q . (W k)
            self.key_proj = nn.Linear(memory_dim, query_dim, bias=False)
        elif kind == "dot":  # score = q . k
            if query_dim != memory_dim:
                raise ValueError(f"dot attention needs query_dim == memory_dim ({query_dim} != {memory_dim})")
        else:
            raise ValueError(f"unknown attention {kind!r}")

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """memory (B, S, M) -> keys (B, S, K); K = attn_dim (additive) or query_dim."""
        return memory if self.kind == "dot" else self.key_proj(memory)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q), keys (B, S, K), memory (B, S, M), mask (B, S) True at real tokens.

        Returns context (B, M) and weights (B, S); padded positions get weight exactly 0.
        """
        if self.kind == "additive":
            scores = self.v(torch.tanh(keys + self.query_proj(query).unsqueeze(1))).squeeze(2)  # (B, S)
        else:
            scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # (B, S)
        scores = scores.float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # (B, S)
        context = torch.bmm(weights.to(memory.dtype).unsqueeze(1), memory).squeeze(1)  # (B, M)
        return context, weights
