"""The ``seq2seq`` command line: parse, load the config, call one library function."""

from __future__ import annotations

import sys
from pathlib import Path

import click

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
@click.option("--mirror", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local folder holding the recipe's files (found by file name); nothing is fetched.")
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
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default=None,
              help="Checkpoint to evaluate (default: the recipe's decode.checkpoint).")
def evaluate(recipe, overrides, checkpoint):
    """Beam-search the test splits, score sacreBLEU BLEU and chrF, write results.json."""
    from seq2seq.evaluate import evaluate as run

    run(_config(recipe, overrides), checkpoint)


@cli.command("config")
@RECIPE
@OVERRIDES
@click.option("--stamps", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one file per stage's settings into this folder, touching only those that changed "
                   "(make uses them to rerun only the stages whose settings changed).")
def config_cmd(recipe, overrides, stamps):
    """Print the resolved configuration (recipe + overrides) as YAML."""
    import yaml

    from seq2seq.config import write_stamps

    cfg = _config(recipe, overrides)
    if stamps:
        write_stamps(cfg, stamps)
    else:
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), nl=False)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Input file, one sentence per line (default: standard input).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file, one translation per input line (default: standard output).")
@click.option("-b", "--beam-size", type=click.IntRange(1), default=None, help="Beam size (default: the run's).")
@click.option("-a", "--length-penalty", type=click.FloatRange(0), default=None,
              help="GNMT length penalty alpha (default: the run's).")
@click.option("--n-best", type=click.IntRange(1), default=1, help="Hypotheses per input line (needs --format json "
              "or prints them tab-separated with scores when above 1).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text: one translation per line; json: one JSON object per line with hypotheses and scores.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Sentences per decoding batch.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", help="Which checkpoint to use.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--replace-invalid", is_flag=True, help="Replace undecodable bytes by U+FFFD instead of failing.")
def translate(run_dirs, input_path, output_path, beam_size, length_penalty, n_best, fmt, batch_size, checkpoint,
              device, replace_invalid):
    """Translate with RUN_DIRS (several: an ensemble averaging log-probabilities).

    Reads INPUT (or stdin) line by line, streaming in chunks, and writes exactly one output line per
    input line; empty lines stay empty. Output to a file is written atomically.
    """
    from seq2seq.textio import translate_files

    translate_files(list(run_dirs), input_path, output_path, beam_size=beam_size, length_penalty=length_penalty,
                    n_best=n_best, fmt=fmt, batch_size=batch_size, checkpoint=checkpoint, device=device,
                    replace_invalid=replace_invalid)


def main(argv=None) -> None:
    try:
        cli.main(args=argv, prog_name="seq2seq", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
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
