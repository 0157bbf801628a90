"""fileio: atomic writes (old file kept on any failure, no temporary file left, umask mode) and
line-exact reading (CRLF, NUL bytes, invalid UTF-8, no final newline, replacement)."""

from __future__ import annotations

import io
import os
import stat

import pytest

from seq2seq import fileio
from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput, atomic_write_bytes, atomic_write_text, read_lines


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- atomic_write_bytes / atomic_write_text ------------------------------------------------------


def test_atomic_write_text_replaces_content(tmp_path):
    path = tmp_path / "deep" / "f.txt"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "zwei ü\n")
    assert path.read_text(encoding="utf-8") == "zwei ü\n"
    assert leftovers(path.parent) == []


def test_interrupted_write_keeps_the_previous_file_and_reraises(tmp_path, monkeypatch):
    path = tmp_path / "notes.txt"
    atomic_write_text(path, "old")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("failing", ["replace", "fsync", "fchmod"])
def test_os_error_is_one_line_user_error_and_keeps_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, failing, boom)
    with pytest.raises(UserError) as e:
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert str(e.value) == f"could not write {path}: No space left on device"
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_atomic_write_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic = tmp_path / "atomic.txt"
        atomic_write_text(atomic, "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(atomic.stat().st_mode) == 0o644


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_default_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        mode = fileio.default_file_mode()
        assert os.umask(umask) == umask  # reading the umask leaves it as it was
        with AtomicOutput(tmp_path / "streamed.txt") as out:
            out.write("x")
    finally:
        os.umask(old)
    assert mode == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "streamed.txt").stat().st_mode) == mode


# ---- AtomicOutput --------------------------------------------------------------------------------


def test_context_manager_commits_on_clean_exit(tmp_path):
    path = tmp_path / "sub" / "out.txt"  # parent folders are created
    with AtomicOutput(path) as out:
        out.write("a\n")
        assert not path.exists(), "nothing is visible before the commit"
        out.write("b ü\n")
    assert path.read_bytes() == "a\nb ü\n".encode()
    assert leftovers(path.parent) == []


def test_failure_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with AtomicOutput(path) as out:
            out.write("half of the new\n")
            raise Boom
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_explicit_commit_and_discard(tmp_path):
    kept, dropped = AtomicOutput(tmp_path / "kept.txt"), AtomicOutput(tmp_path / "dropped.txt")
    assert len(leftovers(tmp_path)) == 2
    kept.write("k\n")
    dropped.write("d\n")
    kept.commit()
    dropped.discard()
    dropped.discard()  # a second discard is harmless
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]
    assert (tmp_path / "kept.txt").read_text() == "k\n"


def test_failing_commit_discards(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    out = AtomicOutput(path)
    out.write("new\n")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(OSError):  # the streaming writer passes OSErrors on unchanged
        out.commit()
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_text_mode_writes_utf8_and_never_translates_newlines(tmp_path):
    with AtomicOutput(tmp_path / "t.txt") as out:
        out.write("a\r\nb\nä\n")
    assert (tmp_path / "t.txt").read_bytes() == b"a\r\nb\n\xc3\xa4\n"
    with AtomicOutput(tmp_path / "t2.txt") as out:
        with pytest.raises(TypeError):
            out.write(b"bytes")  # text mode takes str


def test_binary_mode(tmp_path):
    data = bytes(range(256)) * 3
    with AtomicOutput(tmp_path / "ids.bin", binary=True) as out:
        out.write(data[:100])
        out.write(data[100:])
    assert (tmp_path / "ids.bin").read_bytes() == data
    with AtomicOutput(tmp_path / "ids2.bin", binary=True) as out:
        with pytest.raises(TypeError):
            out.write("text")  # binary mode takes bytes
    assert leftovers(tmp_path) == []


# ---- read_lines ----------------------------------------------------------------------------------


def lines(data: bytes, **kwargs) -> list[str]:
    return list(read_lines(io.BytesIO(data), "in.txt", **kwargs))


def test_only_newline_ends_a_line_and_crlf_loses_its_cr():
    assert lines(b"a\r\nb\nc\rd\r\n\r\n") == ["a", "b", "c\rd", ""]
    assert lines("x\u2028y\x85\n".encode()) == ["x\u2028y\x85"]  # other line breaks stay inside


def test_missing_final_newline_and_empty_input():
    assert lines(b"one\ntwo") == ["one", "two"]
    assert lines(b"one\ntwo\r") == ["one", "two"]
    assert lines(b"") == []
    assert lines(b"\n") == [""]


def test_nul_bytes_name_the_line():
    with pytest.raises(UserError) as e:
        lines(b"one\ntw\x00o\nthree\n")
    assert str(e.value) == "in.txt: line 2 contains NUL bytes: not a text file"


def test_invalid_utf8_names_the_line_and_byte_with_the_hint():
    with pytest.raises(UserError) as e:
        lines(b"ok\nok\nf\xc3\x28our\r\n")
    assert str(e.value) == (
        "in.txt: line 3 is not valid UTF-8 (byte 1); use --replace-invalid to replace bad bytes"
    )
    with pytest.raises(UserError) as e:
        lines(b"\xff\n", hint=None)
    assert str(e.value) == "in.txt: line 1 is not valid UTF-8 (byte 0)"


def test_replace_invalid_gives_replacement_characters():
    assert lines(b"a\xffb\r\n\xc3\n", replace_invalid=True) == ["a\ufffdb", "\ufffd"]
    with pytest.raises(UserError, match="NUL"):
        lines(b"a\x00\n", replace_invalid=True)  # NUL bytes are refused even then


def test_lazy_lines_before_an_error_are_yielded():
    it = read_lines(io.BytesIO(b"one\ntwo\n\xff\n"), "in.txt")
    assert [next(it), next(it)] == ["one", "two"]
    with pytest.raises(UserError, match="line 3"):
        next(it)


# ---- what an atomic write replaces ---------------------------------------------------------------


def test_a_symlink_is_followed_and_kept(tmp_path):
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("old\n")
    link.symlink_to("target.txt")
    atomic_write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == "target.txt"
    assert target.read_text() == "new\n"
    assert leftovers(tmp_path) == []


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to("sub/target.txt")
    (tmp_path / "sub").mkdir()
    with AtomicOutput(link) as out:
        out.write("x\n")
    assert link.is_symlink() and (tmp_path / "sub" / "target.txt").read_text() == "x\n"


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "private.txt"
    path.write_text("old\n")
    os.chmod(path, 0o600)
    atomic_write_text(path, "new\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "new\n"


def test_a_fifo_is_written_directly(tmp_path):
    import threading

    fifo, got = tmp_path / "out.fifo", []
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    with AtomicOutput(fifo) as out:
        assert out.direct
        out.write("through the pipe\n")
    reader.join(timeout=30)
    assert got == [b"through the pipe\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and leftovers(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_descriptor_of_a_deleted_file_is_written_directly(tmp_path):
    import tempfile

    with tempfile.TemporaryFile(dir=tmp_path) as f:  # unlinked: /proc/self/fd/N names no file
        out = AtomicOutput(f"/proc/self/fd/{f.fileno()}")
        assert out.direct
        out.write("in place\n")
        out.commit()
        f.seek(0)
        assert f.read() == b"in place\n"
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_names_the_file(tmp_path, monkeypatch):
    out = AtomicOutput(tmp_path / "out.txt")

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    out.f = Full()
    with pytest.raises(OSError) as e:
        out.write("x")
    assert e.value.filename == str(tmp_path / "out.txt") and e.value.errno == 28
    out.discard()


# ---- stale temporary files -----------------------------------------------------------------------


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_files_record_the_writer(tmp_path):
    out = AtomicOutput(tmp_path / "f.txt")
    assert os.path.basename(out.tmp).startswith(f".f.txt.{os.getpid()}-")
    out.discard()


def test_a_writer_removes_the_stale_temporary_files_of_its_name(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".f.txt.{dead}-abcdefgh.tmp"
    other_name = tmp_path / f".g.txt.{dead}-abcdefgh.tmp"
    live = tmp_path / f".f.txt.{os.getpid()}-abcdefgh.tmp"
    legacy = tmp_path / ".f.txt.abcdefgh.tmp"
    for p in (stale, other_name, live, legacy):
        p.write_bytes(b"x")
    atomic_write_text(tmp_path / "f.txt", "new\n")
    assert not stale.exists()
    assert other_name.exists() and live.exists() and legacy.exists()  # not its name, alive, no pid


def test_remove_stale_temps_all_names_and_legacy(tmp_path):
    dead = _dead_pid()
    files = [tmp_path / f".a.pt.{dead}-abcdefgh.tmp", tmp_path / ".b.pt.abcdefgh.tmp"]
    for p in files:
        p.write_bytes(b"x")
    folder = tmp_path / f".spm.{dead}-abcdefgh.tmp"
    folder.mkdir()
    (folder / "joint.model").write_bytes(b"x")
    keep = tmp_path / "notes.tmp"
    keep.write_bytes(b"x")
    removed = fileio.remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted([files[0], folder])
    assert not files[0].exists() and not folder.exists() and files[1].exists()
    fileio.remove_stale_temps(tmp_path, legacy=True)
    assert not files[1].exists() and keep.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (writes fail with ENOSPC)")
def test_appending_to_a_full_disk_names_the_file():
    with pytest.raises(OSError) as e:
        fileio.append_text("/dev/full", "a log line\n")
    assert e.value.errno == 28 and e.value.filename == "/dev/full"
