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

from seq2seq.config import DecodeConfig
from seq2seq.distributed import pick_device
from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput, read_lines
from seq2seq.translator import Translation, Translator


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
    if io.input is not None and not io.input.is_file():
        raise UserError(f"input file not found: {io.input}")
    if io.attention_dir is not None and io.attention_dir.exists() and not io.attention_dir.is_dir():
        raise UserError(f"--attention takes a folder (one PNG per line), and {io.attention_dir} is a file")
    translator = Translator.from_run_dirs(run_dirs, checkpoint, pick_device(device, "--device"))
    dc = translator.decode_config(**decode_overrides)
    count = interactive(translator, dc, io) if io.interactive else translate_stream(translator, dc, io)
    if io.attention_dir is not None:
        print(f"wrote the attention heatmaps into {io.attention_dir}", file=sys.stderr)
    return count


def translate_lines(
    translator: Translator, dc: DecodeConfig, io: TranslateIO, lines: list[str], first: int
) -> list[str]:
    """The output lines of ``lines`` (input lines ``first``, ``first`` + 1, ...), heatmaps saved."""
    ids = translator.src_tok.encode(lines)
    attention = io.fmt == "json" or io.attention_dir is not None
    found = translator.translations(ids, dc, attention, progress=io.output is not None)
    out = []
    for number, src, src_ids, ts in zip(range(first, first + len(lines)), lines, ids, found):
        warn_if_long(translator, src, len(src_ids))
        if io.attention_dir is not None and ts:
            from seq2seq.plot import plot_translation

            plot_translation(translator, src, ts[0], io.attention_dir / f"line-{number:06d}.png")
        out.append(format_line(translator, src, ts, io.fmt, dc.n_best))
    return out


def translate_stream(translator: Translator, dc: DecodeConfig, io: TranslateIO) -> int:
    """Translate ``io.input`` (or stdin) chunk by chunk into ``io.output`` (or stdout)."""
    in_stream = open(io.input, "rb") if io.input else sys.stdin.buffer
    out = AtomicOutput(io.output) if io.output else None
    write = out.write if out else sys.stdout.write
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
                sys.stdout.flush()
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
    """A prompt that translates each line as it is typed; Ctrl-D ends it."""
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
        print(translate_lines(translator, dc, io, [line], count + 1)[0], flush=True)
        count += 1


def warn_if_long(translator: Translator, src: str, src_len: int) -> None:
    limit = translator.cfg.train.max_len
    if src_len > limit:
        print(
            f"warning: a line of {len(src)} characters is longer than the training limit "
            f"({limit} pieces); its output is bounded by decode.max_len_ratio",
            file=sys.stderr,
        )


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
