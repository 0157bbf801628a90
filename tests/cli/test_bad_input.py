"""Every bad-input case of the first round in one table: damaged, odd or missing input (translate
input, recipes, run directories, checkpoints, downloads). The harness (what each case asserts, how it
runs) is tests/fixtures/badinput.py; the second round (work lost, clobbering, paths outside the run, hangs,
tracebacks) is tests/cli/test_bad_input_safety.py.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Callable
from unittest import mock

import pytest
import yaml
from fixtures.badinput import (
    BIG_LINES,
    LONG_WORDS,
    RSS_GROWTH_MB,
    RSS_LIMIT_MB,
    Case,
    Ctx,
    DataLost,
    DiskFullOs,
    Outcome,
    Prepared,
    WrongOutput,
    build_ctx,
    check_no_file,
    expect_lines,
    prep_recipe,
    run_case,
    run_cli,
    translate_files_case,
    write,
)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    return build_ctx(tmp_path_factory)


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


# ---- config / run-directory cases ------------------------------------------------------------


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
    from seq2seq.config.load import from_dict
    from seq2seq.data.tokenizer import Tokenizer, train_tokenizers

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


def prep_disk_full_on_save(ctx: Ctx, tmp: Path) -> Prepared:
    """Resume training from step 6 to 8; the checkpoint saved at step 8 hits a full disk."""
    from seq2seq import fileio

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell the checkpoint's temporary file apart")
    run = ctx.copy_run(tmp / "run")
    fake = DiskFullOs()
    return Prepared(
        ["train", ctx.recipe(tmp / "r.yaml", run_dir=str(run)), "max_steps=8"],
        # monitoring, written before the save: config.yaml (the new max_steps) and with it owner.json
        # (the overrides it came from), train.log, metrics.jsonl (the step-8 validation; a resume
        # drops it again), TensorBoard events
        may_change={
            run / n for n in ("config.yaml", "owner.json", "train.log", "metrics.jsonl", "tensorboard")
        },
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
        from seq2seq.config.load import from_dict
        from seq2seq.data import corpus as data

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
    run_case(case, ctx, tmp_path)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
