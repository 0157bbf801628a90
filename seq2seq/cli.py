"""The ``seq2seq`` command line: parse, load the config, call one library function."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from seq2seq import __version__
from seq2seq.cli_recipes import new_recipe, recipes
from seq2seq.clitypes import Group, PipeClosed, Setting, silence_stdout
from seq2seq.config import OUTPUT_FORMATS
from seq2seq.errors import UserError

RECIPE = click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
OVERRIDES = click.argument("overrides", nargs=-1)
CONTEXT = {"help_option_names": ["-h", "--help"]}


def _config(recipe: Path, overrides):
    from seq2seq.config import load_config

    return load_config(recipe, list(overrides))


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(version=__version__, prog_name="seq2seq")
def cli():
    """Neural machine translation: bidirectional-GRU encoder, attention LSTM decoder.

    Every stage takes a recipe YAML and optional KEY=VALUE overrides, e.g.
    `seq2seq train recipes/default.yaml max_steps=200 model.dropout=0.2`.
    A bare key works when it is unique across the recipe's sections.
    """


@cli.command()
@RECIPE
@OVERRIDES
@click.option(
    "--mirror",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local folder holding the recipe's files (found by file name); nothing is fetched.",
)
def download(recipe, overrides, mirror):
    """Fetch the corpus and write <data_dir>/<split>.<lang> plus manifest.json."""
    from seq2seq.data import download as run

    run(_config(recipe, overrides), mirror)


@cli.command()
@RECIPE
@OVERRIDES
def spm(recipe, overrides):
    """Train the SentencePiece model(s) on the train split into <run_dir>/spm/."""
    from seq2seq.tokenizer import train_tokenizers

    train_tokenizers(_config(recipe, overrides))


@cli.command()
@RECIPE
@OVERRIDES
def train(recipe, overrides):
    """Train the model; re-running continues from <run_dir>/checkpoints/last.pt."""
    from seq2seq.training import train as run

    run(_config(recipe, overrides))


@cli.command()
@click.argument("target", type=click.Path(path_type=Path), metavar="RECIPE|RUN_DIR")
@OVERRIDES
@click.option(
    "--checkpoint",
    default=None,
    metavar="NAME",
    help="Checkpoint in <run_dir>/checkpoints: best, last, average, ... (default: decode.checkpoint).",
)
@click.option(
    "--src", "src", type=click.Path(dir_okay=False, path_type=Path), help="With RUN_DIR: source file."
)
@click.option(
    "--ref",
    "refs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="With RUN_DIR: reference file, one line per source line; repeat it for several references.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With RUN_DIR: also write the translations to this file.",
)
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="text", help="text or json.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def evaluate(target, overrides, checkpoint, src, refs, output, fmt, as_json):
    """Score sacreBLEU BLEU and chrF, printing their signatures.

    RECIPE: beam-search the recipe's test splits, write <run_dir>/results.json.
    RUN_DIR --src FILE --ref FILE [--ref FILE2 ...]: translate FILE with the run and score it
    against the references (overrides such as beam_size=8 apply to the run's settings).
    """
    from seq2seq.evaluate import evaluate_command

    evaluate_command(target, overrides, checkpoint, src, refs, output, "json" if as_json else fmt)


@cli.command("config")
@RECIPE
@OVERRIDES
@click.option(
    "--stamps",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one file per stage's settings into this folder, touching only those that changed "
    "(make uses them to rerun only the stages whose settings changed).",
)
def config_cmd(recipe, overrides, stamps):
    """Print the resolved configuration (recipe + overrides) as YAML."""
    import yaml

    from seq2seq.stamps import write_stamps

    cfg = _config(recipe, overrides)
    if stamps:
        write_stamps(cfg, stamps)
    else:
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), nl=False)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
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
@click.option(
    "-b",
    "--beam-size",
    type=Setting("decode.beam_size"),
    default=None,
    help="Beam size (default: the run's).",
)
@click.option(
    "-a",
    "--length-penalty",
    type=Setting("decode.length_penalty"),
    default=None,
    help="GNMT length penalty alpha (default: the run's).",
)
@click.option(
    "--n-best",
    type=Setting("decode.n_best"),
    default=1,
    help="Hypotheses per input line (needs --format json "
    "or prints them tab-separated with scores when above 1).",
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
@click.option(
    "--checkpoint",
    default="best",
    show_default=True,
    metavar="NAME|FILE",
    help="Checkpoint name in <run_dir>/checkpoints (best, last, average, ...) or a checkpoint file.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
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

    Reads INPUT (or stdin) line by line, streaming in chunks of --buffer-size lines, and writes exactly
    one output line per input line; empty lines stay empty. Output to a file is written atomically.
    """
    from seq2seq.translate import TranslateIO
    from seq2seq.translate import translate as run

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


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the PNGs go (default: <run_dir>/plots).",
)
@click.option(
    "--sentences",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Attention heatmaps for this many dev sentences.",
)
def plot(run_dir, out_dir, sentences):
    """Learning curves (train/dev loss, dev BLEU) and attention heatmaps as PNG files."""
    from seq2seq.plot import plot_run

    plot_run(run_dir, out_dir, sentences)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(OUTPUT_FORMATS),
    default="text",
    help="text, or json (for scripts; the same option as translate's).",
)
@click.option("--json", "as_json", is_flag=True, hidden=True, help="The same as --format json.")
def info(run_dir, fmt, as_json):
    """Recipe, parameter count, vocabulary sizes, training progress and best scores of a run."""
    import json

    from seq2seq.runinfo import format_info, run_info

    data = run_info(run_dir)
    as_json = as_json or fmt == "json"
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else format_info(data))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--last",
    "last_n",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Average the newest N step-*.pt checkpoints (kept with train.keep_checkpoints=N).",
)
@click.option(
    "--checkpoints",
    "names",
    multiple=True,
    metavar="NAME",
    help="Average these checkpoints of <run_dir>/checkpoints instead (repeatable), e.g. best last.",
)
@click.option(
    "-o",
    "--output",
    "out_name",
    default="average",
    show_default=True,
    metavar="NAME",
    help="Write <run_dir>/checkpoints/NAME.pt; translate/evaluate with --checkpoint NAME.",
)
def average(run_dir, last_n, names, out_name):
    """Average the parameters of several checkpoints into one."""
    from seq2seq.checkpoint import average_run

    paths, out = average_run(run_dir, list(names), last_n, out_name)
    click.echo(f"averaged {', '.join(p.name for p in paths)} -> {out}")


@cli.command("tune-decode")
@RECIPE
@OVERRIDES
@click.option(
    "--beams",
    type=Setting("decode.beam_size", many=True),
    default="1,3,5,8",
    show_default=True,
    help="Beam sizes, comma-separated.",
)
@click.option(
    "--alphas",
    type=Setting("decode.length_penalty", many=True),
    default="0,0.6,1.0,1.5",
    show_default=True,
    help="Length penalties, comma-separated.",
)
@click.option(
    "--split", default="dev", show_default=True, help="Held-out split to tune on (never a test set)."
)
def tune_decode(recipe, overrides, beams, alphas, split):
    """Sweep beam size x length penalty on the dev split; writes <run_dir>/tune-decode.<split>.tsv."""
    from seq2seq.evaluate import tune_decode as run

    run(_config(recipe, overrides), beams, alphas, split)


cli.add_command(new_recipe)
cli.add_command(recipes)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="seq2seq", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt (no prompts are used)
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:  # usage errors: one line too
        hint = f" (see {e.ctx.command_path} -h)" if isinstance(e, click.UsageError) and e.ctx else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except (PipeClosed, BrokenPipeError):  # like a Unix filter killed by SIGPIPE: quiet, 128 + 13
        silence_stdout()
        sys.exit(141)
    except OSError as e:
        click.echo(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", err=True)
        sys.exit(1)
