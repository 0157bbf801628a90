"""The ``seq2seq`` command line: parse, load the config, call one library function."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from seq2seq import __version__
from seq2seq.cli_recipes import new_recipe, recipes
from seq2seq.cli_runs import average, info, plot, tune_decode
from seq2seq.cli_serve import serve
from seq2seq.cli_translate import translate
from seq2seq.clitypes import Group, PipeClosed, silence_stdout
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


for command in (translate, plot, info, average, tune_decode, new_recipe, recipes, serve):
    cli.add_command(command)


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
