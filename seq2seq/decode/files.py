"""The translate command: a file (or stdin) into a file (or stdout), or an interactive prompt.

Exactly one output line per input line (empty lines stay empty), streamed in chunks of
``--buffer-size`` lines (each chunk's translations are written and flushed before the next is read,
so a program can drive translate through a pipe), an output file written atomically; text or JSON
lines with n-best hypotheses, scores and attention; attention heatmaps of every line on request.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from seq2seq.config.schema import DecodeConfig
from seq2seq.decode.heatmap import plot_translation
from seq2seq.decode.translator import Translation, Translator
from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput, check_not_an_input, read_lines
from seq2seq.model.device import pick_device


@dataclass
class TranslateIO:
    """Where translate reads and writes, and in which form."""

    input: Optional[Path] = None  # None: stdin
    output: Optional[Path] = None  # None: stdout
    fmt: str = "text"  # text | json
    replace_invalid: bool = False  # undecodable input bytes become U+FFFD instead of an error
    attention_dir: Optional[Path] = None  # a heatmap PNG per non-empty input line: line-NNNNNN.png
    interactive: bool = False  # a prompt (stdin on a terminal)
    chunk: int = 2000  # lines read, decoded and written at a time (--buffer-size)


def translate(
    run_dirs: list[Path], io: TranslateIO, checkpoint: str = "best", device: str = "auto", **decode_overrides
) -> int:
    """Load ``run_dirs`` (several: an ensemble) and translate as ``io`` says, with the runs' decode
    settings updated by ``decode_overrides`` (None values keep the run's; checked as a recipe's are, so
    e.g. an n-best list longer than the beam is an error). Returns lines written."""
    check_input(io.input)
    check_not_an_input(io.output, [("-i/--input", io.input)])
    if io.input is None:
        _std("stdin")  # closed: fail before loading anything
    if io.output is None and not io.interactive:
        _std("stdout")
    if io.attention_dir is not None and io.attention_dir.exists() and not io.attention_dir.is_dir():
        raise UserError(f"--attention takes a folder (one PNG per line), and {io.attention_dir} is a file")
    device = pick_device(device, "--device")
    translator = Translator.from_run_dirs(
        run_dirs, checkpoint, device, decode_overrides.get("search_precision")
    )
    dc = translator.decode_config(**decode_overrides)
    count = interactive(translator, dc, io) if io.interactive else translate_stream(translator, dc, io)
    if io.attention_dir is not None:
        print(f"wrote the attention heatmaps into {io.attention_dir}", file=sys.stderr)
    return count


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


def translate_lines(
    translator: Translator, dc: DecodeConfig, io: TranslateIO, lines: list[str], first: int
) -> list[str]:
    """The output lines of ``lines`` (input lines ``first``, ``first`` + 1, ...), heatmaps saved."""
    ids = translator.src_tok.encode(lines)
    attention = io.fmt == "json" or io.attention_dir is not None
    found = translator.translations(ids, dc, attention, progress=io.output is not None)
    out = []
    for number, src, ts in zip(range(first, first + len(lines)), lines, found):
        if io.attention_dir is not None and ts:
            plot_translation(translator, src, ts[0], io.attention_dir / f"line-{number:06d}.png")
        out.append(format_line(translator, src, ts, io.fmt, dc.n_best))
    return out


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
    count = 0
    try:
        lines = read_lines(in_stream, str(io.input or "<stdin>"), io.replace_invalid)
        while True:
            buf = [line for _, line in zip(range(io.chunk), lines)]
            if not buf:
                break
            write("".join(x + "\n" for x in translate_lines(translator, dc, io, buf, count + 1)))
            count += len(buf)
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


def interactive(translator: Translator, dc: DecodeConfig, io: TranslateIO) -> int:
    """A prompt that translates each line as it is typed; Ctrl-D ends it. A line that is not valid
    UTF-8 is skipped with a warning (or its bad bytes replaced, with ``io.replace_invalid``): the
    session goes on."""
    sys.stdin.reconfigure(errors="replace" if io.replace_invalid else "surrogateescape")
    what = "sampling" if dc.sampling else f"beam {dc.beam_size}"
    print(
        f"seq2seq: {translator.cfg.data.src_lang}->{translator.cfg.data.tgt_lang}, {what}; "
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
        print(translate_lines(translator, dc, io, [line], count + 1)[0], flush=True)
        count += 1


def format_line(translator: Translator, src: str, found: list[Translation], fmt: str, n_best: int) -> str:
    """One output line: the best translation; n-best "text<TAB>score" pairs; or a JSON object with the
    source pieces and, per hypothesis, its pieces and attention (one row per output piece, EOS
    included when produced; one column per source piece and the source's EOS)."""
    if fmt == "json":
        record: dict = {"source": src, "source_tokens": translator.src_tok.pieces(src) + ["</s>"]}
        width = len(record["source_tokens"]) if found else 0
        record["hypotheses"] = [
            {
                "text": t.text,
                "score": round(t.score, 4),
                "logprob": round(t.logprob, 4),
                "tokens": t.tokens,
                "attention": [[round(x, 4) for x in row[:width]] for row in t.attention.tolist()]
                if t.attention is not None
                else None,
            }
            for t in found
        ]
        return json.dumps(record, ensure_ascii=False)
    if n_best > 1:
        return "\t".join(f"{t.text}\t{t.score:.4f}" for t in found)
    return found[0].text if found else ""
