"""Low-level file I/O shared by every stage: atomic writes and line-exact text reading.

* Writes go to a temporary file beside the target, are fsynced and renamed over it
  (:class:`AtomicOutput`, and :func:`atomic_write_bytes` / :func:`atomic_write_text` on top of it):
  a crash, an interrupt or a full disk leaves the previous file intact and no temporary file behind.
  A symlink is followed (its target is replaced, the link stays), an existing file keeps its
  permissions, and anything that is not a regular file (a device, a FIFO, ``/proc/self/fd/N`` of a
  pipe or of a deleted file) is written directly: only regular files are ever replaced.
* Temporary files are named ``.<name>.<pid>-<random>.tmp``; one whose process is gone (killed while
  writing) is stale and removed by the next writer of that name (:func:`remove_stale_temps`).
* :func:`read_lines` decodes a byte stream line by line: only "\\n" ends a line, a CRLF's "\\r" is
  dropped, NUL bytes and invalid UTF-8 are errors naming the line.

No torch, no click: the download and config code import this without the model stack.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from seq2seq.errors import UserError

MAX_LINE_BYTES = 16 << 20  # the longest line read_lines takes (one sentence per line: far more than any)
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


# mkstemp/mkdtemp names: ".<name>.<pid>-<random>.tmp"; older versions wrote ".<name>.<random>.tmp"
_TEMP = re.compile(r"\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp")


TEMP_NAME_CHARS = 100  # of the target's name in a temporary file's: any name a file system takes fits


def temp_prefix(name: str) -> str:
    """The ``prefix`` for tempfile.mkstemp/mkdtemp of a temporary ``name``: it records this process. The
    name is cut to :data:`TEMP_NAME_CHARS` characters, so the temporary file of a name near the file
    system's limit (255 bytes) still fits."""
    return f".{name[:TEMP_NAME_CHARS]}.{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(folder: Path, name: Optional[str] = None, legacy: bool = False) -> list[Path]:
    """Remove the temporary files (and folders) of writers that died, in ``folder`` (not recursive):
    those of ``name`` only, or all. A temp counts as stale when the process its name records is gone;
    ``legacy`` also removes temps without a process id (older versions; only safe when nobody else can
    be writing there, i.e. under the run directory's lock). Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.fullmatch(entry.name)
        if not m or (name is not None and m["name"] != name[:TEMP_NAME_CHARS]):
            continue
        if (m["pid"] is None and not legacy) or (m["pid"] is not None and _alive(int(m["pid"]))):
            continue
        path = Path(entry.path)
        try:
            shutil.rmtree(path) if entry.is_dir(follow_symlinks=False) else path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def _replaceable(path: Path) -> Optional[Path]:
    """The regular file (or missing path) an atomic write of ``path`` should replace, symlinks followed;
    None when ``path`` is something else (a device, a FIFO, a descriptor's link), to be written directly."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        real = Path(os.path.realpath(path))  # missing, or a dangling symlink: create its target
        return None if os.path.lexists(real) else real
    if not stat.S_ISREG(st.st_mode):
        return None
    real = Path(os.path.realpath(path))
    try:  # /proc/self/fd/N of a deleted file resolves to a name that is not that file
        return real if os.path.samestat(st, os.stat(real)) else None
    except OSError:
        return None


class AtomicOutput:
    """A file written in pieces to a temporary file beside ``path``, renamed into place by ``commit``.

    Text mode (UTF-8, "\\n" line ends) by default; ``binary=True`` takes bytes. ``discard`` removes the
    temporary file and leaves ``path`` as it was; so does a failing ``commit``. As a context manager it
    commits on a clean exit and discards on an exception. A symlink's target is what gets replaced; an
    existing file keeps its permission bits; a path that is not a regular file is opened and written
    directly (``direct`` is then True and ``discard`` cannot undo what was written). OSErrors propagate
    as OSErrors that name ``path``.
    """

    def __init__(self, path: str | os.PathLike, binary: bool = False):
        self.path, self.tmp = Path(path), None
        try:
            target = _replaceable(self.path)
            self.direct = target is None
            if self.direct:
                self.f = open(self.path, "wb" if binary else "w", **({} if binary else _TEXT))
                return
            self.target = target
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target.parent, target.name)
            fd, self.tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent)
        except OSError as e:
            raise _named(e, self.path) from None
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else default_file_mode()
            os.fchmod(fd, mode)  # mkstemp makes 0600: keep the old file's mode, or give open()'s
            self.f = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", **_TEXT)
        except BaseException:
            os.close(fd)
            os.unlink(self.tmp)
            raise

    def write(self, data: str | bytes) -> None:
        try:
            self.f.write(data)
        except OSError as e:
            raise _named(e, self.path) from None

    def commit(self) -> None:
        """Flush, fsync and rename over ``path``; on any failure discard and re-raise."""
        try:
            self.f.flush()
            if self.direct:
                self.f.close()
                return
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.target)
        except OSError as e:
            self.discard()
            raise _named(e, self.path) from None
        except BaseException:
            self.discard()
            raise
        _fsync_dir(self.target.parent)

    def discard(self) -> None:
        """Drop what was written; ``path`` keeps its previous content (or stays absent)."""
        try:
            self.f.close()
        except OSError:  # flushing the rest failed (a full disk): nothing of it is kept anyway
            pass
        if self.tmp is not None:
            Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


_TEXT = {"encoding": "utf-8", "newline": "\n"}


def _named(e: OSError, path: Path) -> OSError:
    """``e`` naming ``path``, the file the caller asked for: a failing write() names no file by itself,
    and mkstemp/rename name the temporary file, which the user never chose."""
    if e.errno is None:
        return e
    return type(e)(e.errno, e.strerror, str(path))


def check_not_an_input(output: Optional[str | os.PathLike], inputs: list[tuple[str, Optional[Path]]]) -> None:
    """Refuse an output file that is one of the inputs (``(label, path)`` pairs), by any name (a symlink, a
    hard link): replacing it would destroy what is being read. Only regular files are compared (two
    names of one pipe or terminal are fine)."""
    if output is None:
        return
    try:
        out = os.stat(output)
    except OSError:
        return  # not there yet: it cannot be an input
    if not stat.S_ISREG(out.st_mode):
        return
    for label, path in inputs:
        try:
            same = path is not None and os.path.samestat(out, os.stat(path))
        except OSError:
            same = False
        if same:
            raise UserError(
                f"the output {output} is the {label} file {path}: writing it would overwrite that input; "
                f"choose another output file"
            )


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


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` (UTF-8) to a log file; an OSError names the file (a full disk otherwise names none)."""
    try:
        with open(path, "a", **_TEXT) as f:
            f.write(text)
    except OSError as e:
        raise _named(e, Path(path)) from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8 (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_lines(
    stream: BinaryIO, name: str, replace_invalid: bool = False, hint: Optional[str] = REPLACE_HINT
) -> Iterator[str]:
    """Decode a byte stream line by line, lazily.

    Only "\\n" ends a line; a trailing "\\r" (CRLF) is dropped; a missing final newline is fine. A line
    holding NUL bytes is a UserError naming ``name`` and the line number; so is invalid UTF-8, with
    ``hint`` appended after "; " (None: no hint), unless ``replace_invalid`` turns bad bytes into U+FFFD;
    so is a line longer than :data:`MAX_LINE_BYTES` (``/dev/zero`` has no line end: memory stays bounded).
    """
    for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE_BYTES + 1), b""), start=1):
        if len(raw) > MAX_LINE_BYTES:
            raise UserError(
                f"{name}: line {number} is longer than {MAX_LINE_BYTES >> 20} MiB: not a text file of sentences "
                f"(one per line)"
            )
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


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
