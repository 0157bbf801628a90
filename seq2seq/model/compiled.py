"""Compiled decoder steps over a few static shape buckets (``torch.compile``; CUDA graphs on GPU).

The attention decoder is a chain of small kernels per target position, so on a GPU it is bound by
kernel launches. ``torch.compile`` fuses each step's pointwise work (LSTM gates, attention
tanh/softmax, the combine layer) into a few kernels; modes ``reduce-overhead`` and ``max-autotune``
also record the search step as a CUDA graph and replay it with one launch (:func:`uses_cuda_graphs`
reads which modes do from inductor's own mode table). Training compiles the same mode without CUDA
graphs (:func:`training_loop`): it would record a graph per target position per bucket and copy
memory, keys and the recurrent weights into static inputs at every position. A replay writes its
outputs into the graph's memory pool, where the next replay (of any graph) overwrites them, so
:class:`CompiledDecoder` clones whatever outlives a step. Graphs need fixed shapes, so every batch is
padded to a bucket: rows up to a power of two (at least 8) or, above 64, a multiple of 64; source
positions up to a multiple of 16. Padding changes no real row's numbers: rows never mix in a
step, padded rows are sliced off (their gradients are zero), and padded source positions are
masked (attention weight exactly 0).

Compiling wraps a function, as gpt-fast does (``step = torch.compile(step)``); nothing on the
model is patched. What is compiled is the per-position step only (:meth:`Decoder.recur_step` in
training, :meth:`Seq2Seq.step_tensors` in search); the fused cuDNN GRU encoder, the output layer
over all positions and the loss stay eager, as ``nn.GRU``/``nn.LSTM`` break graphs.

Under DDP the training step stays one graph: dynamo would cut it at DDP's gradient-bucket boundaries
(``optimize_ddp``) to overlap early buckets' all-reduce with the rest of backward, but the step runs at
every position and its parameters' gradients are complete only after the first position's backward, so
a cut would overlap nothing and only split the fusion.

``train.compile`` and ``decode.compile_search`` choose the mode (off by default). Compiling costs
seconds to minutes once per bucket shape seen, so it pays on long GPU runs, not on short CPU ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from seq2seq.constants import BOS
from seq2seq.model.network import DecoderState, Seq2Seq, run_positions


def bucket_rows(n: int) -> int:
    """Padded batch rows: 8, 16, 32, 64, then multiples of 64."""
    return max(8, 1 << (n - 1).bit_length()) if n <= 64 else -(-n // 64) * 64


def bucket_len(s: int) -> int:
    """Padded source length: a multiple of 16."""
    return -(-s // 16) * 16


def compile_step(fn: Callable, mode: str, backend: str = "inductor", cuda_graphs: bool = True) -> Callable:
    """``torch.compile(fn, fullgraph=True)`` for one of the ``*.compile`` modes; ``cuda_graphs=False``
    keeps the mode's other options but never records CUDA graphs. ``backend`` other than inductor
    (tests on CPU: aot_eager) traces and runs without generating code."""
    if hasattr(torch._dynamo.config, "recompile_limit"):  # one entry per bucket shape (and train/eval)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    else:  # older torch
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if backend != "inductor":
        return torch.compile(fn, backend=backend, fullgraph=True)
    if not cuda_graphs and uses_cuda_graphs(mode, backend):
        from torch._inductor import list_mode_options

        options = {**list_mode_options(mode), "triton.cudagraphs": False}
        return torch.compile(fn, options=options, fullgraph=True)
    return torch.compile(fn, mode=None if mode == "default" else mode, fullgraph=True)


def uses_cuda_graphs(mode: str, backend: str = "inductor") -> bool:
    """Whether ``torch.compile(mode=mode)`` records CUDA graphs (reduce-overhead, max-autotune), by
    inductor's own table of what each mode turns on."""
    if backend != "inductor" or mode in ("off", "default"):
        return False
    from torch._inductor import list_mode_options

    return bool(list_mode_options(mode).get("triton.cudagraphs", False))


def pad_state(state: DecoderState, rows: int, length: int) -> DecoderState:
    """``state`` (B rows, S positions) padded to (rows, length).

    Padded rows copy row 0 (finite numbers everywhere, so zero gradients stay zero); padded
    source positions have zero memory/keys/coverage and mask False.
    """
    B, S = state.memory.size(0), state.memory.size(1)
    if rows > B:
        state = state.select(
            torch.cat(
                [
                    torch.arange(B, device=state.feed.device),
                    torch.zeros(rows - B, dtype=torch.long, device=state.feed.device),
                ]
            )
        )
    if length > S:
        state = DecoderState(
            state.h,
            state.c,
            state.feed,
            F.pad(state.memory, (0, 0, 0, length - S)),
            F.pad(state.keys, (0, 0, 0, length - S)),
            F.pad(state.mask, (0, length - S)),
            None if state.coverage is None else F.pad(state.coverage, (0, length - S)),
        )
    return state


def first_position_like_the_rest(state: DecoderState) -> DecoderState:
    """``state`` whose fed vector and coverage require a gradient wherever every later position's do.

    The first position's are zeros that need none, the later ones' are computed from the parameters,
    and a compiled step guards on ``requires_grad``: without this, every bucket would compile a graph
    for the first position and another for the rest. Their gradients are computed and dropped.
    """
    if not torch.is_grad_enabled():
        return state
    return dataclasses.replace(state, feed=_needing_grad(state.feed), coverage=_needing_grad(state.coverage))


def _needing_grad(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return t if t is None or t.requires_grad else t.detach().requires_grad_()


def training_loop(model: Seq2Seq, mode: str, backend: str = "inductor") -> Optional[Callable]:
    """The ``loop`` argument of ``model(src, lengths, tgt_in, loop=...)`` that runs a compiled
    :meth:`Decoder.recur_step` on bucketed shapes; None when ``mode`` is off (the eager loop).
    Never with CUDA graphs (see the module's docstring): ``reduce-overhead`` trains as ``default``,
    ``max-autotune`` as itself minus the graphs.

    The parameters and the results are those of the eager model (tests: same loss and gradients).
    """
    if mode == "off":
        return None
    step = compile_step(model.decoder.recur_step, mode, backend, cuda_graphs=False)

    @torch._dynamo.config.patch(optimize_ddp=False)  # one graph per step, under DDP too
    def loop(gates_x: torch.Tensor, w_rec: torch.Tensor, state: DecoderState, upper=(), drop=None):
        B, S = gates_x.size(0), state.memory.size(1)  # gates_x (B, T, 4H)
        rows = bucket_rows(B)
        if rows > B:
            gates_x = torch.cat([gates_x, gates_x[:1].expand(rows - B, -1, -1)])
            if drop is not None:  # masks (T, L-1, B, H) and (T, B, H): rows are their second-to-last dim
                drop = tuple(F.pad(d, (0, 0, 0, rows - B), value=1.0) for d in drop)
        state = first_position_like_the_rest(pad_state(state, rows, bucket_len(S)))
        return run_positions(step, gates_x, w_rec, state, upper, drop)[:B]  # (B, T, H)

    return loop


@dataclass
class BucketState:
    """A decoder state padded to a bucket: ``n`` real rows of ``padded``, ``length`` real positions."""

    padded: DecoderState
    n: int
    length: int

    def select(self, index: torch.Tensor) -> "BucketState":
        """Real rows ``index`` (N,), padded to the bucket of N by repeating the first."""
        n = index.numel()
        if n == 0:
            return BucketState(self.padded, 0, self.length)
        rows = bucket_rows(n)
        if rows > n:
            index = torch.cat([index, index[:1].expand(rows - n)])
        return BucketState(self.padded.select(index), n, self.length)

    def reorder(self, index: torch.Tensor) -> "BucketState":
        """Like :meth:`select` for beams moving within their sentence (``index`` keeps the n rows):
        only the recurrent tensors are selected (:meth:`DecoderState.reorder`)."""
        rows = self.padded.feed.size(0)
        if rows > index.numel():
            index = torch.cat([index, index[:1].expand(rows - index.numel())])
        return BucketState(self.padded.reorder(index), self.n, self.length)


class CompiledDecoder:
    """A :class:`Seq2Seq` for search (``encode``/``decode_step``) whose step is compiled on bucketed shapes.

    Same outputs as the model itself (test: identical beam search hypotheses). With CUDA graphs,
    each step's outputs are cloned out of the graph's memory pool before they are returned: the next
    replay, of this model's graph or of another ensemble member's, overwrites that pool (test: a
    double of the step that NaN-fills its previous outputs at every call, as a replay does).
    """

    def __init__(self, model: Seq2Seq, mode: str = "default", backend: str = "inductor"):
        self.model = model
        self.step = compile_step(model.step_tensors, mode, backend)
        self.graphs = uses_cuda_graphs(mode, backend)

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> BucketState:
        state = self.model.encode(src, lengths)
        B, S = src.shape
        return BucketState(pad_state(state, bucket_rows(B), bucket_len(S)), B, S)

    def decode_step(self, prev: torch.Tensor, state: BucketState):
        """prev (n,) -> log-probs (n, V), new state, attention (n, S) for the real rows and positions."""
        p, n = state.padded, state.n
        rows = p.feed.size(0)
        if rows > n:
            prev = torch.cat([prev, prev.new_full((rows - n,), BOS)])
        if self.graphs:  # nothing of an earlier replay is read after this point: it was cloned
            torch.compiler.cudagraph_mark_step_begin()
        out = self.step(prev, p.h, p.c, p.feed, p.memory, p.keys, p.mask, p.coverage)
        if self.graphs:  # out of the graph's memory pool, which the next replay overwrites
            out = [None if t is None else t.clone(memory_format=torch.contiguous_format) for t in out]
        else:  # inductor may return views into one buffer: a new layout would mean a recompile
            out = [None if t is None else t.contiguous() for t in out]
        logp, h, c, feed, weights, coverage = out  # coverage: None without model.coverage
        new = BucketState(DecoderState(h, c, feed, p.memory, p.keys, p.mask, coverage), n, state.length)
        logp = logp[:n] if self.graphs else logp[:n].clone()  # search writes into it
        return logp, new, weights[:n, : state.length]
