"""The translate command: a file (or stdin) into a file (or stdout), or an interactive prompt.

Exactly one output line per input line (empty lines stay empty), streamed in chunks, an output
file written atomically; text or JSON lines with n-best hypotheses and scores.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from seq2seq.config import DecodeConfig
from seq2seq.distributed import pick_device
from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput, read_lines
from seq2seq.search import Hypothesis
from seq2seq.translator import Translator


@dataclass
class TranslateIO:
    """Where translate reads and writes, and in which form."""

    input: Optional[Path] = None  # None: stdin
    output: Optional[Path] = None  # None: stdout
    fmt: str = "text"  # text | json
    replace_invalid: bool = False  # undecodable input bytes become U+FFFD instead of an error
    attention_png: Optional[Path] = None  # heatmap of the first non-empty line
    interactive: bool = False  # a prompt (stdin on a terminal)
    chunk: int = 2000  # lines read and decoded at a time


def translate(
    run_dirs: list[Path], io: TranslateIO, checkpoint: str = "best", device: str = "auto", **decode_overrides
) -> int:
    """Load ``run_dirs`` (several: an ensemble) and translate as ``io`` says, with the runs' decode
    settings updated by ``decode_overrides`` (None values keep the run's). Returns lines written."""
    check_input(io.input)
    if io.input is None:
        _std("stdin")  # closed: fail before loading anything
    if io.output is None and not io.interactive:
        _std("stdout")
    translator = Translator.from_run_dirs(run_dirs, checkpoint, pick_device(device, "--device"))
    dc = dataclasses.replace(
        translator.cfg.decode, **{k: v for k, v in decode_overrides.items() if v is not None}
    )
    if dc.n_best > dc.beam_size:
        dc = dataclasses.replace(dc, beam_size=dc.n_best)
    if io.interactive:
        return interactive(translator, dc, io.fmt, io.replace_invalid)
    return translate_stream(translator, dc, io)


def check_input(path: Optional[Path]) -> None:
    """Anything readable is an input (a file, /dev/stdin, a pipe from ``<(...)``); a missing path or
    a folder is not."""
    if path is None:
        return
    if not path.exists():
        raise UserError(f"input file not found: {path}")
    if path.is_dir():
        raise UserError(f"input {path} is a folder, not a file")


def _std(name: str):
    """sys.stdin.buffer / sys.stdout, or a UserError when the process was started with it closed."""
    stream = getattr(sys, name)
    if stream is None:
        flag = "-i FILE" if name == "stdin" else "-o FILE"
        raise UserError(
            f"standard {name[3:]}put is closed: nothing to {'read' if name == 'stdin' else 'write'} ({flag})"
        )
    return stream.buffer if name == "stdin" else stream


def _stdout_write(text: str) -> None:
    try:
        _std("stdout").write(text)
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise type(e)(e.errno, e.strerror, "<stdout>") from None
        raise


def translate_stream(translator: Translator, dc: DecodeConfig, io: TranslateIO) -> int:
    """Translate ``io.input`` (or stdin) chunk by chunk into ``io.output`` (or stdout)."""
    try:
        in_stream = open(io.input, "rb") if io.input else _std("stdin")
    except OSError as e:
        raise UserError(f"could not read {io.input}: {e.strerror or e}") from None
    try:
        out = AtomicOutput(io.output) if io.output else None
    except BaseException:
        if io.input:
            in_stream.close()
        raise
    write = out.write if out else _stdout_write
    attention_png, count = io.attention_png, 0
    try:
        lines = read_lines(in_stream, str(io.input or "<stdin>"), io.replace_invalid)
        while True:
            buf = [line for _, line in zip(range(io.chunk), lines)]
            if not buf:
                break
            if attention_png is not None and any(x.strip() for x in buf):
                from seq2seq.plot import plot_attention

                plot_attention(translator, next(x for x in buf if x.strip()), attention_png)
                print(f"wrote {attention_png}", file=sys.stderr)
                attention_png = None
            ids = translator.src_tok.encode(buf)
            hyps = translator.hypotheses_from_ids(ids, dc, progress=io.output is not None)
            for h, src, src_ids in zip(hyps, buf, ids):
                write(format_line(translator, src, len(src_ids), h, io.fmt, dc.n_best) + "\n")
                count += 1
            if out is None:
                try:
                    sys.stdout.flush()
                except OSError as e:
                    raise type(e)(e.errno, e.strerror, "<stdout>") from None
    except BaseException:
        if out:
            out.discard()
        raise
    finally:
        if io.input:
            in_stream.close()
    if out:
        out.commit()
    return count


def interactive(translator: Translator, dc: DecodeConfig, fmt: str, replace_invalid: bool = False) -> int:
    """A prompt that translates each line as it is typed; Ctrl-D ends it. A line that is not valid
    UTF-8 is skipped with a warning (or its bad bytes replaced, with ``replace_invalid``): the session
    goes on."""
    sys.stdin.reconfigure(errors="replace" if replace_invalid else "surrogateescape")
    print(
        f"seq2seq: {translator.cfg.data.src_lang}->{translator.cfg.data.tgt_lang}, beam {dc.beam_size}; "
        f"type a sentence, Ctrl-D to quit",
        file=sys.stderr,
    )
    count = 0
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return count
        bad = next((i for i, c in enumerate(line) if "\udc80" <= c <= "\udcff"), None)
        if bad is not None:
            print(
                f"warning: that line is not valid UTF-8 (character {bad + 1}): skipped; type it again",
                file=sys.stderr,
            )
            continue
        ids = translator.src_tok.encode([line])
        hyps = translator.hypotheses_from_ids(ids, dc)[0]
        print(format_line(translator, line, len(ids[0]), hyps, fmt, dc.n_best), flush=True)
        count += 1


def format_line(
    translator: Translator, src: str, src_len: int, hyps: list[Hypothesis], fmt: str, n_best: int
) -> str:
    """One output line: the best translation; n-best "text<TAB>score" pairs; or a JSON object."""
    texts = translator.tgt_tok.decode([h.tokens for h in hyps]) if hyps else []
    if fmt == "json":
        return json.dumps(
            {
                "source": src,
                "hypotheses": [
                    {
                        "text": t,
                        "score": round(h.score, 4),
                        "logprob": round(h.logprob, 4),
                        "tokens": translator.tgt_tok.id_to_piece(h.tokens),
                    }
                    for t, h in zip(texts, hyps)
                ],
            },
            ensure_ascii=False,
        )
    if n_best > 1:
        return "\t".join(f"{t}\t{h.score:.4f}" for t, h in zip(texts, hyps))
    return texts[0] if texts else ""
