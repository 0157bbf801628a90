"""Line-exact text I/O for translate: one output line per input line, streamed, written atomically."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput, read_lines


def translate_files(run_dirs: list[Path], input_path: Optional[Path], output_path: Optional[Path], *,
                    beam_size: Optional[int] = None, length_penalty: Optional[float] = None, n_best: int = 1,
                    fmt: str = "text", batch_size: Optional[int] = None, checkpoint: str = "best",
                    device: str = "auto", replace_invalid: bool = False, chunk: int = 2000,
                    attention_png: Optional[Path] = None, interactive: bool = False) -> int:
    """Translate a file (or stdin) into a file (or stdout). Returns the number of lines written.

    ``interactive``: a prompt that translates each line as it is typed (stdin on a terminal).
    ``attention_png``: also save the attention heatmap of the first non-empty input line.
    """
    import dataclasses

    from seq2seq.translator import Translator

    if input_path is not None and not input_path.is_file():
        raise UserError(f"input file not found: {input_path}")
    translator = Translator.from_run_dirs(run_dirs, checkpoint, device)
    dc = translator.cfg.decode
    dc = dataclasses.replace(dc, beam_size=beam_size or dc.beam_size,
                             length_penalty=dc.length_penalty if length_penalty is None else length_penalty,
                             batch_size=batch_size or dc.batch_size, n_best=n_best)
    if dc.n_best > dc.beam_size:
        dc = dataclasses.replace(dc, beam_size=dc.n_best)
    limit = translator.cfg.train.max_len
    if interactive:
        return _interactive(translator, dc, fmt, n_best, limit)
    in_stream = open(input_path, "rb") if input_path else sys.stdin.buffer
    out = AtomicOutput(output_path) if output_path else None
    write = out.write if out else sys.stdout.write
    count = 0
    try:
        lines = read_lines(in_stream, str(input_path or "<stdin>"), replace_invalid)
        while True:
            buf = [line for _, line in zip(range(chunk), lines)]
            if not buf:
                break
            if attention_png is not None and any(x.strip() for x in buf):
                from seq2seq.plot import plot_attention

                plot_attention(translator, next(x for x in buf if x.strip()), attention_png)
                print(f"wrote {attention_png}", file=sys.stderr)
                attention_png = None
            ids = translator.src_tok.encode(buf)
            for hyps, src, src_ids in zip(translator.hypotheses_from_ids(ids, dc, progress=output_path is not None),
                                          buf, ids):
                write(_format(translator, src, len(src_ids), hyps, fmt, n_best, limit) + "\n")
                count += 1
            if out is None:
                sys.stdout.flush()
    except BaseException:
        if out:
            out.discard()
        raise
    finally:
        if input_path:
            in_stream.close()
    if out:
        out.commit()
    return count


def _interactive(translator, dc, fmt: str, n_best: int, limit: int) -> int:
    print(f"seq2seq: {translator.cfg.data.src_lang}->{translator.cfg.data.tgt_lang}, beam {dc.beam_size}; "
          f"type a sentence, Ctrl-D to quit", file=sys.stderr)
    count = 0
    while True:
        try:
            line = input("> ")
        except EOFError:
            print(file=sys.stderr)
            return count
        ids = translator.src_tok.encode([line])
        print(_format(translator, line, len(ids[0]), translator.hypotheses_from_ids(ids, dc)[0], fmt, n_best, limit),
              flush=True)
        count += 1


def _format(translator, src: str, src_len: int, hyps, fmt: str, n_best: int, limit: int) -> str:
    if src_len > limit:
        print(f"warning: a line of {len(src)} characters is longer than the training limit "
              f"({limit} pieces); its output is bounded by decode.max_len_ratio", file=sys.stderr)
    texts = translator.tgt_tok.decode([h.tokens for h in hyps]) if hyps else []
    if fmt == "json":
        return json.dumps({"source": src, "hypotheses": [
            {"text": t, "score": round(h.score, 4), "logprob": round(h.logprob, 4),
             "tokens": translator.tgt_tok.id_to_piece(h.tokens)} for t, h in zip(texts, hyps)]},
            ensure_ascii=False)
    if n_best > 1:
        return "\t".join(f"{t}\t{h.score:.4f}" for t, h in zip(texts, hyps))
    return texts[0] if texts else ""
