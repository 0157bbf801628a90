"""The ``seq2seq`` command line: parse, load the config, call one library function."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from seq2seq.config import OUTPUT_FORMATS
from seq2seq.errors import UserError

RECIPE = click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
OVERRIDES = click.argument("overrides", nargs=-1)
CONTEXT = {"help_option_names": ["-h", "--help"]}


def _config(recipe: Path, overrides):
    from seq2seq.config import load_config

    return load_config(recipe, list(overrides))


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="seq2seq")
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
@RECIPE
@OVERRIDES
@click.option(
    "--checkpoint",
    default=None,
    metavar="NAME",
    help="Checkpoint in <run_dir>/checkpoints: best, last, average, ... (default: decode.checkpoint).",
)
def evaluate(recipe, overrides, checkpoint):
    """Beam-search the test splits, score sacreBLEU BLEU and chrF, write results.json."""
    from seq2seq.evaluate import evaluate as run

    run(_config(recipe, overrides), checkpoint)


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
    "-b", "--beam-size", type=click.IntRange(1), default=None, help="Beam size (default: the run's)."
)
@click.option(
    "-a",
    "--length-penalty",
    type=click.FloatRange(0),
    default=None,
    help="GNMT length penalty alpha (default: the run's).",
)
@click.option(
    "--n-best",
    type=click.IntRange(1),
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
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Sentences per decoding batch.")
@click.option("--min-len", type=int, default=None, help="No end of sentence before this many output pieces.")
@click.option(
    "--max-len-ratio",
    type=float,
    default=None,
    help="Longest output: this many times the source pieces + decode.max_len_offset (default: the run's).",
)
@click.option(
    "--max-len-offset", type=int, default=None, help="The offset of the longest output (default: the run's)."
)
@click.option(
    "--no-repeat-ngram", type=int, default=None, metavar="N", help="No n-gram of N pieces twice in an output."
)
@click.option(
    "--sampling/--no-sampling",
    default=None,
    help="Sample each piece instead of beam search (back-translation); --n-best N: N samples per line.",
)
@click.option("--temperature", type=float, default=None, help="Sampling temperature (default 1).")
@click.option("--topk", type=int, default=None, help="Sample among the K most likely pieces (default: all).")
@click.option("--sampling-seed", type=int, default=None, help="Random seed of sampling (default 1).")
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
        interactive=input_path is None and sys.stdin.isatty(),
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
@click.option("--beams", default="1,3,5,8", show_default=True, help="Beam sizes, comma-separated.")
@click.option(
    "--alphas", default="0,0.6,1.0,1.5", show_default=True, help="Length penalties, comma-separated."
)
@click.option(
    "--split", default="dev", show_default=True, help="Held-out split to tune on (never a test set)."
)
def tune_decode(recipe, overrides, beams, alphas, split):
    """Sweep beam size x length penalty on the dev split; writes <run_dir>/tune-decode.<split>.tsv."""
    from seq2seq.evaluate import tune_decode as run

    try:
        beam_list = [int(b) for b in beams.split(",")]
        alpha_list = [float(a) for a in alphas.split(",")]
    except ValueError:
        raise UserError("--beams takes integers and --alphas numbers, comma-separated") from None
    if any(b < 1 for b in beam_list) or any(a < 0 for a in alpha_list):
        raise UserError("--beams must be >= 1 and --alphas >= 0")
    run(_config(recipe, overrides), beam_list, alpha_list, split)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="seq2seq", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt (no prompts are used)
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as e:
        click.echo(f"error: {e.strerror or e}{': ' + str(e.filename) if e.filename else ''}", err=True)
        sys.exit(1)
