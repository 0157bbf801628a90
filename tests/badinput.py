"""The harness of the bad-input tables (tests/test_bad_input.py, tests/test_bad_input_safety.py): what
the CLI does with damaged, odd, missing or hostile input.

Each row of a module's ``CASES`` is one case (its id is shown by pytest, so ``pytest --collect-only -q``
counts them). For every case :func:`run_case` asserts, in this order:

1. the exit status (2 for a ``UserError``, 0 where the behaviour is defined as success, 130 for an
   interrupt, 141 for a closed output pipe);
2. stderr: for an error exactly one line ``error: ...`` naming the problem (file, key, line number)
   (``interrupted`` for an interrupt; nothing at all where ``Case.prefix`` is ""), for a success
   nothing (or only the expected ``warning: ...`` lines); never a traceback;
3. nothing already written is lost: every file under the watched folders (the shared run, the
   case's own folder, and any folder the case adds) is byte-identical afterwards, and no new file
   (a stray ``.tmp``, a partial output) appears, except the outputs a success is meant to write;
4. the case's own check of the output (line counts, empty lines, ...).

Each step raises its own AssertionError subclass, so an ``xfail`` names the exact step it expects to
fail (``raises=DataLost``) and any other failure still fails the test.

One tiny run (6 training steps) is built in-process once per module (:func:`build_ctx`, the module's
``ctx`` fixture); the cases run the real CLI in subprocesses (``python -m seq2seq ...``), except
those with a ``patch`` (a full disk, an interrupt), which run ``seq2seq.cli.main`` in-process, and
those with their own ``runner`` (a pipe closed early, a terminal, closed descriptors).

Sizes: ``SEQ2SEQ_BIG_LINES`` (default 100000; 1000000 for the full check) lines for the streaming case,
``SEQ2SEQ_LONG_WORDS`` (default 2000) words for the over-long line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml
from conftest import tiny_recipe_dict

BIG_LINES = int(os.environ.get("SEQ2SEQ_BIG_LINES", "100000"))  # 200000: ~25-45 s on 2 shared cores
LONG_WORDS = int(os.environ.get("SEQ2SEQ_LONG_WORDS", "2000"))
RSS_LIMIT_MB = 1536  # absolute ceiling for the streaming case
# ... and at most this much above a 10-line run of the same command. Streaming measured +0-5 MB; the same
# 100000 lines translated in one chunk (translate_files(chunk=10**9), i.e. not streamed) measured +73 MB
RSS_GROWTH_MB = 48
# the tiny model decodes fastest on one thread, and the suite has 2 cores
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---- what a failing step raises --------------------------------------------------------------
class WrongExit(AssertionError):
    """The exit status is not the expected one."""


class BadMessage(AssertionError):
    """stderr is not the expected one-line error (or the expected warnings only), or has a traceback."""


class DataLost(AssertionError):
    """A file that existed before changed or vanished, or a stray file appeared."""


class WrongOutput(AssertionError):
    """The output (lines, content) is not the defined one."""


# ---- the module's tiny run -------------------------------------------------------------------
@dataclasses.dataclass
class Ctx:
    root: Path
    recipe_dict: dict  # the recipe the run was trained with
    run: Path  # trained run directory (best.pt, last.pt, spm/joint.model, config.yaml)
    corpus: Path  # its downloaded corpus

    def copy_run(self, dest: Path, *, checkpoints: bool = True) -> Path:
        shutil.copytree(self.run, dest)
        if not checkpoints:
            shutil.rmtree(dest / "checkpoints")
        return dest

    def recipe(self, path: Path, **changes) -> Path:
        """A copy of the run's recipe with top-level keys (or whole sections) replaced, as YAML."""
        values = {**self.recipe_dict, **changes}
        path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
        return path


def build_ctx(tmp_path_factory) -> Ctx:
    """The tiny run of a table module (its module-scoped ``ctx`` fixture returns this)."""
    from seq2seq import data, tokenizer, training
    from seq2seq.config import from_dict

    root = tmp_path_factory.mktemp("bad_input")
    values = tiny_recipe_dict(root, train={"max_steps": 6, "valid_every": 6})
    cfg = from_dict(values)
    quiet = lambda msg: None  # noqa: E731
    data.download(cfg, log=quiet)
    tokenizer.train_tokenizers(cfg, log=quiet)
    training.train(cfg, log=quiet)
    assert (cfg.run_path / "checkpoints" / "best.pt").is_file() and (cfg.run_path / "config.yaml").is_file()
    return Ctx(root, values, cfg.run_path, cfg.data_dir)


# ---- running the CLI -------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    returncode: int
    stdout: bytes
    stderr: str
    peak_rss_kb: Optional[int] = None  # of the child alone (os.wait4), subprocess runs only


def run_cli(
    argv: list,
    stdin: Optional[bytes] = None,
    timeout: float = 300,
    pass_fds: tuple = (),
    close_fds: tuple = (),
) -> Outcome:
    """``python -m seq2seq ARGV`` in a subprocess; its own peak RSS comes from os.wait4. ``pass_fds``:
    descriptors the child inherits (``-i /dev/fd/N``); ``close_fds``: its descriptors closed at start
    (0: stdin, 1: stdout), as ``<&-`` / ``>&-`` in a shell."""

    def close() -> None:
        for fd in close_fds:
            os.close(fd)

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq", *map(str, argv)],
            env=CHILD_ENV,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=pass_fds,
            preexec_fn=close if close_fds else None,  # noqa: PLW1509 - only closes descriptors
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            if stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(stdin)
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # -9: killed after ``timeout`` seconds
        out.seek(0)
        err.seek(0)
        return Outcome(proc.returncode, out.read(), err.read().decode("utf-8", "replace"), usage.ru_maxrss)


def run_inprocess(argv: list, patch: Callable[[], contextlib.AbstractContextManager]) -> Outcome:
    """``seq2seq.cli.main(ARGV)`` in this process, stdout/stderr captured; an escaping exception is
    reported like the interpreter would (a traceback on stderr, status 1)."""
    from seq2seq.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    with patch(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - what a user would see
            traceback.print_exc(file=err)
            code = 1
    return Outcome(code, out.getvalue().encode("utf-8"), err.getvalue())


# ---- one case --------------------------------------------------------------------------------
@dataclasses.dataclass
class Prepared:
    argv: list
    stdin: Optional[bytes] = None
    watch: list = dataclasses.field(default_factory=list)  # extra folders/files that must survive
    outputs: set = dataclasses.field(default_factory=set)  # may appear/change, on success only
    may_change: set = dataclasses.field(default_factory=set)  # may appear/change in any case
    patch: Optional[Callable[[], contextlib.AbstractContextManager]] = None  # set: run in-process
    info: dict = dataclasses.field(default_factory=dict)  # anything the case's check needs
    around: Optional[Callable[[], contextlib.AbstractContextManager]] = None  # held during the run
    runner: Optional[Callable[["Prepared"], "Outcome"]] = None  # runs the case itself
    pass_fds: tuple = ()  # see run_cli
    close_fds: tuple = ()


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    prepare: Callable[[Ctx, Path], Prepared]
    exit: int  # expected exit status: 2 = UserError, 0 = defined success
    error: tuple = ()  # needles that the one-line error must contain (error cases)
    warnings: tuple = ()  # success: one stderr line per entry, each "warning: ..." holding it
    check: Optional[Callable[[Prepared, Outcome, Path], None]] = None
    prefix: str = "error: "  # what the one stderr line of a failure starts with; "": stderr stays empty
    other_lines: tuple = ()  # success: stderr lines besides the warnings, each holding one of these
    xfail: str = ""  # reason; the case is then xfail(strict=True, raises=xfail_raises)
    xfail_raises: type = AssertionError

    def param(self):
        marks = (
            [pytest.mark.xfail(strict=True, raises=self.xfail_raises, reason=self.xfail)]
            if self.xfail
            else []
        )
        return pytest.param(self, id=self.id, marks=marks)


def snapshot(paths) -> dict[Path, str]:
    """sha256 of every file under the given folders/files (hidden ones included)."""
    files: dict[Path, str] = {}
    for top in paths:
        top = Path(top)
        items = [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for p in items:
            files[p.resolve()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def assert_preserved(before: dict, after: dict, allowed: set) -> None:
    allowed = {Path(p).resolve() for p in allowed}  # a folder allows everything under it

    def ok(p: Path) -> bool:
        return p in allowed or any(a in p.parents for a in allowed)

    changed = sorted(str(p) for p, h in before.items() if not ok(p) and after.get(p) != h)
    new = sorted(str(p) for p in after if p not in before and not ok(p))
    if changed or new:
        raise DataLost(f"changed or removed: {changed}; new files: {new}")


def assert_stderr(case: Case, outcome: Outcome) -> None:
    err = outcome.stderr
    if "Traceback" in err:
        raise BadMessage(f"traceback on stderr:\n{err[-3000:]}")
    lines = err.strip().splitlines()
    if case.exit != 0 and not case.prefix:
        if lines:
            raise BadMessage(f"expected a quiet exit, got on stderr: {err[-3000:]!r}")
        return
    if case.exit != 0:
        if len(lines) != 1 or not lines[0].startswith(case.prefix):
            raise BadMessage(f"expected one {case.prefix!r} line, got: {err[-3000:]!r}")
        missing = [n for n in case.error if n not in lines[0]]
        if missing:
            raise BadMessage(f"error line lacks {missing}: {lines[0]!r}")
        return
    lines = [x for x in lines if not any(n in x for n in case.other_lines)]
    if len(lines) != len(case.warnings):
        raise BadMessage(f"expected {len(case.warnings)} warning line(s), got: {err[-3000:]!r}")
    for line, needle in zip(lines, case.warnings):
        if not line.startswith("warning: ") or needle not in line:
            raise BadMessage(f"expected a 'warning: ' line holding {needle!r}, got {line!r}")


# ---- helpers for the cases -------------------------------------------------------------------
def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def output_lines(data: bytes) -> list[str]:
    """The lines of a translate output; it must be UTF-8, '\\n'-terminated, without '\\r'."""
    if data and not data.endswith(b"\n"):
        raise WrongOutput(f"output does not end with a newline: {data[-80:]!r}")
    if b"\r" in data:
        raise WrongOutput("output holds '\\r'")
    return data.decode("utf-8").split("\n")[:-1]


def translate_files_case(lines: bytes | str, *extra, old_output: Optional[str] = None):
    """A prepare function: write ``in.txt`` (and an existing ``out.txt`` when given), translate it."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        src, out = write(tmp / "in.txt", lines), tmp / "out.txt"
        if old_output is not None:
            write(out, old_output)
        return Prepared(
            ["translate", ctx.run, "-i", src, "-o", out, *extra], outputs={out}, info={"in": src, "out": out}
        )

    return prepare


def expect_lines(n: int, empty: tuple = (), equal: tuple = ()):
    """A check: the output file has n lines, those in ``empty`` are "", each pair in ``equal`` matches."""

    def check(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
        out = prep.info.get("out")
        data = out.read_bytes() if out is not None else outcome.stdout
        if out is not None and outcome.stdout:
            raise WrongOutput(f"stdout should be empty with -o: {outcome.stdout[:200]!r}")
        lines = output_lines(data)
        if len(lines) != n:
            raise WrongOutput(f"{len(lines)} output lines for {n} input lines: {data[:300]!r}")
        bad = [(i, lines[i]) for i in empty if lines[i] != ""]
        if bad:
            raise WrongOutput(f"lines that must be empty are not: {bad}")
        for i, j in equal:
            if lines[i] != lines[j]:
                raise WrongOutput(f"line {i + 1} and line {j + 1} differ: {lines[i]!r} != {lines[j]!r}")

    return check


def check_no_file(name: str):
    def check(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
        if (tmp / name).exists():
            raise DataLost(f"{name} was created by a failed run")

    return check


def prep_recipe(mutate: Callable[[dict], None], command: str = "train", *extra):
    """A prepare function: the run's recipe changed by ``mutate``, given to ``command``."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        values = yaml.safe_load(yaml.safe_dump(ctx.recipe_dict))
        mutate(values)
        path = write(tmp / "bad.yaml", yaml.safe_dump(values, sort_keys=False))
        return Prepared([command, path, *extra])

    return prepare


class DiskFullOs:
    """``os`` for seq2seq.fileio whose fsync fails with ENOSPC on the temporary files whose names match
    ``pattern`` (default: a checkpoint's)."""

    def __init__(self, pattern: str = r"\.(best|last)\.pt\..+\.tmp"):
        self.pattern = pattern
        self.failed: list[str] = []

    def __getattr__(self, name):
        return getattr(os, name)

    def fsync(self, fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if re.fullmatch(self.pattern, name):
            self.failed.append(name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)


# ---- running one case ------------------------------------------------------------------------
def run_case(case: Case, ctx: Ctx, tmp_path: Path) -> None:
    """Prepare, run and check one case (the four steps of the module docstring)."""
    prep = case.prepare(ctx, tmp_path)
    watched = [ctx.run, ctx.corpus, tmp_path, *prep.watch]
    before = snapshot(watched)
    with prep.around() if prep.around else contextlib.nullcontext():
        if prep.runner:
            outcome = prep.runner(prep)
        elif prep.patch:
            outcome = run_inprocess(prep.argv, prep.patch)
        else:
            outcome = run_cli(prep.argv, prep.stdin, pass_fds=prep.pass_fds, close_fds=prep.close_fds)
    print(f"exit {outcome.returncode}; stderr: {outcome.stderr.strip()[-600:]}")  # shown with -rA
    if outcome.returncode != case.exit:
        raise WrongExit(
            f"exit {outcome.returncode}, expected {case.exit}; stderr: {outcome.stderr[-3000:]!r}"
        )
    assert_stderr(case, outcome)
    assert_preserved(before, snapshot(watched), prep.may_change | (prep.outputs if case.exit == 0 else set()))
    if case.check:
        case.check(prep, outcome, tmp_path)


QUIET = lambda msg: None  # noqa: E731


# ---- prepare functions shared by the tables ----------------------------------------------------
def recipe_file(ctx: Ctx, path: Path, **changes) -> Path:
    """The run's recipe with top-level keys or whole sections replaced, at ``path`` (folders made)."""
    return write(path, yaml.safe_dump({**ctx.recipe_dict, **changes}, sort_keys=False))


def data_section(ctx: Ctx, **changes) -> dict:
    return {**ctx.recipe_dict["data"], **changes}


def translate_in(ctx: Ctx, run: Path, tmp: Path, *extra) -> Prepared:
    """translate ``run`` from a one-line in.txt into out.txt."""
    src, out = write(tmp / "in.txt", "one is the\n"), tmp / "out.txt"
    return Prepared(["translate", run, "-i", src, "-o", out, *extra], outputs={out}, info={"out": out})


def on_copy(command: str, *extra, checkpoints: bool = True):
    """A prepare function: ``command`` on a copy of the run, with the run's recipe pointed at it."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        run = ctx.copy_run(tmp / "run", checkpoints=checkpoints)
        return Prepared([command, recipe_file(ctx, tmp / "r.yaml", run_dir=str(run)), *extra])

    return prepare


def overrides(command: str, *items):
    """A prepare function: ``command`` on the run's recipe with ``items`` as overrides (or flags)."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        return Prepared([command, recipe_file(ctx, tmp / "r.yaml"), *items])

    return prepare


def on_run(*argv):
    """A prepare function: a command on the shared run itself (refused before it writes anything)."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        return Prepared([a if a != "RUN" else ctx.run for a in argv])

    return prepare


def translate_flags(*flags):
    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        return translate_in(ctx, ctx.run, tmp, *flags)

    return prepare
