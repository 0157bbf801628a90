"""The second round of bad input (issue 13), part 1: work lost and wrong output with exit 0. Same
harness and the same four checks as tests/cli/test_bad_input.py (see tests/fixtures/badinput.py): exit status,
one-line message, every pre-existing file byte-identical (no stray file), the case's own check.

Row ids by class: ``w`` work lost (stage outputs swapped in only when complete, run-directory
ownership and lock, names training owns, stale temporary files), ``o`` wrong output with exit 0
(checkpoint vs tokenizer and config, ranges of settings and flags). Part 2, paths outside the run,
clobbered outputs, hangs and tracebacks: tests/cli/test_bad_input_io.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from conftest import rehash_manifest
from fixtures.badinput import (
    QUIET,
    Case,
    Ctx,
    DataLost,
    Outcome,
    Prepared,
    WrongOutput,
    build_ctx,
    data_section,
    on_copy,
    on_run,
    overrides,
    recipe_file,
    run_case,
    translate_flags,
    translate_in,
    write,
)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    return build_ctx(tmp_path_factory)


MY_PID = os.getpid()  # a lock held by this test process names it
LOCKED = ("in use by another process", f"PID {MY_PID}")


def dead_pid() -> int:
    """The id of a process that has ended (a writer killed mid-write)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---- w: work lost ----------------------------------------------------------------------------
def prep_spm_interrupted(ctx: Ctx, tmp: Path) -> Prepared:
    """Ctrl-C while SentencePiece trains (it got as far as one file)."""
    from seq2seq.data import tokenizer

    def interrupted(model_prefix: str, **kwargs):
        Path(model_prefix + ".model").write_bytes(b"half")
        raise KeyboardInterrupt

    prep = on_copy("spm")(ctx, tmp)
    prep.patch = lambda: mock.patch.object(tokenizer.spm.SentencePieceTrainer, "Train", interrupted)
    return prep


def prep_spm_changed_corpus(ctx: Ctx, tmp: Path) -> Prepared:
    """Same spm settings, but the train split changed: the retrained tokenizer would differ."""
    run = ctx.copy_run(tmp / "run")
    corpus = tmp / "corpus"
    shutil.copytree(ctx.corpus, corpus)
    for lang in ("en", "de"):
        with open(corpus / f"train.{lang}", "a", encoding="utf-8") as f:
            f.write("zebra quagga xylophone jukebox\n" * 50)
    rehash_manifest(corpus)  # downloaded again, not edited by hand
    recipe = recipe_file(ctx, tmp / "r.yaml", run_dir=str(run), data=data_section(ctx, dir=str(corpus)))
    return Prepared(["spm", recipe])


def prep_other_recipe_same_name(command: str):
    """recipes a/tiny.yaml and b/tiny.yaml (same file name, same folders): a downloaded and trained the
    tokenizer; now ``command`` runs b."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        from seq2seq.config.load import load_config
        from seq2seq.data import corpus as data
        from seq2seq.data import tokenizer

        same = {"run_dir": str(tmp / "run"), "data": data_section(ctx, dir=str(tmp / "corpus"))}
        first = load_config(recipe_file(ctx, tmp / "a" / "tiny.yaml", **same))
        data.download(first, log=QUIET)
        tokenizer.train_tokenizers(first, log=QUIET)
        return Prepared([command, recipe_file(ctx, tmp / "b" / "tiny.yaml", **same)])

    return prepare


def prep_locked(command: str):
    """Another process (this test) holds the folder that ``command`` writes."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        from seq2seq.runs import ownership as rundir

        run, corpus = ctx.copy_run(tmp / "run"), tmp / "corpus"
        shutil.copytree(ctx.corpus, corpus)
        recipe = recipe_file(ctx, tmp / "r.yaml", run_dir=str(run), data=data_section(ctx, dir=str(corpus)))
        argv = {
            "train": ["train", recipe],
            "download": ["download", recipe],
            "average": ["average", run, "--checkpoints", "best", "--checkpoints", "last"],
        }[command]
        held = corpus if command == "download" else run
        return Prepared(argv, around=lambda: rundir.lock(held, "train"))

    return prepare


def prep_stale_temps(ctx: Ctx, tmp: Path) -> Prepared:
    """Temporary files of writers killed mid-write (and of an older version, without a PID) lie in the
    run; one belongs to a live process. Training again (nothing left to do) starts by cleaning."""
    run = ctx.copy_run(tmp / "run")
    pid = dead_pid()
    stale = [
        write(run / "checkpoints" / f".last.pt.{pid}-abcdefgh.tmp", b"x" * 4096),
        write(run / "checkpoints" / ".best.pt.k2j4h5g6.tmp", b"x" * 4096),
        write(run / "spm" / f".spm.{pid}-abcdefgh.tmp" / "joint.model", b"x"),
        write(run / f".config.yaml.{pid}-zzzzzzzz.tmp", b"x"),
    ]
    live = write(run / "checkpoints" / f".last.pt.{MY_PID}-livelive.tmp", b"x")
    written = {run / n for n in ("config.yaml", "metrics.jsonl", "tensorboard", "owner.json", "train.log")}
    return Prepared(
        ["train", recipe_file(ctx, tmp / "r.yaml", run_dir=str(run))],
        outputs=written | set(stale),
        info={"stale": stale, "live": live},
    )


def check_stale_removed(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    left = [str(p) for p in prep.info["stale"] if p.exists()]
    if left:
        raise WrongOutput(f"stale temporary files were not removed: {left}")
    if not prep.info["live"].exists():
        raise DataLost("the temporary file of a live process was removed")


def prep_evaluate_fails_late(ctx: Ctx, tmp: Path) -> Prepared:
    """An earlier evaluation's files exist; the new one decodes 'test', then fails on 'test2'."""
    from seq2seq.config.load import from_dict
    from seq2seq.evaluation.stage import evaluate

    run = ctx.copy_run(tmp / "run")
    evaluate(from_dict({**ctx.recipe_dict, "run_dir": str(run)}), log=QUIET)
    write(run / "hyp.test.de", "an earlier hypothesis file\n")  # so that any rewrite shows
    corpus = tmp / "corpus"
    shutil.copytree(ctx.corpus, corpus)  # no test2.* files
    data = data_section(
        ctx,
        dir=str(corpus),
        splits={**ctx.recipe_dict["data"]["splits"], "test2": "test2"},
        embedded_sizes={**ctx.recipe_dict["data"]["embedded_sizes"], "test2": 20},
    )
    return Prepared(["evaluate", recipe_file(ctx, tmp / "r.yaml", run_dir=str(run), data=data)])


# ---- o: wrong output with exit 0 -------------------------------------------------------------
def prep_other_tokenizer(command: str):
    """spm re-run by hand with other settings of the same vocabulary size (bpe instead of unigram)."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        from seq2seq.config.load import from_dict
        from seq2seq.data.tokenizer import Tokenizer, train_tokenizers

        spm = {**ctx.recipe_dict["spm"], "model_type": "bpe"}
        other = from_dict({**ctx.recipe_dict, "run_dir": str(tmp / "other"), "spm": spm})
        train_tokenizers(other, log=QUIET)
        run = ctx.copy_run(tmp / "run")
        for ext in (".model", ".vocab"):
            shutil.copyfile(tmp / "other" / "spm" / f"joint{ext}", run / "spm" / f"joint{ext}")
        assert len(Tokenizer(run / "spm" / "joint.model")) == len(Tokenizer(ctx.run / "spm" / "joint.model"))
        if command == "translate":
            return translate_in(ctx, run, tmp)
        return Prepared([command, recipe_file(ctx, tmp / "r.yaml", run_dir=str(run))])

    return prepare


def prep_edited_run_config(key: str, value):
    """The run's config.yaml edited by hand: model.<key> no longer what the checkpoint was trained with."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        run = ctx.copy_run(tmp / "run")
        values = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        values["model"][key] = value
        write(run / "config.yaml", yaml.safe_dump(values, sort_keys=False))
        return translate_in(ctx, run, tmp)

    return prepare


# ---- the table -------------------------------------------------------------------------------
CASES = [
    # w: work lost
    Case("w01-spm-vocab-size-1", on_copy("spm", "vocab_size=1"), 2, error=("'spm.vocab_size'", "[8, inf)")),
    Case(
        "w02-spm-input-sentence-size-negative",
        on_copy("spm", "input_sentence_size=-1"),
        2,
        error=("'spm.input_sentence_size'",),
    ),
    Case(
        "w03-spm-vocab-too-small-for-corpus-keeps-tokenizer",
        on_copy("spm", "vocab_size=40", checkpoints=False),
        2,
        error=("'spm.vocab_size'", "too small for this corpus", "character_coverage"),
    ),
    Case("w04-spm-interrupted-keeps-tokenizer", prep_spm_interrupted, 130, prefix="interrupted"),
    Case(
        "w05-spm-other-settings-while-checkpoints-depend-on-it",
        on_copy("spm", "vocab_size=90"),
        2,
        error=("spm.vocab_size 120 -> 90", "checkpoints", "run_dir="),
    ),
    Case(
        "w06-spm-retrained-tokenizer-differs-from-checkpoints",
        prep_spm_changed_corpus,
        2,
        error=("retrained tokenizer differs", "checkpoints", "run_dir="),
    ),
    Case(
        "w07-other-recipe-same-name-spm",
        prep_other_recipe_same_name("spm"),
        2,
        error=("belongs to recipe", "a/tiny.yaml", "run_dir="),
    ),
    Case(
        "w07b-other-recipe-same-name-train",
        prep_other_recipe_same_name("train"),
        2,
        error=("belongs to recipe", "run_dir="),
    ),
    Case(
        "w07c-other-recipe-same-name-download",
        prep_other_recipe_same_name("download"),
        2,
        error=("belongs to recipe", "a/tiny.yaml", "data.dir="),
    ),
    Case(
        "w08-average-onto-best",
        on_run("average", "RUN", "--checkpoints", "best", "--checkpoints", "last", "-o", "best"),
        2,
        error=("best.pt", "belongs to training"),
    ),
    Case(
        "w08b-average-onto-last",
        on_run("average", "RUN", "--checkpoints", "best", "-o", "last"),
        2,
        error=("last.pt", "belongs to training"),
    ),
    Case(
        "w08c-average-onto-step-checkpoint",
        on_run("average", "RUN", "--checkpoints", "best", "-o", "step-00000006"),
        2,
        error=("step-00000006.pt", "belongs to training"),
    ),
    Case("w09-second-train-on-a-locked-run", prep_locked("train"), 2, error=LOCKED),
    Case("w09b-download-into-a-locked-corpus", prep_locked("download"), 2, error=LOCKED),
    Case("w09c-average-in-a-locked-run", prep_locked("average"), 2, error=LOCKED),
    Case("w10-stale-temporary-files-cleaned", prep_stale_temps, 0, check=check_stale_removed),
    Case(
        "w11-evaluate-failing-late-keeps-earlier-results",
        prep_evaluate_fails_late,
        2,
        error=("test2.en", "not found"),
    ),
    # o: wrong output with exit 0
    Case(
        "o01-translate-tokenizer-retrained-same-size",
        prep_other_tokenizer("translate"),
        2,
        error=("best.pt", "other tokenizers", "spm"),
    ),
    Case(
        "o01b-evaluate-tokenizer-retrained-same-size",
        prep_other_tokenizer("evaluate"),
        2,
        error=("best.pt", "other tokenizers"),
    ),
    Case(
        "o02-run-config-edited-share-embeddings",
        prep_edited_run_config("share_embeddings", True),
        2,
        error=("config.yaml", "model.share_embeddings", "checkpoint"),
    ),
    Case(
        "o02b-run-config-edited-dec-hidden",
        prep_edited_run_config("dec_hidden", 32),
        2,
        error=("config.yaml", "model.dec_hidden"),
    ),
    Case("o03-min-lr-negative", overrides("train", "min_lr=-1"), 2, error=("'train.min_lr'",)),
    Case("o03b-min-lr-above-lr", overrides("config", "min_lr=0.01"), 2, error=("'train.min_lr'", "train.lr")),
    Case("o03c-lr-factor-zero", overrides("config", "lr_factor=0"), 2, error=("'train.lr_factor'", "(0, 1]")),
    Case("o03d-lr-factor-above-one", overrides("config", "lr_factor=1.5"), 2, error=("'train.lr_factor'",)),
    Case("o03e-lr-patience-zero", overrides("config", "lr_patience=0"), 2, error=("'train.lr_patience'",)),
    Case(
        "o03f-length-penalty-nan-in-recipe",
        overrides("config", "length_penalty=nan"),
        2,
        error=("'decode.length_penalty'", "finite"),
    ),
    Case(
        "o03g-max-len-ratio-huge",
        overrides("config", "max_len_ratio=1e9"),
        2,
        error=("'decode.max_len_ratio'",),
    ),
    Case(
        "o03h-max-len-offset-huge",
        overrides("config", "max_len_offset=100000000"),
        2,
        error=("'decode.max_len_offset'",),
    ),
    Case(
        "o04-translate-length-penalty-nan",
        translate_flags("--length-penalty", "nan"),
        2,
        error=("--length-penalty", "finite"),
    ),
    Case(
        "o04b-translate-length-penalty-inf",
        translate_flags("--length-penalty", "inf"),
        2,
        error=("--length-penalty",),
    ),
    Case(
        "o04c-translate-length-penalty-negative",
        translate_flags("-a", "-1"),
        2,
        error=("--length-penalty", "[0, 10]"),
    ),
    Case("o04d-translate-length-penalty-huge", translate_flags("-a", "1e6"), 2, error=("--length-penalty",)),
    Case(
        "o04e-translate-beam-size-zero",
        translate_flags("--beam-size", "0"),
        2,
        error=("--beam-size", "[1, 256]"),
    ),
    Case(
        "o04f-translate-n-best-not-a-number",
        translate_flags("--n-best", "x"),
        2,
        error=("--n-best", "integer"),
    ),
    Case(
        "o05-tune-decode-alphas-nan",
        overrides("tune-decode", "--alphas", "0.6,nan"),
        2,
        error=("--alphas", "finite"),
    ),
    Case(
        "o05b-tune-decode-beams-zero",
        overrides("tune-decode", "--beams", "0,5"),
        2,
        error=("--beams", "[1, 256]"),
    ),
    Case(
        "o05c-tune-decode-beams-not-numbers",
        overrides("tune-decode", "--beams", "1,x"),
        2,
        error=("--beams", "integer"),
    ),
    Case(
        "o05d-tune-decode-on-a-test-set",
        overrides("tune-decode", "--split", "test"),
        2,
        error=("test set", "--split dev"),
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, tmp_path: Path):
    run_case(case, ctx, tmp_path)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
