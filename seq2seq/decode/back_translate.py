"""Back-translation (Sennrich et al. 2016): monolingual target-side text translated into the source
language by a reverse-direction run, written as the train files of one corpus of a recipe's
``data.sources``, so that training reads real and synthetic pairs as two weighted corpora.

The corpus named (``kind: text``, a local ``url``) gets ``<url>/<train stem>.<src_lang>`` (the
translations: the synthetic source side) and ``.<tgt_lang>`` (the monolingual lines, normalized); its
``tag`` (``<BT>``) is prepended at the download stage, as for any corpus. A record beside them
(``<train stem>.back-translation.json``) names the reverse checkpoint, the input and the decode settings:
the same call again finds it and writes nothing (``make bt`` reruns cheaply), another one rewrites the
files (the download stage of ``seq2seq run`` sees them newer than the corpus and reads them again).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, Optional

from seq2seq.config.schema import Config, SourceConfig
from seq2seq.constants import BACK_TRANSLATION_RECORD, checkpoint_file
from seq2seq.data.sources import text_lines
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput, atomic_write_text, file_sha256
from seq2seq.text import normalize

CHUNK = 2000  # monolingual lines translated at a time


def synthetic_source(cfg: Config, name: str) -> SourceConfig:
    """The corpus ``name`` of ``cfg``'s ``data.sources``, checked to be one back-translation can write:
    plain text files in a local folder, with a train split."""
    found = [s for s in cfg.data.sources if s.name == name]
    if not found:
        have = ", ".join(s.name for s in cfg.data.sources) or "none: the recipe has no data.sources"
        raise UserError(f"no source '{name}' in data.sources of {cfg.name} (sources: {have})")
    source = found[0]
    if source.kind != "text" or not source.url or "://" in source.url or "train" not in source.splits:
        raise UserError(
            f"source '{name}': back-translations are written as plain text files, so it needs kind: text, "
            f"a local folder as url and a train split (it has kind {source.kind}, url {source.url!r})"
        )
    return source


def synthetic_files(cfg: Config, source: SourceConfig) -> tuple[Path, Path]:
    """(source-language file, target-language file) of the train split of ``source``."""
    stem = source.splits["train"]
    return tuple(
        Path(source.url) / source.file_pattern.format(split=stem, lang=lang)
        for lang in (cfg.data.src_lang, cfg.data.tgt_lang)
    )


def _input_id(mono: str) -> dict:
    """What identifies the monolingual input: its path and, for a local file, size and mtime."""
    if "://" in mono:
        return {"input": mono}
    st = os.stat(mono)
    return {"input": str(Path(mono).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _chunks(lines: Iterator[str]) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(lines, CHUNK)):
        yield chunk


def back_translate(
    cfg: Config,
    source_name: str,
    model_dir: str | os.PathLike,
    mono: str,
    *,
    skip: int = 0,
    take: int = 0,
    checkpoint: str = "best",
    device: str = "auto",
    log: Callable[[str], None] = print,
    **decode,
) -> Optional[int]:
    """Translate the lines of ``mono`` (a text file, gzipped or not, or a URL; lines ``skip`` to
    ``skip + take``, all with take 0) with the reverse-direction run ``model_dir`` (checkpoint
    ``checkpoint``; ``decode``: decode settings over the run's, e.g. ``sampling=True, topk=10``) into
    the train files of corpus ``source_name`` of ``cfg``. Empty lines and empty translations are left
    out. Returns the pairs written, or None when the files were already made by the same call."""
    source = synthetic_source(cfg, source_name)
    targets = synthetic_files(cfg, source)
    if "://" not in mono and not Path(mono).is_file():
        raise UserError(f"monolingual input not found: {mono}")
    translator = Translator.from_run_dirs([Path(model_dir)], checkpoint, device)
    reverse = translator.cfg.data
    if (reverse.src_lang, reverse.tgt_lang) != (cfg.data.tgt_lang, cfg.data.src_lang):
        raise UserError(
            f"{model_dir} translates {reverse.src_lang} -> {reverse.tgt_lang}; back-translation for "
            f"{cfg.data.src_lang} -> {cfg.data.tgt_lang} needs a {cfg.data.tgt_lang} -> {cfg.data.src_lang} run"
        )
    dc = translator.decode_config(**decode)
    weights = Path(checkpoint) if Path(checkpoint).is_file() else checkpoint_file(model_dir, checkpoint)
    record = {
        "model": str(Path(model_dir).resolve()),
        "checkpoint_sha256": file_sha256(weights),
        **_input_id(mono),
        "skip": skip,
        "take": take,
        "decode": asdict(dc),
    }
    record_path = targets[0].with_name(f"{source.splits['train']}.{BACK_TRANSLATION_RECORD}")
    if record_path.is_file() and all(t.is_file() for t in targets):
        if json.loads(record_path.read_text(encoding="utf-8")) == record:
            log(f"back-translations up to date: {targets[0]}")
            return None
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    lines = itertools.islice(text_lines(mono), skip, skip + take if take else None)
    outs = [AtomicOutput(t) for t in targets]
    count = read = 0
    try:
        for chunk in _chunks(normalize(line) for line in lines):
            read += len(chunk)
            chunk = [line for line in chunk if line]
            if not chunk:
                continue
            found = translator.translations(translator.src_tok.encode(chunk), dc, progress=False)
            for line, hyps in zip(chunk, found):
                text = normalize(hyps[0].text) if hyps else ""
                if text:
                    outs[0].write(text + "\n")
                    outs[1].write(line + "\n")
                    count += 1
    except BaseException:
        for out in outs:
            out.discard()
        raise
    if not count:
        for out in outs:
            out.discard()
        raise UserError(f"no back-translations: {mono} gave no non-empty lines (skip {skip}, take {take})")
    record_path.unlink(missing_ok=True)  # the record marks a complete pair of files: written last
    for out in outs:
        out.commit()
    atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
    how = "sampling" if dc.sampling else f"beam {dc.beam_size}"
    log(f"back-translated {count} of {read} lines ({how}) -> {targets[0]} + {targets[1].name}")
    return count
