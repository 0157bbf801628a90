"""The ``seq2seq translate`` command (added to the group in :mod:`seq2seq.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from seq2seq.cli.common import CONTEXT, OVERRIDES, PRECISION, RECIPE, Setting, checkpoint_option, load_recipe
from seq2seq.config.schema import OUTPUT_FORMATS

# translate and back-translate take the same beam option
BEAM_SIZE = click.option(
    "-b",
    "--beam-size",
    type=Setting("decode.beam_size"),
    default=None,
    help="Beam size (default: the run's).",
)


@click.command(context_settings=CONTEXT)
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIRS... [KEY=VALUE]...")
@click.option(
    "-i",
    "--input",
    "input_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Input file, one sentence per line (default: standard input).",
)
@click.option(
    "-o",
    "--output",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output file, one translation per input line (default: standard output).",
)
@BEAM_SIZE
@click.option(
    "-a",
    "--length-penalty",
    type=Setting("decode.length_penalty"),
    default=None,
    help="GNMT length penalty alpha (default: the run's).",
)
@click.option(
    "--coverage-penalty",
    type=Setting("decode.coverage_penalty"),
    default=None,
    help="GNMT coverage penalty beta, beam search only (default: the run's; 0 = off).",
)
@click.option(
    "--n-best",
    type=Setting("decode.n_best"),
    default=1,
    help="Hypotheses per input line, at most --beam-size (with --sampling: samples); above 1 they are "
    "printed tab-separated with scores (or use --format json).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(OUTPUT_FORMATS),
    default="text",
    help="text: one translation per line; json: one JSON object per line with the source pieces and the "
    "hypotheses, their scores, pieces and attention.",
)
@click.option(
    "--batch-size", type=Setting("decode.batch_size"), default=None, help="Sentences per decoding batch."
)
@click.option(
    "--min-len",
    type=Setting("decode.min_len"),
    default=None,
    help="No end of sentence before this many output pieces.",
)
@click.option(
    "--max-len-ratio",
    type=Setting("decode.max_len_ratio"),
    default=None,
    help="Longest output: this many times the source pieces + decode.max_len_offset (default: the run's).",
)
@click.option(
    "--max-len-offset",
    type=Setting("decode.max_len_offset"),
    default=None,
    help="The offset of the longest output (default: the run's).",
)
@click.option(
    "--no-repeat-ngram",
    type=Setting("decode.no_repeat_ngram"),
    default=None,
    metavar="N",
    help="No n-gram of N pieces twice in an output.",
)
@click.option(
    "--sampling/--no-sampling",
    default=None,
    help="Sample each piece instead of beam search (back-translation); --n-best N: N samples per line.",
)
@click.option(
    "--temperature",
    type=Setting("decode.temperature"),
    default=None,
    help="Sampling temperature (default 1).",
)
@click.option(
    "--topk",
    type=Setting("decode.topk"),
    default=None,
    help="Sample among the K most likely pieces (default: all).",
)
@click.option(
    "--sampling-seed",
    type=Setting("decode.sampling_seed"),
    default=None,
    help="Random seed of sampling (default 1).",
)
@checkpoint_option("best")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@PRECISION
@click.option(
    "--replace-invalid", is_flag=True, help="Replace undecodable bytes by U+FFFD instead of failing."
)
@click.option(
    "--attention",
    "attention_dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Save an attention heatmap per input line: DIR/line-NNNNNN.png (NNNNNN: the line number).",
)
@click.option(
    "--buffer-size",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    metavar="N",
    help="Read, translate and write N lines at a time; 1 answers each line as soon as it arrives "
    "(another program driving translate through a pipe).",
)
def translate(
    run_dirs,
    input_path,
    output_path,
    fmt,
    checkpoint,
    device,
    replace_invalid,
    attention_dir,
    buffer_size,
    **decode,
):
    """Translate with RUN_DIRS (several: an ensemble averaging log-probabilities).

    KEY=VALUE: decode settings such as n_best=2 (a flag given too wins); any other recipe key must
    equal the run's own (make translate passes its ARGS this way).

    Reads INPUT (or stdin) line by line, streaming in chunks of --buffer-size lines, and writes exactly
    one output line per input line; empty lines stay empty. Output to a file is written atomically.
    """
    from seq2seq.decode.files import TranslateIO
    from seq2seq.decode.files import translate as run
    from seq2seq.runs.settings import decode_overrides

    overrides = tuple(a for a in run_dirs if "=" in a and not Path(a).is_dir())
    run_dirs = [Path(a) for a in run_dirs if a not in overrides]
    if not run_dirs:
        raise click.UsageError("give at least one run directory")
    ctx = click.get_current_context()
    for key, value in decode_overrides(run_dirs[0], overrides).items():
        if key == "checkpoint":  # its own option, with a default
            if ctx.get_parameter_source("checkpoint") == click.core.ParameterSource.DEFAULT:
                checkpoint = value
        elif key not in decode or ctx.get_parameter_source(key) == click.core.ParameterSource.DEFAULT:
            decode[key] = value

    io = TranslateIO(
        input=input_path,
        output=output_path,
        fmt=fmt,
        replace_invalid=replace_invalid,
        attention_dir=attention_dir,
        interactive=input_path is None and sys.stdin is not None and sys.stdin.isatty(),
        chunk=buffer_size,
    )
    run(list(run_dirs), io, checkpoint, device, **decode)


@click.command("back-translate", context_settings=CONTEXT)
@RECIPE
@OVERRIDES
@click.option(
    "--source", "source_name", required=True, help="The corpus of the recipe's data.sources to write."
)
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The reverse-direction run directory (target language -> source language).",
)
@click.option(
    "--input",
    "mono",
    required=True,
    metavar="FILE|URL",
    help="Monolingual target-language text, one sentence per line (gzipped or not).",
)
@click.option(
    "--skip", type=click.IntRange(0), default=0, show_default=True, help="Lines of --input to pass over."
)
@click.option(
    "--take", type=click.IntRange(0), default=0, show_default=True, help="Lines to translate (0: all)."
)
@BEAM_SIZE
@click.option("--sampling/--no-sampling", default=None, help="Sample each piece instead of beam search.")
@click.option("--temperature", type=Setting("decode.temperature"), default=None, help="Sampling temperature.")
@click.option(
    "--topk", type=Setting("decode.topk"), default=None, help="Sample among the K most likely pieces."
)
@click.option("--sampling-seed", type=Setting("decode.sampling_seed"), default=None, help="Seed of sampling.")
@checkpoint_option("best")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def back_translate(recipe, overrides, source_name, model_dir, mono, skip, take, checkpoint, device, **decode):
    """Translate monolingual target-side text with a reverse run into the train files of one corpus of
    RECIPE's data.sources (docs/data.md#back-translation); nothing is written when they are up to date."""
    from seq2seq.decode.back_translate import back_translate as run

    cfg = load_recipe(recipe, overrides)
    run(
        cfg,
        source_name,
        model_dir,
        mono,
        skip=skip,
        take=take,
        checkpoint=checkpoint,
        device=device,
        **decode,
    )
