"""The third round of bad input (issue 36): what enters from outside (corpus files, references,
translate input, recipes, the Python API) and the fine-tuning and re-run paths. Harness and checks:
tests/fixtures/badinput.py (exit status, one-line message, nothing already written lost, the case's
own check).

Row ids by the issue's points: ``t`` tokenizer (fine-tune copy, retrain compared by content), ``c``
corpus (manifest hashes, one text normalization, pipes, one language), ``y`` recipes (duplicate keys,
ranges), ``o`` outputs (onto an input, averaged checkpoints, long names), ``a`` the Python API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unicodedata
from pathlib import Path
from unittest import mock

import pytest
import yaml
from fixtures.badinput import (
    CHILD_ENV,
    QUIET,
    Case,
    Ctx,
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


SPM_WRITES = ("owner.json",)  # what a successful spm stage may rewrite besides spm/


def finished_run_given_decode_keys(ctx: Ctx, tmp: Path) -> Prepared:
    """train on a copy of the finished run with decode keys: nothing to do, and nothing it keeps (its
    config.yaml and the overrides it remembers stay those it was trained with; the log grows, and
    owner.json names the recipe, which the fixture's run, built in code, lacks)."""
    prep = on_copy("train", "beam_size=3", "max_len_ratio=9")(ctx, tmp)
    prep.may_change = {tmp / "run" / name for name in ("train.log", "tensorboard", "owner.json")}
    return prep


def check_decode_keys_not_kept(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    from seq2seq.runs.settings import load_for_run

    assert b"nothing to do" in outcome.stdout
    saved = yaml.safe_load((tmp / "run" / "config.yaml").read_text())["decode"]
    cfg = load_for_run(prep.argv[1])  # what evaluate and translate decode with afterwards
    assert (cfg.decode.beam_size, cfg.decode.max_len_ratio) == (saved["beam_size"], saved["max_len_ratio"])
    assert (saved["beam_size"], saved["max_len_ratio"]) != (3, 9)


def spm_again(ctx: Ctx, tmp: Path) -> Prepared:
    """spm run a second time, same corpus and settings, while checkpoints depend on the tokenizer."""
    prep = on_copy("spm")(ctx, tmp)
    prep.outputs = {tmp / "run" / name for name in SPM_WRITES}
    return prep


def other_tokenizer_run(ctx: Ctx, tmp: Path) -> Path:
    """A copy of the run whose tokenizer is another one of the same size (bpe instead of unigram)."""
    from seq2seq.config.load import from_dict
    from seq2seq.data.tokenizer import train_tokenizers

    spm = {**ctx.recipe_dict["spm"], "model_type": "bpe"}
    train_tokenizers(from_dict({**ctx.recipe_dict, "run_dir": str(tmp / "bpe"), "spm": spm}), log=QUIET)
    run = ctx.copy_run(tmp / "parent")
    for ext in (".model", ".vocab"):
        shutil.copyfile(tmp / "bpe" / "spm" / f"joint{ext}", run / "spm" / f"joint{ext}")
    shutil.rmtree(tmp / "bpe")
    return run


def spm_init_from(parent: str, locked: bool = False):
    """``spm`` of a copy of the run (its checkpoints depend on its tokenizer) with train.init_from: the
    run itself ("self"), a parent with another tokenizer ("other"), or a copy of the run ("same")."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        from seq2seq.runs import ownership as rundir

        run = ctx.copy_run(tmp / "run")
        source = {"self": lambda: run, "other": lambda: other_tokenizer_run(ctx, tmp)}.get(
            parent, lambda: ctx.copy_run(tmp / "parent")
        )()
        train = {**ctx.recipe_dict["train"], "init_from": str(source)}
        recipe = recipe_file(ctx, tmp / "r.yaml", run_dir=str(run), train=train)
        return Prepared(
            ["spm", recipe],
            outputs={run / name for name in SPM_WRITES},
            around=(lambda: rundir.lock(run, "train")) if locked else None,
        )

    return prepare


def duplicated(where: str):
    """The run's recipe with a section ("section": ``train:`` twice, the second one short) or a key in
    a section ("key": ``max_steps`` twice) given twice: the later one would silently win."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        text = yaml.safe_dump(ctx.recipe_dict, sort_keys=False)
        if where == "section":
            text += "train:\n  lr: 0.01\n"
        else:
            text = text.replace("train:\n", "train:\n  max_steps: 0\n", 1)
        return Prepared(["config", write(tmp / "twice.yaml", text)])

    return prepare


def corpus_mixed(command: str, name: str):
    """``command`` on a copy of the corpus whose ``name`` is not what the download wrote: the file of
    another download (another seed: same line count, other lines), as a download killed between two
    renames leaves it."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        corpus = tmp / "corpus"
        shutil.copytree(ctx.corpus, corpus)
        lines = (corpus / name).read_text(encoding="utf-8").splitlines()
        write(corpus / name, "".join(line + "\n" for line in lines[1:] + lines[:1]))
        run = ctx.copy_run(tmp / "run")
        recipe = recipe_file(ctx, tmp / "r.yaml", run_dir=str(run), data=data_section(ctx, dir=str(corpus)))
        return Prepared([command, recipe, *(("max_steps=12",) if command == "train" else ())])

    return prepare


def evaluate_ref_written_otherwise(ctx: Ctx, tmp: Path) -> Prepared:
    """``evaluate --src S --ref R`` where R is the run's own translation of S, saved otherwise: NFD, a
    byte-order mark at the start, a double space. The same text: BLEU must be 100."""
    from seq2seq.decode.translator import Translator

    lines = (ctx.corpus / "test.en").read_text(encoding="utf-8").splitlines()
    hyps = Translator.load(ctx.run, device="cpu").translate(lines)
    kept = [(s, h) for s, h in zip(lines, hyps) if h.strip()][:12]
    assert kept, "the tiny run translates nothing: no reference to compare with"
    src = write(tmp / "src.en", "".join(s + "\n" for s, _ in kept))
    refs = [unicodedata.normalize("NFD", h).replace(" ", "  ", 1) for _, h in kept]
    ref = write(tmp / "ref.de", "\ufeff" + "".join(r + "\n" for r in refs))
    return Prepared(["evaluate", ctx.run, "--src", src, "--ref", ref])


def check_bleu_100(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    if b"BLEU 100.00" not in outcome.stdout:
        raise WrongOutput(f"the same text scored below 100: {outcome.stdout[:300]!r}")


def download_with_boms(ctx: Ctx, tmp: Path) -> Prepared:
    """A text corpus whose files start with a byte-order mark and hold NFD text: the download writes
    them normalized (NFC, no BOM)."""
    sizes = {"train": 12, "dev": 4, "test": 4}
    for split, n in sizes.items():
        for lang in ("en", "de"):
            body = "".join(unicodedata.normalize("NFD", f"{split} Grüße {lang} {i}\n") for i in range(n))
            write(tmp / "mirror" / f"{split}.{lang}", "\ufeff" + body)
    values = {
        "name": "boms",
        "run_dir": str(tmp / "run"),
        "data": {
            "source": "text",
            "url": "https://example.invalid/x",
            "file_pattern": "{split}.{lang}",
            "splits": {s: s for s in sizes},
            "dir": str(tmp / "corpus"),
        },
    }
    recipe = write(tmp / "boms.yaml", yaml.safe_dump(values, sort_keys=False))
    return Prepared(["download", recipe, "--mirror", tmp / "mirror"], outputs={tmp / "corpus"})


def check_corpus_normalized(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    for path in sorted((tmp / "corpus").glob("*.??")):
        text = path.read_text(encoding="utf-8")
        if "\ufeff" in text or unicodedata.normalize("NFC", text) != text:
            raise WrongOutput(f"{path.name} is not normalized (a BOM, or not NFC): {text[:40]!r}")


def output_onto_input(command: str, which: str, link: bool = False):
    """``command`` with -o naming one of its inputs (``which``), directly or through a symlink."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        src = write(tmp / "same.en", "one is the\ntwo plus three\n")
        ref = write(tmp / "ref.de", "eins ist der\nzwei plus drei\n")
        target = {"src": src, "ref": ref}[which]
        out = tmp / "link.txt" if link else target
        if link:
            out.symlink_to(target)
        if command == "translate":
            return Prepared(["translate", ctx.run, "-i", src, "-o", out])
        return Prepared(["evaluate", ctx.run, "--src", src, "--ref", ref, "-o", out])

    return prepare


def with_averaged_output(ctx: Ctx, tmp: Path, steps: tuple = (2, 4), checkpoints: bool = True) -> Path:
    """A copy of the run with step checkpoints ``steps`` and an earlier ``average -o step-final`` of them."""
    from seq2seq.runs.checkpoint import average

    run = ctx.copy_run(tmp / "run", checkpoints=checkpoints)
    folder = run / "checkpoints"
    folder.mkdir(exist_ok=True)
    for step in steps:
        shutil.copyfile(ctx.run / "checkpoints" / "best.pt", folder / f"step-{step:08d}.pt")
    average([folder / f"step-{step:08d}.pt" for step in steps], folder / "step-final.pt")
    for step in steps if not checkpoints else ():
        (folder / f"step-{step:08d}.pt").unlink()
    return run


def average_again(ctx: Ctx, tmp: Path) -> Prepared:
    run = with_averaged_output(ctx, tmp)
    out = run / "checkpoints" / "avg.pt"
    return Prepared(["average", run, "--last", "2", "-o", "avg"], outputs={out}, info={"out": out})


def check_averaged_steps_only(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    import torch

    got = torch.load(prep.info["out"], weights_only=True)["averaged_from"]
    if got != ["step-00000002.pt", "step-00000004.pt"]:
        raise WrongOutput(f"average --last 2 averaged {got}, not the two newest step checkpoints")


TRAIN_WRITES = (
    "config.yaml",
    "metrics.jsonl",
    "tensorboard",
    "owner.json",
    "train.log",
    "bin",
    "checkpoints/best.pt",
)


def keep_checkpoints_beside_an_average(ctx: Ctx, tmp: Path) -> Prepared:
    """A fresh run (its tokenizer only) holding an averaged step-final.pt, trained with keep_checkpoints=1."""
    run = with_averaged_output(ctx, tmp, checkpoints=False)
    (run / "config.yaml").unlink()
    train = {**ctx.recipe_dict["train"], "keep_checkpoints": 1}
    recipe = recipe_file(ctx, tmp / "r.yaml", run_dir=str(run), train=train)
    kept = run / "checkpoints" / "step-00000006.pt"
    outputs = {run / name for name in TRAIN_WRITES} | {kept, run / "checkpoints" / "last.pt"}
    return Prepared(["train", recipe], outputs=outputs, info={"kept": kept})


def check_step_kept(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    if not prep.info["kept"].is_file():
        raise WrongOutput(
            f"keep_checkpoints=1 removed {prep.info['kept'].name}, counting the averaged step-final.pt"
        )


API_SCRIPT = """
import sys
from seq2seq import Translator, UserError
run = sys.argv[1]
def show(call):
    try:
        print(repr(call()))
    except (UserError, TypeError) as e:
        print(type(e).__name__ + ": " + str(e))
"""


def api(code: str, *expected: str):
    """A prepare function: ``code`` run with the Python API in a fresh interpreter (``run``: the run's
    folder, ``show(lambda: ...)`` prints a result or the exception's type and message); its stdout must
    be one line per entry of ``expected``, each starting with it."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        def runner(prep: Prepared) -> Outcome:
            proc = subprocess.run(
                [sys.executable, "-c", API_SCRIPT + code, str(ctx.run)], env=CHILD_ENV, capture_output=True
            )
            return Outcome(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))

        return Prepared([], runner=runner, info={"expected": expected})

    return prepare


def check_api_lines(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    lines = outcome.stdout.decode("utf-8").splitlines()
    expected = prep.info["expected"]
    if len(lines) != len(expected) or any(not line.startswith(e) for line, e in zip(lines, expected)):
        raise WrongOutput(f"expected lines starting {expected}, got {lines}")


SAMPLE_TWICE = """
t = Translator.load(run, device="cpu")
lines = ["one is the", "two plus three is five", "four hundred"] * 3
print(t.translate(lines, sampling=True, sampling_seed=7) == t.translate(lines, sampling=True, sampling_seed=7))
"""


def translate_stdin(text: str, *flags, env: dict | None = None):
    """A prepare function: translate ``text`` from stdin to stdout (with ``flags``, in ``env``)."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        return Prepared(["translate", ctx.run, *flags], stdin=text.encode("utf-8"), env=env or {})

    return prepare


def check_utf8_source(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    record = json.loads(outcome.stdout.decode("utf-8"))
    if record["source"] != "Grüße one is the":
        raise WrongOutput(f"the source came back as {record['source']!r}")


def download_from_a_pipe(ctx: Ctx, tmp: Path) -> Prepared:
    """A text corpus read from local files, train.en a named pipe that a writer fills once (as
    ``mkfifo p; cat train.en > p &`` does): it must be read once, not sniffed and reopened."""
    sizes = {"train": 12, "dev": 4, "test": 4}
    texts = {
        f"{split}.{lang}": "".join(f"{split} {lang} sentence {i}\n" for i in range(n))
        for split, n in sizes.items()
        for lang in ("en", "de")
    }
    for name, text in texts.items():
        if name != "train.en":
            write(tmp / "src" / name, text)
    pipe = tmp / "src" / "train.en"
    os.mkfifo(pipe)
    values = {
        "name": "piped",
        "run_dir": str(tmp / "run"),
        "data": {
            "source": "text",
            "url": str(tmp / "src"),
            "file_pattern": "{split}.{lang}",
            "splits": {s: s for s in sizes},
            "dir": str(tmp / "corpus"),
        },
    }
    recipe = write(tmp / "piped.yaml", yaml.safe_dump(values, sort_keys=False))

    @contextlib.contextmanager
    def writer():
        def feed():
            with contextlib.suppress(OSError), open(pipe, "wb") as f:  # blocks until a reader opens it
                f.write(texts["train.en"].encode())

        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        try:
            yield
        finally:
            if thread.is_alive():  # nobody opened the pipe: let the writer's open return
                os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))
            thread.join(5)

    return Prepared(
        ["download", recipe], around=writer, outputs={tmp / "corpus"}, info={"train": texts["train.en"]}
    )


def check_piped_train(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    got = (tmp / "corpus" / "train.en").read_text(encoding="utf-8")
    if got != prep.info["train"]:
        raise WrongOutput(f"train.en read from the pipe is {got[:80]!r}")


def evaluate_ref_from_a_pipe(ctx: Ctx, tmp: Path) -> Prepared:
    """evaluate --ref <(cat ref): the reference is a pipe's read end, inherited as /dev/fd/N."""
    src = write(tmp / "src.en", "one is the\ntwo plus three\n")
    r, w = os.pipe()
    os.write(w, "eins ist der\nzwei plus drei\n".encode())
    os.close(w)

    @contextlib.contextmanager
    def close_after():
        try:
            yield
        finally:
            os.close(r)

    return Prepared(
        ["evaluate", ctx.run, "--src", src, "--ref", f"/dev/fd/{r}"], pass_fds=(r,), around=close_after
    )


def long_output_name(chars: int):
    """translate -o NAME where NAME has ``chars`` characters (255: the most a file system takes)."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        prep = translate_in(ctx, ctx.run, tmp)
        out = tmp / ("o" * (chars - 4) + ".txt")
        prep.argv[prep.argv.index("-o") + 1] = out
        prep.outputs, prep.info["out"] = {out}, out
        return prep

    return prepare


def check_no_temp_named(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    if ".tmp" in outcome.stderr:
        raise WrongOutput(f"the message names a temporary file, not the user's: {outcome.stderr!r}")


def checkpoint_of_another_size(ctx: Ctx, tmp: Path) -> Prepared:
    """translate RUN --checkpoint FILE where FILE is a checkpoint of a model with another dec_hidden."""
    import torch

    ckpt = torch.load(ctx.run / "checkpoints" / "best.pt", weights_only=True)
    ckpt["config"]["model"]["dec_hidden"] = 32
    other = tmp / "other" / "best.pt"
    other.parent.mkdir()
    torch.save(ckpt, other)
    prep = translate_in(ctx, ctx.run, tmp, "--checkpoint", other)
    return prep


def check_no_restore_advice(prep: Prepared, outcome: Outcome, tmp: Path) -> None:
    if "restore config.yaml" in outcome.stderr:
        raise WrongOutput(f"advises restoring a config.yaml that is right: {outcome.stderr!r}")


def deleted_cwd_runner(prep: Prepared) -> Outcome:
    """The command run from a folder deleted after the shell entered it."""
    folder = Path(tempfile.mkdtemp())
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", *map(str, prep.argv)],
        cwd=folder,
        preexec_fn=lambda: os.rmdir(folder),  # noqa: PLW1509 - removes the child's working folder only
        env=CHILD_ENV,
        capture_output=True,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def from_a_deleted_folder(ctx: Ctx, tmp: Path) -> Prepared:
    prep = translate_in(ctx, ctx.run, tmp)
    prep.runner = deleted_cwd_runner
    return prep


def same_language(source: str):
    """A tsv/jsonl recipe with the same source and target language (de -> de: grammar correction)."""

    def prepare(ctx: Ctx, tmp: Path) -> Prepared:
        if source == "tsv":
            body = "".join(f"satz {i}\tSatz {i}.\n" for i in range(8))
        else:
            body = "".join(json.dumps({"src": f"satz {i}", "tgt": f"Satz {i}."}) + "\n" for i in range(8))
        for split in ("train", "dev", "test"):
            write(tmp / "src" / f"{split}.{source}", body)
        values = {
            "name": "fix",
            "run_dir": str(tmp / "run"),
            "data": {
                "source": source,
                "src_lang": "de",
                "tgt_lang": "de",
                "url": str(tmp / "src"),
                "file_pattern": "{split}." + source,
                "src_field": "0" if source == "tsv" else "src",
                "tgt_field": "1" if source == "tsv" else "tgt",
                "splits": {s: s for s in ("train", "dev", "test")},
                "dir": str(tmp / "corpus"),
            },
        }
        return Prepared(["download", write(tmp / "fix.yaml", yaml.safe_dump(values, sort_keys=False))])

    return prepare


def spm_on_a_full_disk(ctx: Ctx, tmp: Path) -> Prepared:
    """SentencePiece cannot write its model (the disk is full): it fails an assertion without a reason."""
    from seq2seq.data import tokenizer

    def full(model_prefix: str, **kwargs):
        raise RuntimeError("Internal: src/trainer_interface.cc(688) [output.good()] ")

    def no_space(path):
        return shutil._ntuple_diskusage(10 << 30, 10 << 30, 0)

    prep = on_copy("spm", checkpoints=False)(ctx, tmp)

    @contextlib.contextmanager
    def patch():
        with (
            mock.patch.object(tokenizer.spm.SentencePieceTrainer, "Train", full),
            mock.patch.object(tokenizer.shutil, "disk_usage", no_space),
        ):
            yield

    prep.patch = patch
    return prep


LOCKED = ("in use by another process", f"PID {os.getpid()}")


# ---- the table -------------------------------------------------------------------------------
CASES = [
    # t: tokenizers
    Case(
        "t03-spm-init-from-the-run-itself",
        spm_init_from("self"),
        2,
        error=("'train.init_from'", "the run itself"),
    ),
    Case(
        "t03b-spm-init-from-another-tokenizer-while-checkpoints-depend-on-it",
        spm_init_from("other"),
        2,
        error=("differs from", "checkpoints", "run_dir="),
    ),
    Case("t03c-spm-init-from-into-a-locked-run", spm_init_from("same", locked=True), 2, error=LOCKED),
    Case(
        "t03d-spm-init-from-the-same-tokenizer-kept",
        spm_init_from("same"),
        0,
        other_lines=("fine-tuning from",),
    ),
    Case("t05-spm-twice-same-tokenizer-kept", spm_again, 0),
    # c: what enters as corpus, reference or input
    Case(
        "c09-train-on-a-dev-file-of-another-download",
        corpus_mixed("train", "dev.de"),
        2,
        error=("dev.de", "manifest.json", "download again"),
    ),
    Case(
        "c09b-spm-on-a-train-file-of-another-download",
        corpus_mixed("spm", "train.en"),
        2,
        error=("train.en", "manifest.json"),
    ),
    Case(
        "c09c-evaluate-on-a-test-file-of-another-download",
        corpus_mixed("evaluate", "test.de"),
        2,
        error=("test.de", "manifest.json"),
    ),
    Case(
        "c09d-tune-decode-on-a-dev-file-of-another-download",
        corpus_mixed("tune-decode", "dev.en"),
        2,
        error=("dev.en", "manifest.json"),
    ),
    Case("c11-evaluate-reference-nfd-with-bom", evaluate_ref_written_otherwise, 0, check=check_bleu_100),
    Case("c11b-download-keeps-no-bom", download_with_boms, 0, check=check_corpus_normalized),
    # o: outputs
    Case(
        "o04-translate-output-onto-its-input",
        output_onto_input("translate", "src"),
        2,
        error=("same.en", "-i/--input", "another output"),
    ),
    Case(
        "o04b-translate-output-onto-its-input-through-a-symlink",
        output_onto_input("translate", "src", link=True),
        2,
        error=("link.txt", "same.en"),
    ),
    Case(
        "o04c-evaluate-output-onto-the-reference",
        output_onto_input("evaluate", "ref"),
        2,
        error=("--ref", "ref.de"),
    ),
    Case(
        "o04d-evaluate-output-onto-the-source",
        output_onto_input("evaluate", "src"),
        2,
        error=("--src", "same.en"),
    ),
    Case("o12-average-last-skips-an-earlier-average", average_again, 0, check=check_averaged_steps_only),
    Case(
        "o12b-keep-checkpoints-skips-an-earlier-average",
        keep_checkpoints_beside_an_average,
        0,
        check=check_step_kept,
    ),
    # a: the Python API
    Case("a13-api-sampling-with-a-seed-twice", api(SAMPLE_TWICE, "True"), 0, check=check_api_lines),
    Case(
        "a16-api-load-an-empty-list",
        api("show(lambda: Translator.load([]))", "UserError: Translator.load: no run directory"),
        0,
        check=check_api_lines,
    ),
    Case(
        "a16b-api-translate-a-tuple-bytes-or-numbers",
        api(
            "t = Translator.load(run, device='cpu')\n"
            "show(lambda: type(t.translate(('one is the',))).__name__)\n"
            "show(lambda: t.translate(b'one is the'))\n"
            "show(lambda: t.translate([1]))",
            "'list'",
            "TypeError: translate takes text (str), not bytes",
            "TypeError: translate takes a list of strings; item 0 is a value of type int",
        ),
        0,
        check=check_api_lines,
    ),
    # x: tracebacks
    Case(
        "x15-translate-temperature-tiny",
        translate_flags("--sampling", "--temperature", "1e-40"),
        2,
        error=("--temperature", "[0.01, 100]"),
    ),
    Case(
        "x15b-translate-temperature-huge",
        translate_flags("--sampling", "--temperature", "1e39"),
        2,
        error=("--temperature",),
    ),
    Case(
        "x15c-recipe-temperature-tiny",
        overrides("config", "temperature=1e-40"),
        2,
        error=("'decode.temperature'",),
    ),
    Case(
        "x15d-translate-beam-size-a-million",
        translate_flags("--beam-size", "1000000"),
        2,
        error=("--beam-size", "[1, 256]"),
    ),
    Case(
        "x15e-translate-n-best-samples-a-million",
        translate_flags("--sampling", "--n-best", "1000000"),
        2,
        error=("--n-best",),
    ),
    Case(
        "x15f-translate-from-dev-zero",
        on_run("translate", "RUN", "-i", "/dev/zero"),
        2,
        error=("/dev/zero", "line 1 is longer than"),
    ),
    Case(
        "x15g-translate-to-an-ascii-stdout",
        translate_stdin("Grüße one is the\n", "--format", "json", env={"PYTHONIOENCODING": "ascii"}),
        0,
        check=check_utf8_source,
    ),
    Case(
        "x15h-translate-to-stdout-in-the-c-locale",
        translate_stdin(
            "Grüße one is the\n",
            "--format",
            "json",
            env={"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
        ),
        0,
        check=check_utf8_source,
    ),
    Case("c14-download-from-a-named-pipe", download_from_a_pipe, 0, check=check_piped_train),
    # m: messages that mislead
    Case(
        "m16-evaluate-ref-from-a-process-substitution",
        evaluate_ref_from_a_pipe,
        0,
        other_lines=("BLEU", "nrefs"),
    ),
    Case("m16b-translate-output-name-of-255-characters", long_output_name(255), 0),
    Case(
        "m16c-translate-output-name-too-long",
        long_output_name(300),
        1,  # an OSError: main's one line, status 1
        error=("ooooo.txt", "name too long"),
        check=check_no_temp_named,
    ),
    Case(
        "m16d-translate-checkpoint-of-another-model-size",
        checkpoint_of_another_size,
        2,
        error=("other/best.pt", "another model", "model.dec_hidden"),
        check=check_no_restore_advice,
    ),
    Case(
        "m16e-translate-from-a-deleted-folder", from_a_deleted_folder, 2, error=("current folder", "deleted")
    ),
    Case(
        "c08-tsv-same-source-and-target-language",
        same_language("tsv"),
        2,
        error=("'data.src_lang'", "both 'de'", "de-src"),
    ),
    Case(
        "c08b-jsonl-same-source-and-target-language",
        same_language("jsonl"),
        2,
        error=("'data.tgt_lang'", "both 'de'"),
    ),
    Case(
        "m16f-spm-on-a-full-disk",
        spm_on_a_full_disk,
        2,
        error=("no space left", "run/spm:"),
        check=check_no_temp_named,
    ),
    # y: recipes
    Case(
        "y10-recipe-section-twice",
        duplicated("section"),
        2,
        error=("twice.yaml", "duplicate key 'train'", "first on line"),
    ),
    Case(
        "y10b-recipe-key-twice-in-a-section",
        duplicated("key"),
        2,
        error=("duplicate key 'max_steps'", "line"),
    ),
    # s: a finished run's settings are its own (nothing rewritten: the harness compares every file)
    Case(
        "s06-train-a-finished-run-with-another-max-len",
        on_copy("train", "max_len=12", "label_smoothing=0.2"),
        2,
        error=("train.max_len", "12 given", "train.label_smoothing"),
    ),
    Case(
        "s06b-train-a-finished-run-with-another-beam-size",
        finished_run_given_decode_keys,
        0,
        prefix="",
        check=check_decode_keys_not_kept,
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, tmp_path: Path):
    run_case(case, ctx, tmp_path)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
