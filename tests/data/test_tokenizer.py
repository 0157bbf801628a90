"""SentencePiece training on the tiny embedded corpus: fixed special ids, round trips, stale models."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_recipe_dict

from seq2seq.config.load import from_dict
from seq2seq.config.schema import Config
from seq2seq.constants import BOS, EOS, PAD, UNK
from seq2seq.data.corpus import download, read_split
from seq2seq.data.tokenizer import (
    Tokenizer,
    fingerprint_matches,
    load_tokenizers,
    spm_paths,
    tokenizers_fingerprint,
    train_tokenizers,
)
from seq2seq.errors import UserError


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """The tiny embedded corpus, downloaded once for this module (download is deterministic)."""
    base = tmp_path_factory.mktemp("tok-corpus")
    download(from_dict(tiny_recipe_dict(base)), log=_quiet)
    return base / "corpus"


def _cfg(tmp_path: Path, corpus_dir: Path, **spm) -> Config:
    return from_dict(tiny_recipe_dict(tmp_path, data={"dir": str(corpus_dir)}, spm=spm))


def test_special_ids_constants():
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_joint_model(tmp_path: Path, corpus_dir: Path, model_type: str):
    cfg = _cfg(tmp_path, corpus_dir, joint=True, model_type=model_type)
    logged: list[str] = []
    paths = train_tokenizers(cfg, log=logged.append)
    joint = cfg.run_path / "spm" / "joint.model"
    assert paths == (joint, joint) == spm_paths(cfg.run_path)
    assert joint.is_file() and (cfg.run_path / "spm" / "joint.vocab").is_file()
    assert not (cfg.run_path / "spm" / "src.model").exists()
    assert any("joint" in m for m in logged)
    # no temporary training files left behind
    assert sorted(p.name for p in (cfg.run_path / "spm").iterdir()) == ["joint.model", "joint.vocab"]
    src_tok, tgt_tok = load_tokenizers(cfg.run_path)
    assert src_tok is tgt_tok
    _check_specials(src_tok)
    assert len(src_tok) == cfg.spm.vocab_size
    src, tgt = read_split(cfg, "train")
    _check_round_trip(src_tok, src + tgt)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_separate_models(tmp_path: Path, corpus_dir: Path, model_type: str):
    cfg = _cfg(tmp_path, corpus_dir, joint=False, model_type=model_type, vocab_size=100)
    paths = train_tokenizers(cfg, log=_quiet)
    spm_dir = cfg.run_path / "spm"
    assert paths == (spm_dir / "src.model", spm_dir / "tgt.model")
    assert sorted(p.name for p in spm_dir.iterdir()) == ["src.model", "src.vocab", "tgt.model", "tgt.vocab"]
    src_tok, tgt_tok = load_tokenizers(cfg.run_path)
    assert src_tok is not tgt_tok
    for tok in (src_tok, tgt_tok):
        _check_specials(tok)
        assert len(tok) <= cfg.spm.vocab_size  # hard_vocab_limit=False: small corpora may give fewer pieces
    src, tgt = read_split(cfg, "train")
    _check_round_trip(src_tok, src)
    _check_round_trip(tgt_tok, tgt)
    # each model only knows its own language: German-only letters are unknown to the English model
    assert UNK in src_tok.encode(["Bäume"])[0]
    assert UNK not in tgt_tok.encode(["Bäume"])[0]


def _check_specials(tok: Tokenizer) -> None:
    sp = tok.sp
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS)
    assert tok.id_to_piece([PAD, UNK, BOS, EOS]) == ["<pad>", "<unk>", "<s>", "</s>"]


def _check_round_trip(tok: Tokenizer, lines: list[str]) -> None:
    ids = tok.encode(lines)
    assert len(ids) == len(lines)
    for seq in ids:
        assert seq and all(4 <= i < len(tok) for i in seq)  # no specials added, no unknowns in training text
    assert tok.decode(ids) == lines
    # pieces and ids agree
    assert tok.id_to_piece(ids[0]) == tok.pieces(lines[0])


def test_encode_decode_unseen_sentence(tmp_path: Path, corpus_dir: Path):
    cfg = _cfg(tmp_path, corpus_dir)
    train_tokenizers(cfg, log=_quiet)
    tok, _ = load_tokenizers(cfg.run_path)
    lines = ["we have seven hundred twelve birds.", "wir haben siebenhundertzwölf Vögel.", ""]
    ids = tok.encode(lines)
    assert ids[2] == []
    assert tok.decode(ids) == lines


def test_training_is_deterministic(tmp_path: Path, corpus_dir: Path):
    pieces = []
    for run in ("a", "b"):
        cfg = _cfg(tmp_path / run, corpus_dir)
        train_tokenizers(cfg, log=_quiet)
        tok, _ = load_tokenizers(cfg.run_path)
        pieces.append(tok.id_to_piece(list(range(len(tok)))))
    assert pieces[0] == pieces[1]


def test_joint_then_separate_removes_stale_joint(tmp_path: Path, corpus_dir: Path):
    spm_dir = tmp_path / "run" / "spm"
    train_tokenizers(_cfg(tmp_path, corpus_dir, joint=True), log=_quiet)
    assert (spm_dir / "joint.model").is_file()
    cfg = _cfg(tmp_path, corpus_dir, joint=False)
    paths = train_tokenizers(cfg, log=_quiet)
    assert not (spm_dir / "joint.model").exists() and not (spm_dir / "joint.vocab").exists()
    assert paths == (spm_dir / "src.model", spm_dir / "tgt.model")
    src_tok, tgt_tok = load_tokenizers(cfg.run_path)
    assert src_tok.path.name == "src.model" and tgt_tok.path.name == "tgt.model"


def test_separate_then_joint_removes_stale_separate(tmp_path: Path, corpus_dir: Path):
    spm_dir = tmp_path / "run" / "spm"
    train_tokenizers(_cfg(tmp_path, corpus_dir, joint=False), log=_quiet)
    train_tokenizers(_cfg(tmp_path, corpus_dir, joint=True), log=_quiet)
    assert sorted(p.name for p in spm_dir.iterdir()) == ["joint.model", "joint.vocab"]


def test_retrain_changes_vocab_size(tmp_path: Path, corpus_dir: Path):
    train_tokenizers(_cfg(tmp_path, corpus_dir, vocab_size=120), log=_quiet)
    assert len(load_tokenizers(tmp_path / "run")[0]) == 120
    train_tokenizers(_cfg(tmp_path, corpus_dir, vocab_size=90), log=_quiet)
    assert len(load_tokenizers(tmp_path / "run")[0]) == 90


def test_trains_on_train_split_only(tmp_path: Path, corpus_dir: Path):
    # a word that occurs only in a copy of the dev split must not become a piece
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in corpus_dir.iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    (corpus / "dev.en").write_text("zyxwvq\n" * 20, encoding="utf-8")
    cfg = from_dict(tiny_recipe_dict(tmp_path, data={"dir": str(corpus)}))
    train_tokenizers(cfg, log=_quiet)
    tok, _ = load_tokenizers(cfg.run_path)
    assert UNK in tok.encode(["zyxwvq"])[0]


def test_train_before_download(tmp_path: Path):
    cfg = from_dict(tiny_recipe_dict(tmp_path))
    with pytest.raises(UserError, match="download"):
        train_tokenizers(cfg, log=_quiet)


@pytest.mark.parametrize("content", [b"not a sentencepiece model\n", b"\x00\x01\x02\xff" * 8, b""])
def test_loading_a_non_model_file(tmp_path: Path, content: bytes):
    path = tmp_path / "bogus.model"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        Tokenizer(path)
    msg = str(err.value)
    assert "bogus.model" in msg and "\n" not in msg


def test_loading_a_missing_model(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        Tokenizer(tmp_path / "missing.model")
    with pytest.raises(UserError, match="not found"):
        load_tokenizers(tmp_path / "no-run")


def test_model_with_other_special_ids_is_rejected(tmp_path: Path, corpus_dir: Path):
    import sentencepiece as spm

    text = tmp_path / "text.txt"
    text.write_text((corpus_dir / "train.en").read_text(encoding="utf-8"), encoding="utf-8")
    spm.SentencePieceTrainer.Train(
        input=str(text),
        model_prefix=str(tmp_path / "default_ids"),
        vocab_size=60,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )  # unk=0 bos=1 eos=2
    with pytest.raises(UserError, match="special ids"):
        Tokenizer(tmp_path / "default_ids.model")


def test_fingerprints(tmp_path: Path, corpus_dir: Path):
    import hashlib

    cfg = _cfg(tmp_path, corpus_dir, joint=False)
    train_tokenizers(cfg, log=_quiet)
    src, tgt = load_tokenizers(cfg.run_path)
    again = Tokenizer(src.path)
    assert src.fingerprint() == again.fingerprint() != tgt.fingerprint()
    assert tokenizers_fingerprint(src, tgt) != tokenizers_fingerprint(tgt, src)
    # the same corpus and settings trained elsewhere (another staging folder, another run): the same content
    other = from_dict({**cfg.to_dict(), "run_dir": str(tmp_path / "elsewhere")})
    train_tokenizers(other, log=_quiet)
    src2, tgt2 = load_tokenizers(other.run_path)
    assert src.path.read_bytes() != src2.path.read_bytes()  # the bytes name the folder they were trained in
    assert tokenizers_fingerprint(src, tgt) == tokenizers_fingerprint(src2, tgt2)
    # checkpoints of earlier versions recorded the bytes: they still match
    legacy = hashlib.sha256(src.path.read_bytes() + tgt.path.read_bytes()).hexdigest()
    assert fingerprint_matches(legacy, src, tgt) and not fingerprint_matches(legacy, src2, tgt2)
    assert fingerprint_matches(tokenizers_fingerprint(src, tgt), src2, tgt2)


def test_failed_training_leaves_no_temporary_files(tmp_path: Path, corpus_dir: Path, monkeypatch):
    import seq2seq.data.tokenizer as tokenizer

    def fail(model_prefix: str, **kwargs):
        Path(model_prefix + ".model").write_bytes(b"half")  # SentencePiece got as far as one file
        raise RuntimeError("Internal: out of luck\nmore")

    cfg = _cfg(tmp_path, corpus_dir, joint=True)
    monkeypatch.setattr(tokenizer.spm.SentencePieceTrainer, "Train", fail)
    with pytest.raises(UserError, match="SentencePiece training failed: Internal: out of luck$"):
        train_tokenizers(cfg, log=_quiet)
    assert list((cfg.run_path / "spm").iterdir()) == []
