"""Line-exact text reading and atomic streamed writing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from seq2seq.checkpoint import default_file_mode
from seq2seq.errors import UserError


def read_lines(stream: BinaryIO, name: str, replace_invalid: bool = False) -> Iterator[str]:
    """Decode a byte stream line by line. Only '\\n' ends a line; a trailing '\\r' (CRLF) is dropped,
    a missing final newline is fine, and invalid UTF-8 is an error naming the line (or U+FFFD with
    ``replace_invalid``)."""
    for number, raw in enumerate(stream, start=1):
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if b"\0" in raw:
            raise UserError(f"{name}: line {number} contains NUL bytes: not a text file")
        try:
            yield raw.decode("utf-8", errors="replace" if replace_invalid else "strict")
        except UnicodeDecodeError as e:
            raise UserError(f"{name}: line {number} is not valid UTF-8 (byte {e.start}); "
                            f"use --replace-invalid to replace bad bytes") from None


class AtomicOutput:
    """Write lines to a temporary file beside ``path`` and rename it into place on success only."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, default_file_mode())
        self.f = os.fdopen(fd, "w", encoding="utf-8", newline="\n")

    def write(self, text: str) -> None:
        self.f.write(text)

    def commit(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.f.close()
        Path(self.tmp).unlink(missing_ok=True)
