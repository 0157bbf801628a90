"""The training split as token ids in flat binary files, memory-mapped: corpora larger than RAM.

``build_pairs`` streams ``<data_dir>/train.<lang>`` once in chunks, encodes them with the run's
SentencePiece models, drops empty, too long (``train.max_len``), badly proportioned
(``train.filter_ratio``) and, with ``train.dedupe``, repeated pairs, and writes
``<run_dir>/bin/train.{src,tgt}.bin`` (uint16 or int32 ids) plus their lengths. A ``meta.json``
records what they were built from, so they are rebuilt only when that changes, and how many pairs of
each corpus were kept (``source_counts``: with ``data.sources`` the kept pairs of a corpus are one
contiguous run, in the order of the sources). With ``spm.subword_sampling`` the kept pairs' text lines
go beside them too (``train.{src,tgt}.txt`` and their byte offsets), memory-mapped as :class:`TextLines`
for sampling segmentations afresh (:mod:`seq2seq.data.sampling`). ``drop_reason`` is the pair filter
alone, a pure function for any caller that filters pairs.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from array import array
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from seq2seq.config.schema import Config
from seq2seq.data.corpus import corpus_files
from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput, atomic_write_bytes, atomic_write_text
from seq2seq.constants import MANIFEST

CHUNK = 20000  # lines encoded at a time


class IdSeqs:
    """A read-only sequence of id lists backed by a memory-mapped flat array and an offsets array."""

    def __init__(self, data: Path, lengths: Path, dtype: str):
        self.lengths = np.load(lengths)  # (N,) int32
        self.offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        size = int(self.offsets[-1])
        self.data = np.memmap(data, dtype=dtype, mode="r", shape=(size,)) if size else np.zeros(0, dtype)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> list[int]:
        return self.data[self.offsets[i] : self.offsets[i + 1]].tolist()


class TextLines:
    """A read-only sequence of text lines backed by a memory-mapped UTF-8 file and a memory-mapped array
    of byte offsets (N + 1 of them): nothing per line is held in memory."""

    def __init__(self, data: Path, offsets: Path):
        self.offsets = np.load(offsets, mmap_mode="r")  # (N + 1,) int64
        size = int(self.offsets[-1])
        self.data = (
            np.memmap(data, dtype=np.uint8, mode="r", shape=(size,)) if size else np.zeros(0, np.uint8)
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1]) - 1].tobytes().decode("utf-8")


def _meta(cfg: Config, fingerprint: str) -> dict:
    manifest = cfg.data_dir / MANIFEST
    files = json.loads(manifest.read_text(encoding="utf-8"))["files"] if manifest.is_file() else {}
    meta = {
        "tokenizers": fingerprint,
        "max_len": cfg.train.max_len,
        "filter_ratio": cfg.train.filter_ratio,
        "dedupe": cfg.train.dedupe,
        "text": cfg.spm.subword_sampling,  # the kept lines' text beside the ids
        "train": {k: v.get("sha256") for k, v in files.items() if v.get("split") == "train"},
    }
    ends = train_sources(cfg)
    if len(ends) > 1:  # several corpora: which lines are whose is part of what the ids were built from
        meta["sources"] = [list(e) for e in ends]
    return meta


def drop_reason(
    s_ids: Sequence[int],
    t_ids: Sequence[int],
    max_len: Optional[int] = None,
    filter_ratio: Optional[float] = None,
) -> Optional[str]:
    """Why a training pair is dropped: "empty", "too_long" (a side over ``max_len`` ids), "ratio" (the
    longer side over ``filter_ratio`` times the shorter), or None to keep it. None / 0 turns a filter off."""
    if not s_ids or not t_ids:
        return "empty"
    if max_len and (len(s_ids) > max_len or len(t_ids) > max_len):
        return "too_long"
    if filter_ratio and max(len(s_ids), len(t_ids)) > filter_ratio * min(len(s_ids), len(t_ids)):
        return "ratio"
    return None


def _line_chunks(files: list[Path]) -> Iterator[tuple[list[str], list[str]]]:
    """(source lines, target lines) of the two text files, CHUNK lines at a time."""
    with (
        open(files[0], encoding="utf-8", newline="\n") as fs,
        open(files[1], encoding="utf-8", newline="\n") as ft,
    ):
        while True:
            src_lines = [x.rstrip("\n") for x in itertools.islice(fs, CHUNK)]
            tgt_lines = [x.rstrip("\n") for x in itertools.islice(ft, CHUNK)]
            if len(src_lines) != len(tgt_lines):
                raise UserError(f"{files[0]} and {files[1]} have different line counts: download again")
            if not src_lines:
                return
            yield src_lines, tgt_lines


def train_sources(cfg: Config) -> list[tuple[str, int]]:
    """(corpus name, end line) of each corpus's train lines in train.<lang>, in order, from the manifest
    (a corpus without one, written by hand or before data.sources: one corpus, "main", to the end)."""
    manifest = cfg.data_dir / MANIFEST
    records = json.loads(manifest.read_text(encoding="utf-8")).get("sources") if manifest.is_file() else None
    ends = [(r["name"], r["train_lines"][1]) for r in records or () if "train_lines" in r]
    return ends or [("main", -1)]


def _write_ids(
    cfg: Config, files: list[Path], src_tok, tgt_tok, outs: dict[str, AtomicOutput], dtype: str
) -> tuple[dict, dict[str, array], dict[str, array]]:
    """Encode, filter and append the kept pairs' ids to ``outs`` (and, with ``outs["src.txt"]``, their
    text lines); returns (counts, with the kept pairs per corpus in "sources"; lengths per side; text
    byte lengths per side: empty without text)."""
    tc = cfg.train
    seen: set[bytes] = set()
    lens = {"src": array("i"), "tgt": array("i")}
    text_lens = {"src": array("q"), "tgt": array("q")}
    stats = {"read": 0, "empty": 0, "too_long": 0, "ratio": 0, "duplicate": 0}
    ends = train_sources(cfg)
    kept = {name: 0 for name, _ in ends}
    which = 0  # the corpus of the current line
    for src_lines, tgt_lines in _line_chunks(files):
        first = stats["read"]
        stats["read"] += len(src_lines)
        pairs = zip(src_tok.encode(src_lines), tgt_tok.encode(tgt_lines), src_lines, tgt_lines)
        for line, (s, t, a, b) in enumerate(pairs, start=first):
            while ends[which][1] != -1 and line >= ends[which][1] and which + 1 < len(ends):
                which += 1
            reason = drop_reason(s, t, tc.max_len, tc.filter_ratio)
            if reason is None and tc.dedupe:
                key = hashlib.blake2b(f"{a}\t{b}".encode(), digest_size=12).digest()
                reason = "duplicate" if key in seen else None
                seen.add(key)
            if reason is not None:
                stats[reason] += 1
                continue
            for side, ids, text in (("src", s, a), ("tgt", t, b)):
                outs[side].write(np.asarray(ids, dtype=dtype).tobytes())
                lens[side].append(len(ids))
                if f"{side}.txt" in outs:
                    raw = text.encode("utf-8") + b"\n"
                    outs[f"{side}.txt"].write(raw)
                    text_lens[side].append(len(raw))
            kept[ends[which][0]] += 1
    return {**stats, "sources": [[name, n] for name, n in kept.items()]}, lens, text_lens


def _reusable(old: dict, meta: dict) -> bool:
    """Whether files built under ``old`` (meta.json) serve ``meta``: the same ids, and the text lines
    if wanted (files with text serve a run without sampling as well)."""
    old = {k: v for k, v in old.items() if k != "stats"}
    return {**old, "text": meta["text"]} == meta and (old.get("text", False) or not meta["text"])


def text_paths(cfg: Config) -> dict[str, tuple[Path, Path]]:
    """side -> (text file, byte offsets file) of the kept training pairs under <run_dir>/bin."""
    folder = cfg.run_path / "bin"
    return {
        side: (folder / f"train.{side}.txt", folder / f"train.{side}.txt.offsets.npy")
        for side in ("src", "tgt")
    }


def load_text(cfg: Config) -> tuple[TextLines, TextLines]:
    """(source lines, target lines) of the kept training pairs, memory-mapped (built with spm.subword_sampling)."""
    paths = text_paths(cfg)
    if not all(p.is_file() for pair in paths.values() for p in pair):
        raise UserError(
            f"{cfg.run_path / 'bin'} holds no training text: train with spm.subword_sampling=true rebuilds it"
        )
    return TextLines(*paths["src"]), TextLines(*paths["tgt"])


def _save_npy(path: Path, values: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, values)
    atomic_write_bytes(path, buf.getvalue())


def build_pairs(
    cfg: Config, src_tok, tgt_tok, fingerprint: str, log: Callable[[str], None] = print
) -> tuple[IdSeqs, IdSeqs]:
    """(source ids, target ids) of the filtered training pairs, built or reused under <run_dir>/bin."""
    folder = cfg.run_path / "bin"
    meta = _meta(cfg, fingerprint)
    meta_path = folder / "meta.json"
    dtype = "uint16" if max(len(src_tok), len(tgt_tok)) <= 65535 else "int32"
    names = {
        side: (folder / f"train.{side}.bin", folder / f"train.{side}.len.npy") for side in ("src", "tgt")
    }
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if _reusable(old, meta):
            return IdSeqs(*names["src"], dtype), IdSeqs(*names["tgt"], dtype)
    files = list(corpus_files(cfg, "train"))
    outs = {side: AtomicOutput(names[side][0], binary=True) for side in names}
    texts = text_paths(cfg) if meta["text"] else {}
    outs.update({f"{side}.txt": AtomicOutput(texts[side][0], binary=True) for side in texts})
    try:
        stats, lens, text_lens = _write_ids(cfg, files, src_tok, tgt_tok, outs, dtype)
    except BaseException:
        for out in outs.values():
            out.discard()
        raise
    # meta.json marks a complete set: gone while the four files are swapped in, written last
    meta_path.unlink(missing_ok=True)
    for side in names:
        outs[side].commit()
        _save_npy(names[side][1], np.frombuffer(lens[side], dtype=np.int32))
    for side in texts:
        outs[f"{side}.txt"].commit()
        offsets = np.zeros(len(text_lens[side]) + 1, dtype=np.int64)
        np.cumsum(np.frombuffer(text_lens[side], dtype=np.int64), out=offsets[1:])
        _save_npy(texts[side][1], offsets)
    kept = len(lens["src"])
    atomic_write_text(meta_path, json.dumps({**meta, "stats": {**stats, "kept": kept}}, indent=2) + "\n")
    if len(stats["sources"]) > 1:
        log("training pairs kept per source: " + ", ".join(f"{name} {n}" for name, n in stats["sources"]))
    log(
        f"training pairs: {kept} of {stats['read']} kept (empty {stats['empty']}, longer than {cfg.train.max_len} "
        f"{stats['too_long']}, length ratio {stats['ratio']}, duplicates {stats['duplicate']}) -> {folder}"
    )
    return IdSeqs(*names["src"], dtype), IdSeqs(*names["tgt"], dtype)


def source_counts(cfg: Config) -> list[tuple[str, int]]:
    """(corpus name, kept training pairs) of each corpus, in the order of the pairs in ``<run_dir>/bin``
    (as :func:`build_pairs` last recorded them)."""
    stats = json.loads((cfg.run_path / "bin" / "meta.json").read_text(encoding="utf-8")).get("stats", {})
    return [(name, int(n)) for name, n in stats.get("sources", [])] or [("main", int(stats.get("kept", 0)))]
