"""The second round of bad input (issue 13), part 2: ``f`` outside the folder or clobbering what is
not ours (names, translate -o), ``h`` hangs (long lines, YAML aliases), ``x`` tracebacks and unclear
messages. Harness and checks: tests/fixtures/badinput.py; part 1: tests/cli/test_bad_input_safety.py.
"""

from __future__ import annotations

import contextlib
import os
import pty
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from unittest import mock

import pytest
from fixtures.badinput import (
    CHILD_ENV,
    Case,
    Ctx,
    DataLost,
    DiskFullOs,
    Outcome,
    Prepared,
    WrongOutput,
    build_ctx,
    expect_lines,
    on_copy,
    on_run,
    overrides,
    prep_recipe,
    run_case,
    translate_files_case,
    translate_flags,
    translate_in,
    write,
)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    return build_ctx(tmp_path_factory)


BAD_NAME = "is not a plain name"
RESTORE = "restore it"


# ---- f: outside the folder, or clobbering what is not ours -----------------------------------
def _split_named(name: str):
    def mutate(v: dict) -> None:
        v["data"]["splits"][name] = "test"
        v["data"]["embedded_sizes"][name] = 5

    return mutate


def prep_output_symlink(dangling: bool):
    """-o names a symlink (to an existing file, or dangling): its target is written, the link stays."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        target, link = tmp / "target.txt", tmp / "link.txt"
        if not dangling:
            write(target, "an old translation\n")
        link.symlink_to(target.name)
        prep = translate_in(ctx, ctx.run, tmp)
        prep.argv[-1], prep.outputs, prep.info = link, {target}, {"out": target, "link": link}
        return prep

    return prepare


def check_symlink_kept(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    link = prep.info["link"]
    if not link.is_symlink() or os.readlink(link) != "target.txt":
        raise DataLost("the symlink given to -o was replaced")
    expect_lines(1)(prep, outcome, tmp)


@contextlib.contextmanager
def fifo_reader(path: Path, sink: list):
    """A reader of the FIFO ``path`` for the duration of the run (unblocked at the end in any case)."""

    def read() -> None:
        with open(path, "rb") as f:
            sink.append(f.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # the run never opened it: let the reader see an end
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=60)


def prep_output_fifo(ctx: Ctx, tmp: Path) -> Prepared:
    fifo, sink = tmp / "out.fifo", []
    os.mkfifo(fifo)
    prep = translate_in(ctx, ctx.run, tmp)
    prep.argv[-1], prep.outputs, prep.info = fifo, set(), {"fifo": fifo, "sink": sink}
    prep.around = lambda: fifo_reader(fifo, sink)
    return prep


def check_fifo(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    if not stat.S_ISFIFO(os.lstat(prep.info["fifo"]).st_mode):
        raise DataLost("the FIFO given to -o was replaced by a file")
    data = b"".join(prep.info["sink"])
    if len(data.splitlines()) != 1:
        raise WrongOutput(f"the FIFO's reader got {data!r}, not one line")


def prep_output_fd_link(ctx: Ctx, tmp: Path) -> Prepared:
    """-o /proc/self/fd/1: stdout is an unlinked temporary file (run_cli's), written in place."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    prep = translate_in(ctx, ctx.run, tmp)
    prep.argv[-1], prep.outputs, prep.info = "/proc/self/fd/1", set(), {}
    return prep


def prep_output_mode_kept(ctx: Ctx, tmp: Path) -> Prepared:
    prep = translate_in(ctx, ctx.run, tmp)
    write(prep.info["out"], "an old translation\n")
    os.chmod(prep.info["out"], 0o600)
    return prep


def check_mode_kept(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    mode = stat.S_IMODE(prep.info["out"].stat().st_mode)
    if mode != 0o600:
        raise WrongOutput(f"-o replaced a 0600 file by one with mode {mode:o}")
    expect_lines(1)(prep, outcome, tmp)


# ---- h: hangs --------------------------------------------------------------------------------
ALIAS_BOMB = """
data:
  source: embedded
  splits:
    a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    train: train
    dev: dev
"""


def prep_alias_bomb(ctx: Ctx, tmp: Path) -> Prepared:
    return Prepared(["download", write(tmp / "bomb.yaml", ALIAS_BOMB)])


def long_line(words: int = 0, chars: int = 0) -> str:
    if words:
        return " ".join((["one", "is", "the"] * (words // 3 + 1))[:words])
    return ("one" * (chars // 3 + 1))[:chars]


# ---- x: tracebacks and unclear messages ------------------------------------------------------
def prep_run_config(content: str | None, command: str = "translate"):
    """The run's config.yaml replaced by ``content`` (None: deleted)."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        run = ctx.copy_run(tmp / "run")
        if content is None:
            (run / "config.yaml").unlink()
        else:
            write(run / "config.yaml", content)
        return translate_in(ctx, run, tmp) if command == "translate" else Prepared([command, run])

    return prepare


def prep_results(content: str):
    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        run = ctx.copy_run(tmp / "run")
        write(run / "results.json", content)
        return Prepared(["info", run])

    return prepare


def prep_missing_spm_model(ctx: Ctx, tmp: Path) -> Prepared:
    run = ctx.copy_run(tmp / "run")
    (run / "spm" / "joint.model").unlink()
    return translate_in(ctx, run, tmp)


def prep_disk_full_translating(ctx: Ctx, tmp: Path) -> Prepared:
    from seq2seq import fileio

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell the output's temporary file apart")
    prep = translate_in(ctx, ctx.run, tmp)
    fake = DiskFullOs(r"\.out\.txt\..+\.tmp")
    prep.patch = lambda: mock.patch.object(fileio, "os", fake)
    return prep


def head_runner(prep: Prepared) -> Outcome:
    """``seq2seq translate ... | head -1``: the reader takes one line and closes the pipe, and only
    then is more input sent, so the translator certainly writes into the closed pipe."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq", *map(str, prep.argv)],
            env=CHILD_ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        proc.stdin.write(b"one is the\n" * 2000)  # one whole chunk of translate's input
        proc.stdin.flush()
        first = proc.stdout.readline()
        proc.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(b"two plus three\n" * 10)
            proc.stdin.close()
        code = proc.wait(timeout=300)
        err.seek(0)
        return Outcome(code, first, err.read().decode("utf-8", "replace"))


def tty_runner(prep: Prepared) -> Outcome:
    """The interactive prompt on a terminal: a good line, one that is not UTF-8, a good line, Ctrl-D."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seq2seq", *map(str, prep.argv)],
            env=CHILD_ENV,
            stdin=slave,
            stdout=out,
            stderr=err,
        )
        os.close(slave)
        os.write(master, b"one is the\nt\xffwo\ntwo plus three\n\x04")
        try:
            code = proc.wait(timeout=300)
        finally:
            os.close(master)
        out.seek(0)
        err.seek(0)
        return Outcome(code, out.read(), err.read().decode("utf-8", "replace"))


def check_two_answers(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    answers = outcome.stdout.replace(b"> ", b"").splitlines()
    if len(answers) != 2:
        raise WrongOutput(f"expected answers to the two good lines, got {outcome.stdout!r}")


def prep_stdin_path(ctx: Ctx, tmp: Path) -> Prepared:
    prep = translate_in(ctx, ctx.run, tmp)
    prep.argv[prep.argv.index("-i") + 1], prep.stdin = "/dev/stdin", b"one is the\ntwo plus three\n"
    return prep


def prep_process_substitution(ctx: Ctx, tmp: Path) -> Prepared:
    """-i <(...): a pipe's read end, inherited as /dev/fd/N."""
    r, w = os.pipe()
    os.write(w, b"one is the\ntwo plus three\n")
    os.close(w)
    prep = translate_in(ctx, ctx.run, tmp)
    prep.argv[prep.argv.index("-i") + 1], prep.pass_fds = f"/dev/fd/{r}", (r,)

    @contextlib.contextmanager
    def close_after():
        try:
            yield
        finally:
            os.close(r)

    prep.around = close_after
    return prep


def prep_input_folder(ctx: Ctx, tmp: Path) -> Prepared:
    prep = translate_in(ctx, ctx.run, tmp)
    prep.argv[prep.argv.index("-i") + 1] = tmp
    return prep


def closed(fd: int):
    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        return Prepared(["translate", ctx.run], stdin=b"one is the\n" if fd != 0 else None, close_fds=(fd,))

    return prepare


# ---- the table -------------------------------------------------------------------------------
CASES = [
    # f: outside the folder, or clobbering what is not ours
    Case(
        "f01-split-name-with-dotdot",
        prep_recipe(_split_named("../evil"), "download"),
        2,
        error=("'data.splits'", "../evil", BAD_NAME),
    ),
    Case(
        "f01b-split-name-with-separator",
        prep_recipe(_split_named("a/b"), "download"),
        2,
        error=("'data.splits'", "a/b"),
    ),
    Case("f02-name-with-dotdot", overrides("download", "name=../x"), 2, error=("'name'", "../x", BAD_NAME)),
    Case(
        "f03-average-output-outside",
        on_run("average", "RUN", "--checkpoints", "best", "-o", "../../x"),
        2,
        error=("-o/--output", BAD_NAME),
    ),
    Case(
        "f03b-average-input-outside",
        on_run("average", "RUN", "--checkpoints", "../x"),
        2,
        error=("--checkpoints", BAD_NAME),
    ),
    Case(
        "f04-translate-checkpoint-outside",
        translate_flags("--checkpoint", "../checkpoints/best"),
        2,
        error=("--checkpoint", BAD_NAME),
    ),
    Case(
        "f04b-evaluate-checkpoint-outside",
        on_copy("evaluate", "--checkpoint", "../../x"),
        2,
        error=("--checkpoint", BAD_NAME),
    ),
    Case(
        "f04c-decode-checkpoint-outside",
        overrides("config", "checkpoint=../x"),
        2,
        error=("'decode.checkpoint'", BAD_NAME),
    ),
    Case("f05-output-symlink-followed", prep_output_symlink(dangling=False), 0, check=check_symlink_kept),
    Case(
        "f05b-output-dangling-symlink-followed",
        prep_output_symlink(dangling=True),
        0,
        check=check_symlink_kept,
    ),
    Case("f06-output-fifo-written-directly", prep_output_fifo, 0, check=check_fifo),
    Case("f07-output-fd-link-written-directly", prep_output_fd_link, 0, check=expect_lines(1)),
    Case("f08-output-keeps-file-mode", prep_output_mode_kept, 0, check=check_mode_kept),
    # h: hangs
    Case(
        "h01-line-of-10000-words-cut",
        translate_files_case(long_line(words=10000) + "\none is the\n"),
        0,
        warnings=("longer than the training limit",),
        check=expect_lines(2),
    ),
    Case(
        "h02-line-of-1m-characters-cut",
        translate_files_case(long_line(chars=1_000_000) + "\n"),
        0,
        warnings=("are dropped",),
        check=expect_lines(1),
    ),
    Case("h03-yaml-alias-bomb-in-splits", prep_alias_bomb, 2, error=("bomb.yaml", "aliases", "line 6")),
    Case(
        "h03b-yaml-alias-in-an-override",
        overrides("config", "splits={train: &a train, dev: *a, test: test}"),
        2,
        error=("aliases",),
    ),
    Case(
        "h04-split-source-not-a-string",
        overrides("config", "splits={train: train, dev: dev, test: [1, 2]}"),
        2,
        error=("'data.splits'", "'test'", "string"),
    ),
    Case(
        "h04b-embedded-size-not-a-number",
        overrides("config", "embedded_sizes={train: 10, dev: 5, test: [1]}"),
        2,
        error=("'data.embedded_sizes'",),
    ),
    # x: tracebacks and unclear messages
    Case("x01-stdout-closed", closed(1), 2, error=("standard output is closed", "-o FILE")),
    Case("x02-stdin-closed", closed(0), 2, error=("standard input is closed", "-i FILE")),
    Case(
        "x03-invalid-utf8-at-the-prompt",
        lambda ctx, tmp: Prepared(["translate", ctx.run], runner=tty_runner),
        0,
        warnings=("not valid UTF-8",),
        other_lines=("type a sentence",),
        check=check_two_answers,
    ),
    Case("x04-run-config-empty", prep_run_config(""), 2, error=("config.yaml", "empty", RESTORE)),
    Case("x04b-run-config-empty-info", prep_run_config("", "info"), 2, error=("config.yaml", "empty")),
    Case(
        "x05-run-config-invalid-yaml",
        prep_run_config("model: [\n"),
        2,
        error=("config.yaml", "not valid YAML", "line"),
    ),
    Case("x05b-run-config-not-a-mapping", prep_run_config("- a\n- b\n"), 2, error=("config.yaml", "mapping")),
    Case(
        "x05c-run-config-unknown-key",
        prep_run_config("model: {emb_dimm: 3}\n", "info"),
        2,
        error=("config.yaml", "damaged", "emb_dimm"),
    ),
    Case(
        "x06-results-json-damaged",
        prep_results('{"tests": '),
        2,
        error=("results.json", "damaged", "not JSON"),
    ),
    Case(
        "x06b-results-json-other-layout",
        prep_results('{"tests": {"test": {}}}'),
        2,
        error=("results.json", "damaged"),
    ),
    Case("x07-valid-beam-zero", overrides("config", "valid_beam=0"), 2, error=("'train.valid_beam'",)),
    Case(
        "x08-output-pipe-closed-early",
        lambda ctx, tmp: Prepared(["translate", ctx.run, "--beam-size", "1"], runner=head_runner),
        141,
        prefix="",
    ),
    Case("x09-input-dev-stdin", prep_stdin_path, 0, check=expect_lines(2)),
    Case("x09b-input-process-substitution", prep_process_substitution, 0, check=expect_lines(2)),
    Case("x09c-input-is-a-folder", prep_input_folder, 2, error=("is a directory",)),
    Case(
        "x10-override-mapping-not-yaml",
        overrides("config", "splits={a: ["),
        2,
        error=("'data.splits'", "not valid YAML"),
    ),
    Case("x11-unknown-flag-one-line", translate_flags("--no-such-flag"), 2, error=("--no-such-flag",)),
    Case(
        "x12-config-missing-with-checkpoints",
        prep_run_config(None),
        2,
        error=("config.yaml", "missing", "checkpoints", RESTORE),
    ),
    Case(
        "x13-joint-model-missing",
        prep_missing_spm_model,
        2,
        error=("joint.model", "not found", "seq2seq spm"),
    ),
    Case(
        "x14-unknown-device-names-the-flag",
        translate_flags("--device", "tpu"),
        2,
        error=("--device", "'tpu'"),
    ),
    Case(
        "x15-disk-full-names-the-output",
        prep_disk_full_translating,
        1,
        error=("out.txt", "No space left on device"),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, tmp_path: Path):
    run_case(case, ctx, tmp_path)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
