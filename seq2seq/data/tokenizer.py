"""SentencePiece models trained on the training split; fixed special ids shared with the model."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from seq2seq.runs import ownership as rundir
from seq2seq.config.schema import Config
from seq2seq.data.corpus import corpus_files
from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_bytes, temp_prefix
from seq2seq.runs.checkpoint import parent_run
from seq2seq.text import normalize
from seq2seq.constants import checkpoints_dir, spm_dir

PAD, UNK, BOS, EOS = 0, 1, 2, 3
# trainer_spec fields that say where (and on how many threads) a model was trained, not what it does:
# the corpus paths, the output prefix (a random staging folder) and the machine's core count
WHERE_TRAINED = ("input", "model_prefix", "num_threads")


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
        """Ids of each line, after the one normalization of text that enters (:func:`seq2seq.text.normalize`)."""
        return self.sp.Encode([normalize(line) for line in lines])

    def sample(self, line: str, alpha: float, nbest_size: int = -1) -> list[int]:
        """Ids of one segmentation of ``line`` drawn at random (subword regularization: unigram samples
        among the ``nbest_size`` best, -1: all, smoothed by ``alpha``; bpe drops each merge with
        probability ``alpha``) from SentencePiece's generator of the calling thread
        (:mod:`seq2seq.data.sampling` seeds it)."""
        return self.sp.Encode(normalize(line), enable_sampling=True, alpha=alpha, nbest_size=nbest_size)

    def pieces(self, line: str) -> list[str]:
        return self.sp.EncodeAsPieces(normalize(line))

    def id_to_piece(self, ids: list[int]) -> list[str]:
        return [self.sp.IdToPiece(i) for i in ids]

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.sp.Decode(ids)

    def content(self) -> bytes:
        """The serialized model without where it was trained (:data:`WHERE_TRAINED`): equal exactly when
        two models tokenize alike (the pieces, their scores, the normalizer and the settings)."""
        proto = sentencepiece_model_pb2.ModelProto.FromString(self.sp.serialized_model_proto())
        for name in WHERE_TRAINED:
            proto.trainer_spec.ClearField(name)
        return proto.SerializeToString(deterministic=True)

    def fingerprint(self) -> str:
        """sha256 hex digest of :meth:`content`: equal exactly when two tokenizers are the same model."""
        return hashlib.sha256(self.content()).hexdigest()


def tokenizers_fingerprint(src_tok: Tokenizer, tgt_tok: Tokenizer) -> str:
    """sha256 hex digest of both models' :meth:`~Tokenizer.content`, source then target (what checkpoints
    record and the training shards are built from)."""
    h = hashlib.sha256(src_tok.content())
    h.update(tgt_tok.content())
    return h.hexdigest()


def _bytes_fingerprint(src_tok: Tokenizer, tgt_tok: Tokenizer) -> str:
    """What checkpoints of version 0.1.0 and before recorded: the serialized bytes, paths included."""
    h = hashlib.sha256(src_tok.sp.serialized_model_proto())
    h.update(tgt_tok.sp.serialized_model_proto())
    return h.hexdigest()


def fingerprint_matches(recorded: Optional[str], src_tok: Tokenizer, tgt_tok: Tokenizer) -> bool:
    """Whether the fingerprint a checkpoint (or model folder) recorded names these tokenizers: by content,
    or, recorded by an earlier version, by their bytes."""
    return recorded in (tokenizers_fingerprint(src_tok, tgt_tok), _bytes_fingerprint(src_tok, tgt_tok))


def spm_paths(run_dir: Path) -> tuple[Path, Path]:
    """(source model, target model); a joint model is one file used for both."""
    return _models_in(spm_dir(run_dir))


def _models_in(folder: Path) -> tuple[Path, Path]:
    joint = folder / "joint.model"
    if joint.is_file():
        return joint, joint
    return folder / "src.model", folder / "tgt.model"


def load_tokenizers(run_dir: Path, joint: Optional[bool] = None) -> tuple[Tokenizer, Tokenizer]:
    """The run's tokenizers; ``joint`` (the config's spm.joint, when known) names the files expected."""
    return _load_from(spm_dir(run_dir), joint)


def _load_from(folder: Path, joint: Optional[bool] = None) -> tuple[Tokenizer, Tokenizer]:
    src, tgt = _models_in(folder)
    expected = [src] if src == tgt else [src, tgt]
    if joint is not None:
        expected = [folder / "joint.model"] if joint else [folder / "src.model", folder / "tgt.model"]
    missing = [p.name for p in expected if not p.is_file()]
    if missing:
        what = (
            "spm.joint is true"
            if joint
            else "spm.joint is false"
            if joint is not None
            else "joint or separate"
        )
        raise UserError(
            f"tokenizer model not found: {folder / missing[0]} ({what}): run the spm stage (seq2seq spm RECIPE)"
        )
    s = Tokenizer(expected[0])
    return s, (s if len(expected) == 1 else Tokenizer(expected[1]))


LOW_DISK_BYTES = 64 << 20  # free space under which a failed SentencePiece write is taken for a full disk


def _spm_error(e: RuntimeError, cfg: Config, folder: Path) -> UserError:
    """SentencePiece's error as one line in our terms (never its source locations): a vocabulary too
    small for the corpus; a full disk where it writes (``folder``: SentencePiece writes the models itself,
    and says no more than which assertion failed); else its message, or the assertion that failed."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    small = re.search(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", msg)
    if small:
        return UserError(
            f"config key 'spm.vocab_size': {cfg.spm.vocab_size} is too small for this corpus: its characters "
            f"and the 4 special pieces need at least {small[1]}; raise spm.vocab_size or lower "
            f"spm.character_coverage"
        )
    try:
        full = shutil.disk_usage(folder).free < LOW_DISK_BYTES
    except OSError:
        full = False
    if full:
        return UserError(f"could not write the SentencePiece models into {folder}: no space left on device")
    where = re.match(r"^\w+: \S+\(\d+\) \[(.*?)\] *", msg)
    reason = msg[where.end() :] if where else msg
    return UserError(
        f"SentencePiece training failed: {reason or (f'its check {where[1]} failed' if where else 'no reason given')}"
    )


def _train_one(files: list[Path], prefix: Path, cfg: Config) -> None:
    """Train one model on text files directly (SentencePiece reads them; nothing held in Python) into
    ``<prefix>.model`` and ``.vocab``. ``spm.input_sentence_size`` > 0 trains on a random sample of
    that many sentences."""
    sc = cfg.spm
    kwargs = dict(
        input=",".join(str(f) for f in files),
        model_prefix=str(prefix),
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
    tags = sorted({s.tag for s in cfg.data.sources if s.tag})  # "<BT>": one piece, never split
    if tags:
        kwargs["user_defined_symbols"] = tags
    try:
        spm.SentencePieceTrainer.Train(**kwargs)
    except RuntimeError as e:
        raise _spm_error(e, cfg, spm_dir(cfg.run_path)) from None


MODEL_FILES = ("joint", "src", "tgt")


def train_tokenizers(cfg: Config, log=print) -> tuple[Path, Path]:
    """Train on the train split only; writes ``<run_dir>/spm/{joint|src,tgt}.model``. A fine-tuning run
    (``train.init_from``) copies its parent's models instead, the same way.

    The new models are built in a folder beside the old ones and swapped in only once complete, so a
    failed or interrupted run keeps the previous tokenizer; the run directory is held meanwhile. With
    checkpoints in the run (they depend on the tokenizer), other spm settings, or a new tokenizer whose
    content differs, are refused; one with the same content leaves the files as they are."""
    parent = parent_run(cfg) if cfg.train.init_from else None
    files = [] if parent else list(corpus_files(cfg, "train"))
    if parent is not None:
        _parent_models(parent)

    def build(staging: Path) -> bool:
        return _copy_into(staging, parent) if parent else _train_into(staging, files, cfg, log)

    with rundir.claim(cfg.run_path, cfg, "spm") as owner:
        if parent is None:
            rundir.check_spm(cfg.run_path, cfg, owner)
        _build_and_swap(cfg, build)
    if parent is not None:
        log(f"fine-tuning from {parent}: copied its SentencePiece models into {spm_dir(cfg.run_path)}")
    s, t = load_tokenizers(cfg.run_path)
    log(f"vocabulary: source {len(s)}, target {len(t)}")
    return spm_paths(cfg.run_path)


def _build_and_swap(cfg: Config, build: Callable[[Path], bool]) -> None:
    """``build`` a tokenizer into a staging folder in ``<run_dir>/spm`` (it returns whether the result
    is one joint model), then swap it in (:func:`_swap_in`); the staging folder never stays."""
    out = spm_dir(cfg.run_path)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix("spm"), suffix=".tmp", dir=out))
    try:
        joint = build(staging)
        _swap_in(staging, cfg.run_path, joint)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _train_into(folder: Path, files: list[Path], cfg: Config, log) -> bool:
    sample = f", sampling {cfg.spm.input_sentence_size} sentences" if cfg.spm.input_sentence_size else ""
    log(
        f"training SentencePiece ({cfg.spm.model_type}, vocabulary {cfg.spm.vocab_size}{sample}) on "
        f"{', '.join(f.name for f in files)} ..."
    )
    if cfg.spm.joint:
        _train_one(files, folder / "joint", cfg)
        log(
            f"trained joint SentencePiece model ({cfg.spm.model_type}, {cfg.spm.vocab_size}) on {files[0].name} "
            f"+ {files[1].name}{sample}"
        )
    else:
        _train_one(files[:1], folder / "src", cfg)
        _train_one(files[1:], folder / "tgt", cfg)
        log(
            f"trained source and target SentencePiece models ({cfg.spm.model_type}, {cfg.spm.vocab_size}){sample}"
        )
    return cfg.spm.joint


def _swap_in(staging: Path, run: Path, joint: bool) -> None:
    """Move the models built in ``staging`` (``joint``: one joint model) into ``<run>/spm``, then remove
    the stale kind (joint vs separate): at every moment spm/ holds one complete tokenizer."""
    new = _load_from(staging, joint)  # loads and checks the special ids before anything moves
    try:
        old = load_tokenizers(run)
    except UserError:
        old = None  # missing or damaged: the new one can only help
    if old is not None and tokenizers_fingerprint(*old) == tokenizers_fingerprint(*new):
        return  # the same tokenizer: the files stay as they are
    if old is not None and rundir.has_checkpoints(run):
        raise UserError(
            f"the retrained tokenizer differs from {run / 'spm'}, which the checkpoints in "
            f"{checkpoints_dir(run)} were trained with (the train split changed?): kept the old one; use "
            f"run_dir=... for the new one, or delete {checkpoints_dir(run)}"
        )
    names = ["joint"] if joint else ["src", "tgt"]
    for name in names:
        for ext in (".vocab", ".model"):  # a copied parent may come without its .vocab
            if (staging / (name + ext)).is_file():
                os.replace(staging / (name + ext), spm_dir(run) / (name + ext))
            else:
                (spm_dir(run) / (name + ext)).unlink(missing_ok=True)
    for stale in MODEL_FILES:  # a switch between joint and separate must not keep old models
        if stale not in names:
            for ext in (".model", ".vocab"):
                (spm_dir(run) / (stale + ext)).unlink(missing_ok=True)


def _parent_models(parent: Path) -> tuple[Path, Path]:
    src, tgt = spm_paths(parent)
    if not src.is_file() or not tgt.is_file():
        raise UserError(f"{parent} has no SentencePiece models in spm/: train.init_from needs a trained run")
    return src, tgt


def _copy_into(folder: Path, parent: Path) -> bool:
    """The parent run's SentencePiece models (and vocabularies) copied into ``folder``; whether joint."""
    src, tgt = _parent_models(parent)
    for model in {src, tgt}:
        for ext in (".model", ".vocab"):
            piece = model.with_suffix(ext)
            if piece.is_file():
                shutil.copyfile(piece, folder / piece.name)
    return src == tgt


def copy_parent_tokenizers(cfg: Config, log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Copy the parent run's SentencePiece models into this run's spm/ (training does this for a
    fine-tuning run without its own; it holds the run directory): the same vocabulary is what makes
    the parent's weights usable."""
    parent = parent_run(cfg)
    _parent_models(parent)
    _build_and_swap(cfg, lambda staging: _copy_into(staging, parent))
    log(f"fine-tuning from {parent}: copied its SentencePiece models into {spm_dir(cfg.run_path)}")
    return spm_paths(cfg.run_path)
