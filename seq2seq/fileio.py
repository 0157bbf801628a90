"""Low-level file I/O shared by every stage: atomic writes and line-exact text reading.

* Writes go to a temporary file beside the target, are fsynced and renamed over it
  (:class:`AtomicOutput`, and :func:`atomic_write_bytes` / :func:`atomic_write_text` on top of it):
  a crash, an interrupt or a full disk leaves the previous file intact and no temporary file behind.
* :func:`read_lines` decodes a byte stream line by line: only "\\n" ends a line, a CRLF's "\\r" is
  dropped, NUL bytes and invalid UTF-8 are errors naming the line.

No torch, no click: the download and config code import this without the model stack.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from seq2seq.errors import UserError

REPLACE_HINT = "use --replace-invalid to replace bad bytes"  # read_lines' default hint (the translate CLI)


def default_file_mode() -> int:
    """0666 minus the process umask: the mode a plain open() gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; best effort (some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicOutput:
    """A file written in pieces to a temporary file beside ``path``, renamed into place by ``commit``.

    Text mode (UTF-8, "\\n" line ends) by default; ``binary=True`` takes bytes. ``discard`` removes the
    temporary file and leaves ``path`` as it was; so does a failing ``commit``. As a context manager it
    commits on a clean exit and discards on an exception. OSErrors propagate unchanged.
    """

    def __init__(self, path: str | os.PathLike, binary: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, default_file_mode())  # mkstemp makes 0600; give the mode open() would
            self.f = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        except BaseException:
            os.close(fd)
            os.unlink(self.tmp)
            raise

    def write(self, data: str | bytes) -> None:
        self.f.write(data)

    def commit(self) -> None:
        """Flush, fsync and rename over ``path``; on any failure discard and re-raise."""
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        _fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Drop what was written; ``path`` keeps its previous content (or stays absent)."""
        try:
            self.f.close()
        except OSError:  # flushing the rest failed (a full disk): nothing of it is kept anyway
            pass
        Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (see :class:`AtomicOutput`); creates missing folders.

    An OSError becomes a one-line ``UserError("could not write <path>: <reason>")``.
    """
    path = Path(path)
    try:
        with AtomicOutput(path, binary=True) as out:
            out.write(data)
    except OSError as e:
        raise UserError(f"could not write {path}: {e.strerror or e}") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8 (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_lines(
    stream: BinaryIO, name: str, replace_invalid: bool = False, hint: Optional[str] = REPLACE_HINT
) -> Iterator[str]:
    """Decode a byte stream line by line, lazily.

    Only "\\n" ends a line; a trailing "\\r" (CRLF) is dropped; a missing final newline is fine. A line
    holding NUL bytes is a UserError naming ``name`` and the line number; so is invalid UTF-8, with
    ``hint`` appended after "; " (None: no hint), unless ``replace_invalid`` turns bad bytes into U+FFFD.
    """
    for number, raw in enumerate(stream, start=1):
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if b"\0" in raw:
            raise UserError(f"{name}: line {number} contains NUL bytes: not a text file")
        try:
            yield raw.decode("utf-8", errors="replace" if replace_invalid else "strict")
        except UnicodeDecodeError as e:
            raise UserError(
                f"{name}: line {number} is not valid UTF-8 (byte {e.start})" + (f"; {hint}" if hint else "")
            ) from None
