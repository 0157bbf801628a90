"""SentencePiece models trained on the training split; fixed special ids shared with the model."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import sentencepiece as spm

from seq2seq.config import Config
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_bytes

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    """One SentencePiece model: text <-> ids (no BOS/EOS added; the model adds them)."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if not path.is_file():
            raise UserError(f"tokenizer model not found: {path}")
        self.path = path
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(path))
        except (OSError, RuntimeError) as e:
            raise UserError(f"{path} is not a SentencePiece model ({str(e).splitlines()[0]})") from None
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (PAD, UNK, BOS, EOS):
            raise UserError(f"{path}: special ids differ from pad=0 unk=1 bos=2 eos=3")

    def __len__(self) -> int:
        return self.sp.GetPieceSize()

    def encode(self, lines: list[str]) -> list[list[int]]:
        return self.sp.Encode(lines)

    def pieces(self, line: str) -> list[str]:
        return self.sp.EncodeAsPieces(line)

    def id_to_piece(self, ids: list[int]) -> list[str]:
        return [self.sp.IdToPiece(i) for i in ids]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.sp.Decode(ids)

    def fingerprint(self) -> str:
        """sha256 hex digest of the serialized model: equal exactly when two tokenizers are the same model."""
        return hashlib.sha256(self.sp.serialized_model_proto()).hexdigest()


def tokenizers_fingerprint(src_tok: Tokenizer, tgt_tok: Tokenizer) -> str:
    """sha256 hex digest of both serialized models, source then target (what the training shards are built from)."""
    h = hashlib.sha256(src_tok.sp.serialized_model_proto())
    h.update(tgt_tok.sp.serialized_model_proto())
    return h.hexdigest()


def spm_paths(run_dir: Path) -> tuple[Path, Path]:
    """(source model, target model); a joint model is one file used for both."""
    joint = run_dir / "spm" / "joint.model"
    if joint.is_file():
        return joint, joint
    return run_dir / "spm" / "src.model", run_dir / "spm" / "tgt.model"


def load_tokenizers(run_dir: Path) -> tuple[Tokenizer, Tokenizer]:
    src, tgt = spm_paths(run_dir)
    s = Tokenizer(src)
    return s, (s if tgt == src else Tokenizer(tgt))


def _train_one(files: list[Path], prefix: Path, cfg: Config) -> None:
    """Train one model on text files directly (SentencePiece reads them; nothing held in Python).
    ``spm.input_sentence_size`` > 0 trains on a random sample of that many sentences.

    SentencePiece writes into a temporary folder beside ``prefix``; ``<prefix>.model`` and ``.vocab``
    are put into place atomically only once both exist, and the folder is removed in any case."""
    sc = cfg.spm
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.", suffix=".tmp", dir=prefix.parent))
    try:
        kwargs = dict(
            input=",".join(str(f) for f in files),
            model_prefix=str(tmp / prefix.name),
            vocab_size=sc.vocab_size,
            model_type=sc.model_type,
            character_coverage=sc.character_coverage,
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            input_sentence_size=sc.input_sentence_size,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=1000000,
            num_threads=max(1, os.cpu_count() or 1),
            hard_vocab_limit=False,
            minloglevel=2,
        )
        try:
            spm.SentencePieceTrainer.Train(**kwargs)
        except RuntimeError as e:
            raise UserError(f"SentencePiece training failed: {str(e).splitlines()[0]}") from None
        trained = {ext: (tmp / (prefix.name + ext)).read_bytes() for ext in (".model", ".vocab")}
        for ext, data in trained.items():
            atomic_write_bytes(prefix.with_name(prefix.name + ext), data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_tokenizers(cfg: Config, log=print) -> tuple[Path, Path]:
    """Train on the train split only; writes ``<run_dir>/spm/{joint|src,tgt}.model``. A fine-tuning run
    (``train.init_from``) copies its parent's models instead."""
    if cfg.train.init_from:
        from seq2seq.finetune import copy_parent_tokenizers

        return copy_parent_tokenizers(cfg, log)
    files = [cfg.data_dir / f"train.{lang}" for lang in (cfg.data.src_lang, cfg.data.tgt_lang)]
    for f in files:
        if not f.is_file():
            raise UserError(f"{f} not found: run the download stage first (seq2seq download / make data)")
    out = cfg.run_path / "spm"
    for stale in ("joint", "src", "tgt"):  # a switch between joint and separate must not keep old models
        for ext in (".model", ".vocab"):
            (out / (stale + ext)).unlink(missing_ok=True)
    sample = f", sampling {cfg.spm.input_sentence_size} sentences" if cfg.spm.input_sentence_size else ""
    log(
        f"training SentencePiece ({cfg.spm.model_type}, vocabulary {cfg.spm.vocab_size}{sample}) on "
        f"{', '.join(f.name for f in files)} ..."
    )
    if cfg.spm.joint:
        _train_one(files, out / "joint", cfg)
        log(
            f"trained joint SentencePiece model ({cfg.spm.model_type}, {cfg.spm.vocab_size}) on {files[0].name} "
            f"+ {files[1].name}{sample}"
        )
    else:
        _train_one(files[:1], out / "src", cfg)
        _train_one(files[1:], out / "tgt", cfg)
        log(
            f"trained source and target SentencePiece models ({cfg.spm.model_type}, {cfg.spm.vocab_size}){sample}"
        )
    s, t = load_tokenizers(cfg.run_path)
    log(f"vocabulary: source {len(s)}, target {len(t)}")
    return spm_paths(cfg.run_path)
