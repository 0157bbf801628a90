"""The training split as token ids in flat binary files, memory-mapped: corpora larger than RAM.

``build_pairs`` streams ``<data_dir>/train.<lang>`` once in chunks, encodes them with the run's
SentencePiece models, drops empty, too long (``train.max_len``), badly proportioned
(``train.filter_ratio``) and, with ``train.dedupe``, repeated pairs, and writes
``<run_dir>/bin/train.{src,tgt}.bin`` (uint16 or int32 ids) plus their lengths. A ``meta.json``
records what they were built from, so they are rebuilt only when that changes.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from array import array
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from seq2seq.checkpoint import atomic_write_bytes, atomic_write_text
from seq2seq.config import Config
from seq2seq.errors import UserError

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
        return self.data[self.offsets[i]: self.offsets[i + 1]].tolist()


def drop_reason(s_ids: list[int], t_ids: list[int], max_len: Optional[int] = None,
                filter_ratio: float = 0.0) -> Optional[str]:
    """Why a pair is filtered out ("empty", "too_long", "ratio"), or None to keep it."""
    if not s_ids or not t_ids:
        return "empty"
    if max_len is not None and (len(s_ids) > max_len or len(t_ids) > max_len):
        return "too_long"
    if filter_ratio and max(len(s_ids), len(t_ids)) > filter_ratio * min(len(s_ids), len(t_ids)):
        return "ratio"
    return None


def _meta(cfg: Config, fingerprint: str) -> dict:
    manifest = cfg.data_dir / "manifest.json"
    files = json.loads(manifest.read_text(encoding="utf-8"))["files"] if manifest.is_file() else {}
    return {"tokenizers": fingerprint, "max_len": cfg.train.max_len, "filter_ratio": cfg.train.filter_ratio,
            "dedupe": cfg.train.dedupe,
            "train": {k: v.get("sha256") for k, v in files.items() if v.get("split") == "train"}}


def build_pairs(cfg: Config, src_tok, tgt_tok, fingerprint: str,
                log: Callable[[str], None] = print) -> tuple[IdSeqs, IdSeqs]:
    """(source ids, target ids) of the filtered training pairs, built or reused under <run_dir>/bin."""
    folder = cfg.run_path / "bin"
    meta = _meta(cfg, fingerprint)
    meta_path = folder / "meta.json"
    dtype = "uint16" if max(len(src_tok), len(tgt_tok)) <= 65535 else "int32"
    names = {side: (folder / f"train.{side}.bin", folder / f"train.{side}.len.npy") for side in ("src", "tgt")}
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if {k: v for k, v in old.items() if k != "stats"} == meta:
            return IdSeqs(*names["src"], dtype), IdSeqs(*names["tgt"], dtype)
    files = [cfg.data_dir / f"train.{lang}" for lang in (cfg.data.src_lang, cfg.data.tgt_lang)]
    for f in files:
        if not f.is_file():
            raise UserError(f"{f} not found: run the download stage first (seq2seq download / make data)")
    folder.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    seen: set[bytes] = set()
    lens = {"src": array("i"), "tgt": array("i")}
    stats = {"read": 0, "empty": 0, "too_long": 0, "ratio": 0, "duplicate": 0}
    tmp = {side: names[side][0].with_suffix(".bin.tmp") for side in names}
    outs = {side: open(tmp[side], "wb") for side in names}
    try:
        with open(files[0], encoding="utf-8", newline="\n") as fs, open(files[1], encoding="utf-8", newline="\n") as ft:
            while True:
                src_lines = [x.rstrip("\n") for x in itertools.islice(fs, CHUNK)]
                tgt_lines = [x.rstrip("\n") for x in itertools.islice(ft, CHUNK)]
                if len(src_lines) != len(tgt_lines):
                    raise UserError(f"{files[0]} and {files[1]} have different line counts: download again")
                if not src_lines:
                    break
                stats["read"] += len(src_lines)
                for s, t, a, b in zip(src_tok.encode(src_lines), tgt_tok.encode(tgt_lines), src_lines, tgt_lines):
                    if not s or not t:
                        stats["empty"] += 1
                    elif len(s) > tc.max_len or len(t) > tc.max_len:
                        stats["too_long"] += 1
                    elif tc.filter_ratio and max(len(s), len(t)) > tc.filter_ratio * min(len(s), len(t)):
                        stats["ratio"] += 1
                    else:
                        if tc.dedupe:
                            key = hashlib.blake2b(f"{a}\t{b}".encode(), digest_size=12).digest()
                            if key in seen:
                                stats["duplicate"] += 1
                                continue
                            seen.add(key)
                        outs["src"].write(np.asarray(s, dtype=dtype).tobytes())
                        outs["tgt"].write(np.asarray(t, dtype=dtype).tobytes())
                        lens["src"].append(len(s))
                        lens["tgt"].append(len(t))
    except BaseException:
        for side in outs:
            outs[side].close()
            tmp[side].unlink(missing_ok=True)
        raise
    for side in outs:
        outs[side].close()
        tmp[side].replace(names[side][0])
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(lens[side], dtype=np.int32))
        atomic_write_bytes(names[side][1], buf.getvalue())
    kept = len(lens["src"])
    atomic_write_text(meta_path, json.dumps({**meta, "stats": {**stats, "kept": kept}}, indent=2) + "\n")
    log(f"training pairs: {kept} of {stats['read']} kept (empty {stats['empty']}, longer than {tc.max_len} "
        f"{stats['too_long']}, length ratio {stats['ratio']}, duplicates {stats['duplicate']}) -> {folder}")
    return IdSeqs(*names["src"], dtype), IdSeqs(*names["tgt"], dtype)
