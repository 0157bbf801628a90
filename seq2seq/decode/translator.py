"""Translate text with a trained run directory (or several: an ensemble); the Python API.

``Translator.load`` needs only run directories: each holds config.yaml, its SentencePiece models
under spm/ and checkpoints under checkpoints/::

    from seq2seq import Translator
    t = Translator.load("data/default/run")
    t.translate(["I have twenty-one cats."], beam_size=5)        # ['Ich habe einundzwanzig Katzen.']
    t.translate("two plus three is five", n_best=3, with_scores=True)  # [Translation(text=..., score=...), ...]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from seq2seq.config.load import with_decode
from seq2seq.config.rules import check_model
from seq2seq.config.schema import Config, DecodeConfig
from seq2seq.data.batches import source_tensor
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.decode.loading import load_run_with_tokenizers
from seq2seq.decode.search import Hypothesis, decode
from seq2seq.errors import UserError
from seq2seq.model.compiled import CompiledDecoder
from seq2seq.model.device import pick_device
from seq2seq.model.network import Seq2Seq
from seq2seq.model.precision import autocast, choose_precision, fast_fp32_matmul
from seq2seq.model.quantized import is_int8, quantize


@dataclass
class Translation:
    """One hypothesis as text: what translate's JSON output and ``translate(..., with_scores=True)`` give."""

    text: str
    score: float  # log-probability / length penalty: what ranks the n-best list
    logprob: float  # sum of the pieces' log-probabilities (EOS included when produced)
    tokens: list[str]  # output pieces
    eos: bool = True  # False: cut at the length limit
    attention: Optional[torch.Tensor] = field(
        default=None, repr=False
    )  # (len(tokens) [+1 EOS], source + EOS)


LONG_LINE_PARTS = 4  # a source line is cut at this many times train.max_len pieces (see _parts)


@dataclass
class EnsembleState:
    states: list

    def select(self, index: torch.Tensor) -> "EnsembleState":
        return EnsembleState([s.select(index) for s in self.states])

    def reorder(self, index: torch.Tensor) -> "EnsembleState":
        return EnsembleState([s.reorder(index) for s in self.states])


class Ensemble:
    """Several models that share a vocabulary, averaging their log-probabilities at each step."""

    def __init__(self, models: list[Seq2Seq]):
        self.models = models

    def encode(self, src, lengths) -> EnsembleState:
        return EnsembleState([m.encode(src, lengths) for m in self.models])

    def decode_step(self, prev, state: EnsembleState):
        outs = [m.decode_step(prev, s) for m, s in zip(self.models, state.states)]
        logp = torch.stack([o[0] for o in outs]).mean(0)  # (B, V)
        attn = torch.stack([o[2] for o in outs]).mean(0)  # (B, S)
        return logp, EnsembleState([o[1] for o in outs]), attn


def decode_ids(
    model,
    seqs: list[list[int]],
    dc: DecodeConfig,
    device: torch.device,
    return_attention: bool = False,
    progress: bool = False,
    generator: Optional[torch.Generator] = None,
) -> list[list[Hypothesis]]:
    """n-best hypotheses for each (non-empty) id sequence, in input order; sorted by length into batches
    of ``dc.batch_size``. ``model``: anything with encode/decode_step. ``progress``: a tqdm bar over
    sentences on stderr when it is a terminal. ``generator``: the random draws of sampling."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[Optional[list[Hypothesis]]] = [None] * len(seqs)
    bar = None
    if progress and sys.stderr.isatty() and len(seqs) > dc.batch_size:
        from tqdm import tqdm

        bar = tqdm(total=len(seqs), unit="sent", desc="decoding", leave=False, file=sys.stderr)
    for start in range(0, len(order), dc.batch_size):
        idx = order[start : start + dc.batch_size]
        src, lengths = source_tensor([seqs[i] for i in idx])
        for i, h in zip(idx, decode(model, src.to(device), lengths, dc, return_attention, generator)):
            out[i] = h
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out  # type: ignore[return-value]


class Translator:
    """Lines -> hypotheses with one model or an ensemble and its tokenizers: the one path that
    translate, evaluate, validation and tune-decode use (empty lines, length-sorted batches, n-best,
    compiled search)."""

    def __init__(
        self,
        models: list[Seq2Seq],
        src_tok: Tokenizer,
        tgt_tok: Tokenizer,
        cfg: Config,
        device: torch.device,
        compile_backend: str = "inductor",
    ):
        self.models, self.src_tok, self.tgt_tok, self.cfg, self.device = models, src_tok, tgt_tok, cfg, device
        self.model = models[0] if len(models) == 1 else Ensemble(models)
        self.compile_backend = compile_backend
        fast_fp32_matmul(device)  # decoding runs in fp32: TF32 on CUDA
        # (compile_search, search_precision) -> what search steps through
        self._searchers: dict[tuple[str, str], object] = {}
        self._int8: Optional[list] = None  # the models quantized (decode.search_precision int8), once
        self.warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)
        self._rng: Optional[tuple[int, torch.Generator]] = None  # (seed, generator) of sampling

    @classmethod
    def load(
        cls,
        run_dirs: Union[str, Path, Sequence[Union[str, Path]]],
        checkpoint: str = "best",
        device: str = "auto",
        precision: Optional[str] = None,
    ) -> "Translator":
        """The Python API's entry: one run directory (or a list: an ensemble); ``checkpoint``: a name in
        <run_dir>/checkpoints (best, last, average, best-int8, ...) or a checkpoint file; ``device``: auto,
        cpu, cuda or cuda:N; ``precision``: auto, fp32, bf16 or int8 (decode.search_precision; None: the
        run's)."""
        dirs = [run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs
        if not isinstance(dirs, (list, tuple)) or not all(isinstance(d, (str, Path)) for d in dirs):
            raise TypeError(
                f"Translator.load takes a run directory (str or Path) or a list of them, not {_kind(run_dirs)}"
            )
        if not dirs:
            raise UserError("Translator.load: no run directory given (an empty list)")
        return cls.from_run_dirs(list(dirs), checkpoint, device, precision)

    @classmethod
    def from_run_dirs(
        cls,
        run_dirs: list[str | Path],
        checkpoint: str = "best",
        device: str | torch.device = "auto",
        precision: Optional[str] = None,
    ):
        """Load the checkpoint ``checkpoint`` of each run directory; ``device``: a torch.device, or a
        ``train.device`` value; ``precision``: a ``decode.search_precision`` value that replaces the run's
        (None keeps it), checked (and int8 models built) now."""
        dev = device if isinstance(device, torch.device) else pick_device(device)
        models, toks, cfg = [], None, None
        for run_dir in map(Path, run_dirs):
            cfg_i, model, toks_i = load_run_with_tokenizers(run_dir, checkpoint, dev)
            if toks is not None and [t.fingerprint() for t in toks] != [t.fingerprint() for t in toks_i]:
                raise UserError(
                    f"{run_dir}: its vocabulary differs from {run_dirs[0]}; an ensemble needs one vocabulary"
                )
            toks, cfg = toks or toks_i, cfg or cfg_i
            models.append(model)
        if precision is not None:
            cfg = replace(cfg, decode=with_decode(cfg, search_precision=precision).decode)
        translator = cls(models, toks[0], toks[1], cfg, dev)
        translator.models_for(cfg.decode.search_precision)
        return translator

    def models_for(self, precision: str) -> list:
        """The models that decode in ``precision`` (a ``decode.search_precision`` value): as loaded (fp32, or
        int8 from a ``seq2seq quantize`` file), or quantized to int8 once (CPU only). bf16 needs native bf16
        (:func:`seq2seq.model.precision.choose_precision`); an int8 checkpoint decodes in int8 only."""
        stored = [is_int8(m) for m in self.models]
        if precision in ("fp32", "bf16") and any(stored):
            raise UserError(
                f"decode.search_precision {precision} (--precision): the checkpoint is int8 (seq2seq quantize "
                f"wrote it): decode it with auto or int8, or give the fp32 checkpoint"
            )
        if precision == "bf16":
            choose_precision("bf16", self.device, key="decode.search_precision")
        if precision != "int8" or all(stored):
            return self.models
        if self.device.type != "cpu":
            raise UserError(
                f"decode.search_precision int8 runs on the CPU only (this translator is on {self.device})"
            )
        if self._int8 is None:
            self._int8 = [m if is_int8(m) else quantize(m) for m in self.models]
        return self._int8

    def searcher(self, mode: str, precision: str = "auto"):
        """The model (or ensemble) that search steps through in ``precision`` (see :meth:`models_for`), its
        decoder step compiled when ``mode`` is not off; built once per (mode, precision) and reused."""
        models = self.models_for(precision)
        if mode == "off" and models is self.models:
            return self.model
        if mode != "off" and any(is_int8(m) for m in models):
            raise UserError(f"decode.compile_search {mode}: int8 models are not compiled; set it to off")
        if (mode, precision) not in self._searchers:
            steps = (
                models if mode == "off" else [CompiledDecoder(m, mode, self.compile_backend) for m in models]
            )
            self._searchers[mode, precision] = steps[0] if len(steps) == 1 else Ensemble(steps)
        return self._searchers[mode, precision]

    def hypotheses(
        self,
        lines: list[str],
        dc: Optional[DecodeConfig] = None,
        return_attention: bool = False,
        progress: bool = False,
    ) -> list[list[Hypothesis]]:
        """n-best Hypothesis lists per line ([] for empty lines)."""
        return self.hypotheses_from_ids(self.src_tok.encode(lines), dc, return_attention, progress)

    def hypotheses_from_ids(
        self,
        ids: list[list[int]],
        dc: Optional[DecodeConfig] = None,
        return_attention: bool = False,
        progress: bool = False,
    ) -> list[list[Hypothesis]]:
        """Like :meth:`hypotheses` for already encoded lines. A line longer than ``train.max_len``
        pieces (the longest the model was trained on) is cut, before any decoding and with a warning:
        its first ``LONG_LINE_PARTS`` x ``train.max_len`` pieces are translated in near-equal parts of
        at most ``train.max_len`` pieces, each decoded as a sentence of its own, and joined; the rest is
        dropped. Time and memory per line stay bounded, whatever its length."""
        dc = dc or self.cfg.decode
        parts, owners = self._parts(ids)
        searcher = self.searcher(dc.compile_search, dc.search_precision)
        try:
            with autocast(self.device, torch.bfloat16 if dc.search_precision == "bf16" else None):
                hyps = decode_ids(
                    searcher, parts, dc, self.device, return_attention, progress, self._generator(dc)
                )
        except (RuntimeError, MemoryError) as e:
            if not out_of_memory(e):
                raise
            width = f"{dc.n_best} samples" if dc.sampling else f"beam {dc.beam_size}"
            raise UserError(
                f"out of memory decoding with {width} and batches of {dc.batch_size} sentences on "
                f"{self.device}: lower the beam (--beam-size) or the batch (decode.batch_size)"
            ) from None
        joined: dict[int, list[list[Hypothesis]]] = {}
        for i, h in zip(owners, hyps):
            joined.setdefault(i, []).append(h)
        out: list[list[Hypothesis]] = [
            [] for _ in ids
        ]  # no piece (blank, or only what SentencePiece drops): []
        for i, h in joined.items():
            out[i] = h[0] if len(h) == 1 else join_parts(h, dc.length_penalty)
        return out

    def _parts(self, ids: list[list[int]]) -> tuple[list[list[int]], list[int]]:
        """(sequences to decode, the line each belongs to): non-empty lines, long ones cut in parts."""
        bound = self.cfg.train.max_len
        cut = LONG_LINE_PARTS * bound
        long = [len(x) for x in ids if len(x) > bound]
        if long:
            dropped = f"; pieces after the first {cut} are dropped" if max(long) > cut else ""
            self.warn(
                f"warning: {len(long)} input line(s) longer than the training limit (train.max_len {bound} "
                f"pieces; the longest has {max(long)}): translated in parts of at most {bound}{dropped}"
            )
        parts, owners = [], []
        for i, x in enumerate(ids):
            x = x[:cut]
            n = -(-len(x) // bound)  # 0 for an empty line
            size = -(-len(x) // n) if n else 0
            for start in range(0, len(x), size or 1):
                parts.append(x[start : start + size])
                owners.append(i)
        return parts, owners

    def _generator(self, dc: DecodeConfig) -> Optional[torch.Generator]:
        """Sampling's random numbers: one generator per translator, seeded with decode.sampling_seed (the
        same calls with the same settings give the same samples)."""
        if not dc.sampling:
            return None
        if self._rng is None or self._rng[0] != dc.sampling_seed:
            self._rng = (dc.sampling_seed, torch.Generator(self.device).manual_seed(dc.sampling_seed))
        return self._rng[1]

    def decode_config(self, dc: Optional[DecodeConfig] = None, **overrides) -> DecodeConfig:
        """``dc`` (default: the run's decode settings) with ``overrides`` (None keeps a value), checked as a
        recipe's are (config.with_decode), and against every ensemble member's architecture (a coverage
        penalty needs attention weights from each)."""
        cfg = with_decode(replace(self.cfg, decode=dc or self.cfg.decode), **overrides)
        for i, model in enumerate(self.models, start=1):
            try:
                check_model(replace(cfg, model=model.cfg))
            except UserError as e:
                n = len(self.models)
                raise (UserError(f"ensemble member {i} of {n}: {e}") if n > 1 else e) from None
        return cfg.decode

    def translations(
        self, ids: list[list[int]], dc: DecodeConfig, attention: bool = False, progress: bool = False
    ) -> list[list[Translation]]:
        """The n-best list of each encoded line as :class:`Translation` ([] for lines without a piece)."""
        hyps = self.hypotheses_from_ids(ids, dc, attention, progress)
        texts = iter(self.tgt_tok.decode([h.tokens for hs in hyps for h in hs]))
        return [
            [
                Translation(
                    next(texts), h.score, h.logprob, self.tgt_tok.id_to_piece(h.tokens), h.eos, h.attention
                )
                for h in hs
            ]
            for hs in hyps
        ]

    def translate(
        self,
        lines: Union[str, list[str]],
        dc: Optional[DecodeConfig] = None,
        progress: bool = False,
        *,
        with_scores: bool = False,
        **decode,
    ):
        """Translate ``lines`` (one string: one result) with the run's decode settings, ``dc``, and
        keyword overrides of them (``beam_size=5, n_best=3, length_penalty=0.6, sampling=True, ...``).

        Returns per line the best translation (a string; "" for empty lines); with ``n_best`` above 1 the
        n-best strings; with ``with_scores`` a list of :class:`Translation` (text, score, logprob, pieces).
        ``lines`` is a string or a sequence (list, tuple, ...) of strings; anything else is a TypeError.
        Sampling starts from ``sampling_seed`` at every call, so the same call gives the same samples."""
        if isinstance(lines, str):
            return self.translate([lines], dc, progress, with_scores=with_scores, **decode)[0]
        lines = _text_lines(lines)
        dc = self.decode_config(dc, **decode)
        self._rng = (
            None  # each call samples from decode.sampling_seed afresh: the same call, the same samples
        )
        found = self.translations(self.src_tok.encode(lines), dc, progress=progress)
        if with_scores:
            return found
        if dc.n_best > 1:
            return [[t.text for t in ts] for ts in found]
        return [ts[0].text if ts else "" for ts in found]


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure (CUDA's OutOfMemoryError, the CPU allocator's RuntimeError)."""
    return isinstance(e, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(e)


def _kind(value) -> str:
    return "None" if value is None else f"a value of type {type(value).__name__}"


def _text_lines(lines) -> list[str]:
    """``lines`` (a sequence of strings, not one bytes object) as a list; a TypeError saying what is wrong."""
    if isinstance(lines, (bytes, bytearray)):
        raise TypeError("translate takes text (str), not bytes: decode it first, e.g. data.decode('utf-8')")
    try:
        lines = list(lines)
    except TypeError:
        raise TypeError(f"translate takes a string or a list of strings, not {_kind(lines)}") from None
    bad = next((i for i, x in enumerate(lines) if not isinstance(x, str)), None)
    if bad is not None:
        raise TypeError(f"translate takes a list of strings; item {bad} is {_kind(lines[bad])}")
    return lines


def join_parts(parts: list[list[Hypothesis]], alpha: float) -> list[Hypothesis]:
    """The n-best lists of a line's consecutive parts as one n-best list: the k-th hypothesis joins the
    k-th of every part (tokens, log-probabilities and coverage penalties added, attention
    block-diagonal)."""
    out = []
    for k in range(min(len(h) for h in parts)):
        hs = [h[k] for h in parts]
        attn = [h.attention for h in hs]
        joined = Hypothesis(
            tokens=[t for h in hs for t in h.tokens],
            logprob=sum(h.logprob for h in hs),
            score=0.0,
            attention=torch.block_diag(*attn) if all(a is not None for a in attn) else None,
            eos=all(h.eos for h in hs),
            coverage_penalty=sum(h.coverage_penalty for h in hs),  # each part's own source positions
        )
        joined.score = joined.rescore(alpha)
        out.append(joined)
    return out
