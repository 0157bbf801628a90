"""Translate text with a trained run directory (or several: an ensemble).

``Translator.from_run_dirs`` needs only run directories: each holds config.yaml, its SentencePiece
models under spm/ and checkpoints under checkpoints/.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from seq2seq import checkpoint as ckpt_io
from seq2seq.batches import source_tensor
from seq2seq.compiled import CompiledDecoder
from seq2seq.config import Config, DecodeConfig, from_dict
from seq2seq.distributed import pick_device
from seq2seq.errors import UserError
from seq2seq.model import Seq2Seq, build_model
from seq2seq.precision import fast_fp32_matmul
from seq2seq.search import Hypothesis, decode
from seq2seq.tokenizer import Tokenizer, load_tokenizers


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
) -> list[list[Hypothesis]]:
    """n-best hypotheses for each (non-empty) id sequence, in input order; sorted by length into batches
    of ``dc.batch_size``. ``model``: anything with encode/decode_step. ``progress``: a tqdm bar over
    sentences on stderr when it is a terminal."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[Optional[list[Hypothesis]]] = [None] * len(seqs)
    bar = None
    if progress and sys.stderr.isatty() and len(seqs) > dc.batch_size:
        from tqdm import tqdm

        bar = tqdm(total=len(seqs), unit="sent", desc="decoding", leave=False, file=sys.stderr)
    for start in range(0, len(order), dc.batch_size):
        idx = order[start : start + dc.batch_size]
        src, lengths = source_tensor([seqs[i] for i in idx])
        for i, h in zip(idx, decode(model, src.to(device), lengths, dc, return_attention=return_attention)):
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
        self._searchers: dict[str, object] = {}  # compile_search mode -> what search steps through

    @classmethod
    def from_run_dirs(
        cls, run_dirs: list[str | Path], checkpoint: str = "best", device: str | torch.device = "auto"
    ):
        """Load the checkpoint ``checkpoint`` of each run directory; ``device``: a torch.device, or a
        ``train.device`` value."""
        dev = device if isinstance(device, torch.device) else pick_device(device)
        models, toks, cfg = [], None, None
        for run_dir in map(Path, run_dirs):
            cfg_i, model = load_run(run_dir, checkpoint, dev)
            toks_i = load_tokenizers(run_dir)
            if toks is not None and [t.fingerprint() for t in toks] != [t.fingerprint() for t in toks_i]:
                raise UserError(
                    f"{run_dir}: its vocabulary differs from {run_dirs[0]}; an ensemble needs one vocabulary"
                )
            toks, cfg = toks or toks_i, cfg or cfg_i
            models.append(model)
        return cls(models, toks[0], toks[1], cfg, dev)

    def searcher(self, mode: str):
        """The model (or ensemble) that search steps through, its decoder step compiled when ``mode``
        is not off; compiled once per mode and reused."""
        if mode == "off":
            return self.model
        if mode not in self._searchers:
            compiled = [CompiledDecoder(m, mode, self.compile_backend) for m in self.models]
            self._searchers[mode] = compiled[0] if len(compiled) == 1 else Ensemble(compiled)
        return self._searchers[mode]

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
        """Like :meth:`hypotheses` for already encoded lines."""
        dc = dc or self.cfg.decode
        keep = [i for i, x in enumerate(ids) if x]  # no piece (blank, or only what SentencePiece drops): []
        hyps = decode_ids(
            self.searcher(dc.compile_search),
            [ids[i] for i in keep],
            dc,
            self.device,
            return_attention,
            progress,
        )
        out: list[list[Hypothesis]] = [[] for _ in ids]
        for i, h in zip(keep, hyps):
            out[i] = h
        return out

    def translate(
        self, lines: list[str], dc: Optional[DecodeConfig] = None, progress: bool = False
    ) -> list[str]:
        """The best translation of each line; empty or whitespace-only lines give empty output."""
        best = [h[0].tokens if h else None for h in self.hypotheses(lines, dc, progress=progress)]
        texts = iter(self.tgt_tok.decode([t for t in best if t is not None]))
        return [next(texts) if t is not None else "" for t in best]


def load_run(run_dir: Path, which: str = "best", device: Optional[torch.device] = None):
    """(config, model in eval mode) from a run directory."""
    import yaml

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        if (run_dir / "spm").is_dir():
            raise UserError(
                f"{run_dir} has no trained model yet (no config.yaml, no checkpoint): train it first"
            )
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = from_dict(yaml.safe_load(cfg_path.read_text(encoding="utf-8")))
    path = run_dir / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise UserError(f"{run_dir} has no checkpoint {path.name}: train it first")
    ckpt = ckpt_io.load(path)
    src_tok, tgt_tok = load_tokenizers(run_dir)
    if (ckpt["src_vocab"], ckpt["tgt_vocab"]) != (len(src_tok), len(tgt_tok)):
        raise UserError(
            f"{path}: vocabulary sizes {ckpt['src_vocab']}/{ckpt['tgt_vocab']} do not match the "
            f"tokenizers in {run_dir / 'spm'} ({len(src_tok)}/{len(tgt_tok)})"
        )
    model = build_model(cfg.model, ckpt["src_vocab"], ckpt["tgt_vocab"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(
            f"{path}: parameters do not match the run's config ({str(e).splitlines()[0]})"
        ) from None
    return cfg, model.to(device or torch.device("cpu")).eval()
