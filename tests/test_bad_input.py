"""Every bad-input case in one table: what the CLI does with damaged, odd or missing input.

Each row of ``CASES`` is one case (its id is shown by pytest, so ``pytest --collect-only -q`` counts
them). For every case the test asserts, in this order:

1. the exit status (2 for a ``UserError``, 0 where the behaviour is defined as success);
2. stderr: for an error exactly one line ``error: ...`` naming the problem (file, key, line number),
   for a success nothing (or only the expected ``warning: ...`` lines); never a traceback;
3. nothing already written is lost: every file under the watched folders (the shared run, the
   case's own folder, and any folder the case adds) is byte-identical afterwards, and no new file
   (a stray ``.tmp``, a partial output) appears, except the outputs a success is meant to write;
4. the case's own check of the output (line counts, empty lines, ...).

Each step raises its own AssertionError subclass, so an ``xfail`` names the exact step it expects to
fail (``raises=DataLost``) and any other failure still fails the test.

One tiny run (6 training steps) is built in-process once per module; the cases run the real CLI in
subprocesses (``python -m seq2seq ...``), except the disk-full case, which runs ``seq2seq.cli.main``
in-process to be able to patch ``os`` inside ``seq2seq.fileio``.

Sizes: ``SEQ2SEQ_BIG_LINES`` (default 100000; 1000000 for the full check) lines for the streaming case,
``SEQ2SEQ_LONG_WORDS`` (default 2000) words for the over-long line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gzip
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
from unittest import mock

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


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
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


def run_cli(argv: list, stdin: Optional[bytes] = None, timeout: float = 300) -> Outcome:
    """``python -m seq2seq ARGV`` in a subprocess; its own peak RSS comes from os.wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq", *map(str, argv)],
            env=CHILD_ENV,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
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


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    prepare: Callable[[Ctx, Path], Prepared]
    exit: int  # expected exit status: 2 = UserError, 0 = defined success
    error: tuple = ()  # needles that the one-line error must contain (error cases)
    warnings: tuple = ()  # success: one stderr line per entry, each "warning: ..." holding it
    check: Optional[Callable[[Prepared, Outcome, Path], None]] = None
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
    if case.exit != 0:
        if len(lines) != 1 or not lines[0].startswith("error: "):
            raise BadMessage(f"expected one 'error: ' line, got: {err[-3000:]!r}")
        missing = [n for n in case.error if n not in lines[0]]
        if missing:
            raise BadMessage(f"error line lacks {missing}: {lines[0]!r}")
        return
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


# ---- translate cases -------------------------------------------------------------------------
def prep_empty_lines_stdin(ctx: Ctx, tmp: Path) -> Prepared:
    return Prepared(["translate", ctx.run], stdin=b"one is the\n\n\ntwo plus three\n\n")


WHITESPACE = [" ", "\t\t", "one is the", "\u00a0", "\u3000 \u2003", "\x0b\x0c", "\u2028", "\u0085", "  \t "]
INVISIBLE = ["one is the", "\u200b", "\ufeff", "\u200b\u200b \ufeff"]  # format characters, no letters
INVALID_UTF8 = b"one\ntwo\nthr\xffee\nfour\nfive\n"


def prep_long_line(ctx: Ctx, tmp: Path) -> Prepared:
    long = " ".join((["one", "is", "the"] * (LONG_WORDS // 3 + 1))[:LONG_WORDS])  # one piece per word
    return translate_files_case(long + "\none is the\n")(ctx, tmp)


def prep_big_file(ctx: Ctx, tmp: Path) -> Prepared:
    """BIG_LINES short lines, greedy, plus a 10-line run of the same command as the RSS baseline."""
    words = ["one", "two", "three", "is", "the", "plus", "five", "cat"]
    lines = [" ".join(words[(i * k + 3) % len(words)] for k in range(1 + i % 4)) for i in range(BIG_LINES)]
    src = write(tmp / "big.txt", "".join(x + "\n" for x in lines))
    small = write(tmp / "small.txt", "".join(x + "\n" for x in lines[:10]))
    flags = ["--beam-size", "1", "--batch-size", "500"]
    base = run_cli(["translate", ctx.run, "-i", small, "-o", tmp / "small.out", *flags])
    assert base.returncode == 0, base.stderr
    out = tmp / "big.out"
    return Prepared(
        ["translate", ctx.run, "-i", src, "-o", out, *flags],
        outputs={out, tmp / "small.out"},
        info={"in": src, "out": out, "baseline_kb": base.peak_rss_kb},
    )


def check_big_file(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    expect_lines(BIG_LINES)(prep, outcome, tmp)
    peak, base = outcome.peak_rss_kb / 1024, prep.info["baseline_kb"] / 1024
    print(f"peak RSS {peak:.0f} MB for {BIG_LINES} lines, {base:.0f} MB for 10 lines")
    if peak > RSS_LIMIT_MB or peak > base + RSS_GROWTH_MB:
        raise WrongOutput(
            f"peak RSS {peak:.0f} MB for {BIG_LINES} lines (10 lines: {base:.0f} MB): not streamed"
        )


OLD_OUTPUT = "an earlier translation\nthat must survive\n"


def prep_existing_output_fails_late(ctx: Ctx, tmp: Path) -> Prepared:
    """2500 good lines (more than one 2000-line chunk is translated and written) then a bad one."""
    good = "".join(("one is the" if i % 2 else "two plus three") + "\n" for i in range(2500))
    prep = translate_files_case(good.encode() + b"f\xc3\x28our\n", "--beam-size", "1", old_output=OLD_OUTPUT)
    return prep(ctx, tmp)


def check_old_output_kept(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    if prep.info["out"].read_text(encoding="utf-8") != OLD_OUTPUT:
        raise DataLost("the existing output file was modified")


def prep_missing_input(ctx: Ctx, tmp: Path) -> Prepared:
    out = write(tmp / "out.txt", OLD_OUTPUT)
    return Prepared(["translate", ctx.run, "-i", tmp / "nope.txt", "-o", out], info={"out": out})


def prep_gzip_input(ctx: Ctx, tmp: Path) -> Prepared:
    """The compressed file itself given as input (test.en.gz instead of test.en)."""
    src = write(tmp / "test.en.gz", gzip.compress(b"one is the\ntwo plus three\n", mtime=0))
    return Prepared(["translate", ctx.run, "-i", src, "-o", tmp / "out.txt"], outputs={tmp / "out.txt"})


def check_no_file(name: str):
    def check(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
        if (tmp / name).exists():
            raise DataLost(f"{name} was created by a failed run")

    return check


# ---- config / run-directory cases ------------------------------------------------------------
def prep_recipe(mutate: Callable[[dict], None], command: str = "train"):
    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        values = yaml.safe_load(yaml.safe_dump(ctx.recipe_dict))
        mutate(values)
        path = write(tmp / "bad.yaml", yaml.safe_dump(values, sort_keys=False))
        return Prepared([command, path])

    return prepare


def _unknown_key(v: dict) -> None:
    v["train"]["max_stpes"] = 8


def _wrong_type(v: dict) -> None:
    v["train"]["max_steps"] = "eight"


def _section_not_mapping(v: dict) -> None:
    v["model"] = [16, 16]


def prep_missing_recipe(ctx: Ctx, tmp: Path) -> Prepared:
    return Prepared(["train", tmp / "nope.yaml"])


def prep_translate_no_checkpoint(ctx: Ctx, tmp: Path) -> Prepared:
    run = ctx.copy_run(tmp / "fresh", checkpoints=False)
    return Prepared(["translate", run, "-i", write(tmp / "in.txt", "one is the\n"), "-o", tmp / "out.txt"])


def prep_evaluate_no_checkpoint(ctx: Ctx, tmp: Path) -> Prepared:
    run = ctx.copy_run(tmp / "fresh", checkpoints=False)
    return Prepared(["evaluate", ctx.recipe(tmp / "r.yaml", run_dir=str(run))])


def prep_evaluate_after_spm_only(ctx: Ctx, tmp: Path) -> Prepared:
    """download + spm done, train forgotten: the run folder holds spm/ only."""
    run = tmp / "fresh"
    shutil.copytree(ctx.run / "spm", run / "spm")
    return Prepared(["evaluate", ctx.recipe(tmp / "r.yaml", run_dir=str(run))])


def prep_vocab_mismatch(ctx: Ctx, tmp: Path) -> Prepared:
    from seq2seq.config import from_dict
    from seq2seq.tokenizer import Tokenizer, train_tokenizers

    other = from_dict(
        {
            **ctx.recipe_dict,
            "run_dir": str(tmp / "other"),
            "spm": {**ctx.recipe_dict["spm"], "vocab_size": 90},
        }
    )
    train_tokenizers(other, log=lambda msg: None)
    run = ctx.copy_run(tmp / "run")
    for ext in (".model", ".vocab"):
        shutil.copyfile(tmp / "other" / "spm" / f"joint{ext}", run / "spm" / f"joint{ext}")
    assert len(Tokenizer(run / "spm" / "joint.model")) != len(Tokenizer(ctx.run / "spm" / "joint.model"))
    return Prepared(["translate", run, "-i", write(tmp / "in.txt", "one is the\n"), "-o", tmp / "out.txt"])


class _DiskFullOs:
    """``os`` for seq2seq.fileio whose fsync fails with ENOSPC on a checkpoint's temporary file."""

    def __init__(self):
        self.failed: list[str] = []

    def __getattr__(self, name):
        return getattr(os, name)

    def fsync(self, fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if re.fullmatch(r"\.(best|last)\.pt\..+\.tmp", name):
            self.failed.append(name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)


def prep_disk_full_on_save(ctx: Ctx, tmp: Path) -> Prepared:
    """Resume training from step 6 to 8; the checkpoint saved at step 8 hits a full disk."""
    from seq2seq import fileio

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell the checkpoint's temporary file apart")
    run = ctx.copy_run(tmp / "run")
    fake = _DiskFullOs()
    return Prepared(
        ["train", ctx.recipe(tmp / "r.yaml", run_dir=str(run)), "max_steps=8"],
        # monitoring, written before the save: config.yaml (the new max_steps), train.log,
        # metrics.jsonl (the step-8 validation; a resume drops it again), TensorBoard events
        may_change={run / "config.yaml", run / "train.log", run / "metrics.jsonl", run / "tensorboard"},
        patch=lambda: mock.patch.object(fileio, "os", fake),
        info={"fake": fake, "run": run},
    )


def check_disk_full(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    if not prep.info["fake"].failed:
        raise WrongOutput("no checkpoint save reached fsync: the case did not exercise a full disk")
    # byte-identical checkpoints and no .tmp left: covered by the watched-folder check


def prep_damaged_checkpoint(how: str):
    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        run = ctx.copy_run(tmp / "run")
        path = run / "checkpoints" / "best.pt"
        data = bytearray(path.read_bytes())
        if how == "truncated":
            data = data[: len(data) // 2]
        elif how == "bitflip":  # 64 bytes inside the largest tensor's data, zip structure intact
            mid = len(data) // 2
            data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
        elif how == "garbage":
            data = bytearray((i * 7919 + 13) % 256 for i in range(4096))
        path.write_bytes(bytes(data))
        return Prepared(
            ["translate", run, "-i", write(tmp / "in.txt", "one is the\n"), "-o", tmp / "out.txt"]
        )

    return prepare


# ---- data (download) cases -------------------------------------------------------------------
SPLITS = ("train", "dev", "test")


def _corpus(version: str) -> dict[str, bytes]:
    """Mirror files {split}.{lang}: 12/4/4 parallel lines, contents depend on ``version``."""
    sizes = {"train": 12, "dev": 4, "test": 4}
    return {
        f"{s}.{lang}": "".join(f"{version} {s} {lang} sentence {i}\n" for i in range(n)).encode()
        for s, n in sizes.items()
        for lang in ("en", "de")
    }


def prep_download(damage: Callable[[dict], None]):
    """An earlier good download (v1) sits in the data dir; the mirror now holds v2 with ``damage``."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        from seq2seq import data
        from seq2seq.config import from_dict

        values = {
            "name": "text",
            "run_dir": str(tmp / "run"),
            "data": {
                "source": "text",
                "url": "https://example.invalid/x",
                "file_pattern": "{split}.{lang}",
                "splits": {s: s for s in SPLITS},
                "dir": str(tmp / "corpus"),
            },
        }
        recipe = write(tmp / "text.yaml", yaml.safe_dump(values, sort_keys=False))
        for name, content in _corpus("v1").items():
            write(tmp / "mirror_v1" / name, content)
        data.download(from_dict(values), tmp / "mirror_v1", log=lambda msg: None)
        files = _corpus("v2")
        damage(files)
        for name, content in files.items():
            write(tmp / "mirror" / name, content)
        return Prepared(["download", recipe, "--mirror", tmp / "mirror"])

    return prepare


def _drop_last_line(name: str):
    def damage(files: dict) -> None:
        files[name] = b"".join(files[name].splitlines(keepends=True)[:-1])

    return damage


def _empty_split(split: str):
    def damage(files: dict) -> None:
        files[f"{split}.en"] = files[f"{split}.de"] = b""

    return damage


def _missing(name: str):
    def damage(files: dict) -> None:
        del files[name]

    return damage


def _replace(name: str, content: bytes):
    def damage(files: dict) -> None:
        files[name] = content

    return damage


BINARY = bytes((i * 7919 + 13) % 256 for i in range(3000))  # holds NULs and bytes invalid in UTF-8
LATIN1 = "un café\nle déjà vu\n".encode("latin-1")
TRUNCATED_GZ = gzip.compress(b"ein Satz\n" * 50, mtime=0)[:30]

# ---- the table -------------------------------------------------------------------------------
CASES = [
    # translate: defined successes
    Case("t01-empty-lines-stdin", prep_empty_lines_stdin, 0, check=expect_lines(5, empty=(1, 2, 4))),
    Case(
        "t02-whitespace-only-lines",
        translate_files_case("".join(x + "\n" for x in WHITESPACE)),
        0,
        check=expect_lines(
            len(WHITESPACE), empty=tuple(i for i, x in enumerate(WHITESPACE) if not x.strip())
        ),
    ),
    Case(
        "t02b-invisible-only-lines",
        translate_files_case("".join(x + "\n" for x in INVISIBLE)),
        0,
        check=expect_lines(len(INVISIBLE), empty=(1, 2, 3)),
    ),
    Case(
        "t03-line-far-longer-than-training",
        prep_long_line,
        0,
        warnings=("longer than the training limit",),
        check=expect_lines(2),
    ),
    Case(
        "t05-invalid-utf8-replace",
        translate_files_case(INVALID_UTF8, "--replace-invalid"),
        0,
        check=expect_lines(5),
    ),
    Case(
        "t06-crlf-line-ends",
        translate_files_case(b"one is the\r\none is the\n\r\ntwo plus three\r\nfive\r\n"),
        0,
        check=expect_lines(5, empty=(2,), equal=((0, 1),)),
    ),
    Case(
        "t07-no-final-newline",
        translate_files_case(b"one is the\n\ntwo plus three"),
        0,
        check=expect_lines(3, empty=(1,)),
    ),
    Case("t08-empty-file", translate_files_case(b""), 0, check=expect_lines(0)),
    Case(f"t09-big-file-{BIG_LINES}-lines-streamed", prep_big_file, 0, check=check_big_file),
    # translate: errors
    Case(
        "t04-invalid-utf8",
        translate_files_case(INVALID_UTF8),
        2,
        error=("in.txt", "line 3", "UTF-8"),
        check=check_no_file("out.txt"),
    ),
    Case(
        "t10-existing-output-kept-on-late-failure",
        prep_existing_output_fails_late,
        2,
        error=("in.txt", "line 2501", "UTF-8"),
        check=check_old_output_kept,
    ),
    Case(
        "t11-missing-input-file",
        prep_missing_input,
        2,
        error=("nope.txt", "not found"),
        check=check_old_output_kept,
    ),
    Case(
        "t12-nul-bytes",
        translate_files_case(b"one\ntw\x00o\nthree\n"),
        2,
        error=("in.txt", "line 2", "NUL"),
        check=check_no_file("out.txt"),
    ),
    Case(
        "t12b-binary-gzip-input",
        prep_gzip_input,
        2,
        error=("test.en.gz", "line 1", "not a text file"),
        check=check_no_file("out.txt"),
    ),
    # config / CLI / run directory
    Case("c13-unknown-key", prep_recipe(_unknown_key), 2, error=("'train.max_stpes'", "unknown")),
    Case("c14-wrong-type", prep_recipe(_wrong_type), 2, error=("'train.max_steps'", "integer", "eight")),
    Case("c14b-section-not-a-mapping", prep_recipe(_section_not_mapping), 2, error=("'model'", "mapping")),
    Case("c15-missing-recipe", prep_missing_recipe, 2, error=("nope.yaml", "not found")),
    Case(
        "c16-translate-no-checkpoint",
        prep_translate_no_checkpoint,
        2,
        error=("fresh", "best.pt", "train it first"),
    ),
    Case(
        "c16b-evaluate-no-checkpoint",
        prep_evaluate_no_checkpoint,
        2,
        error=("fresh", "best.pt", "train it first"),
    ),
    Case(
        "c16c-evaluate-after-spm-only",
        prep_evaluate_after_spm_only,
        2,
        error=("fresh", "checkpoint", "train"),
    ),
    Case("c17-vocabulary-mismatch", prep_vocab_mismatch, 2, error=("best.pt", "vocabulary", "spm")),
    Case(
        "c18-disk-full-saving-checkpoint",
        prep_disk_full_on_save,
        2,
        error=("No space left on device", ".pt", "could not write"),
        check=check_disk_full,
    ),
    Case(
        "c19-truncated-checkpoint",
        prep_damaged_checkpoint("truncated"),
        2,
        error=("best.pt", "not a readable"),
    ),
    Case("c19b-bitflipped-checkpoint", prep_damaged_checkpoint("bitflip"), 2, error=("best.pt",)),
    Case(
        "c19c-garbage-checkpoint", prep_damaged_checkpoint("garbage"), 2, error=("best.pt", "not a readable")
    ),
    # data (download through a mirror; an earlier good download is in the data dir)
    Case(
        "d20-line-count-mismatch-train",
        prep_download(_drop_last_line("train.de")),
        2,
        error=("split 'train'", "12 en lines", "11 de lines"),
    ),
    Case(
        "d20b-line-count-mismatch-dev",
        prep_download(_drop_last_line("dev.de")),
        2,
        error=("split 'dev'", "4 en lines", "3 de lines"),
    ),
    Case("d21-empty-split", prep_download(_empty_split("test")), 2, error=("split 'test'", "empty")),
    Case(
        "d22-missing-mirror-file",
        prep_download(_missing("test.de")),
        2,
        error=("test.de", "missing from mirror"),
    ),
    Case(
        "d23-binary-file", prep_download(_replace("train.de", BINARY)), 2, error=("train.de", "line 1", "NUL")
    ),
    Case(
        "d23b-latin1-file", prep_download(_replace("dev.en", LATIN1)), 2, error=("dev.en", "line 1", "UTF-8")
    ),
    Case(
        "d23c-truncated-gzip",
        prep_download(_replace("test.en", TRUNCATED_GZ)),
        2,
        error=("test.en", "could not read"),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, tmp_path: Path):
    prep = case.prepare(ctx, tmp_path)
    watched = [ctx.run, ctx.corpus, tmp_path, *prep.watch]
    before = snapshot(watched)
    outcome = run_inprocess(prep.argv, prep.patch) if prep.patch else run_cli(prep.argv, prep.stdin)
    print(f"exit {outcome.returncode}; stderr: {outcome.stderr.strip()[-600:]}")  # shown with -rA
    if outcome.returncode != case.exit:
        raise WrongExit(
            f"exit {outcome.returncode}, expected {case.exit}; stderr: {outcome.stderr[-3000:]!r}"
        )
    assert_stderr(case, outcome)
    assert_preserved(before, snapshot(watched), prep.may_change | (prep.outputs if case.exit == 0 else set()))
    if case.check:
        case.check(prep, outcome, tmp_path)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
