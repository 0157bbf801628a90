"""The pipeline's stages as commands: ``download``, ``spm``, ``train``, ``evaluate`` and ``config``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seq2seq.cli.common import (
    CONTEXT,
    MIRROR,
    OVERRIDES,
    RECIPE,
    checkpoint_option,
    load_recipe,
    load_run_recipe,
)
from seq2seq.config.schema import OUTPUT_FORMATS


@click.command(context_settings=CONTEXT)
@RECIPE
@OVERRIDES
@MIRROR
def download(recipe, overrides, mirror):
    """Fetch the corpus and write <data_dir>/<split>.<lang> plus manifest.json."""
    from seq2seq.data.corpus import download as run

    run(load_recipe(recipe, overrides), mirror)


@click.command(context_settings=CONTEXT)
@RECIPE
@OVERRIDES
def spm(recipe, overrides):
    """Train the SentencePiece model(s) on the train split into <run_dir>/spm/."""
    from seq2seq.data.tokenizer import train_tokenizers

    train_tokenizers(load_recipe(recipe, overrides))


@click.command(context_settings=CONTEXT)
@RECIPE
@OVERRIDES
def train(recipe, overrides):
    """Train the model; re-running continues from <run_dir>/checkpoints/last.pt."""
    from seq2seq.training.setup import train as run

    run(load_run_recipe(recipe, overrides))


@click.command(context_settings=CONTEXT)
@click.argument("target", type=click.Path(path_type=Path), metavar="RECIPE|RUN_DIR")
@OVERRIDES
@checkpoint_option()
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
    from seq2seq.evaluation.stage import evaluate_command

    results, lines = evaluate_command(target, overrides, checkpoint, src, refs, output)
    if as_json or fmt == "json":
        click.echo(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(lines))


@click.command("config", context_settings=CONTEXT)
@RECIPE
@OVERRIDES
@click.option(
    "--stamps",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one file per stage's settings into this folder, touching only those that changed "
    "(make uses them to rerun only the stages whose settings changed).",
)
@click.option("--run-dir", "print_run_dir", is_flag=True, help="Print only the run directory.")
def config_cmd(recipe, overrides, stamps, print_run_dir):
    """Print the resolved configuration (recipe + overrides) as YAML."""
    import yaml

    from seq2seq.config.stamps import write_stamps

    cfg = load_recipe(recipe, overrides)
    if print_run_dir:
        click.echo(cfg.run_path)
    elif stamps:
        write_stamps(cfg, stamps)
    else:
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True), nl=False)


@click.command("run", context_settings=CONTEXT)
@RECIPE
@OVERRIDES
@MIRROR
@click.option("--nproc", type=click.IntRange(min=1), default=1, help="Train with N processes (torchrun).")
@click.option(
    "--until",
    type=click.Choice(["data", "spm", "train", "eval"]),
    default="eval",
    help="Stop after this stage (default: evaluate).",
)
def run_cmd(recipe, overrides, mirror, nproc, until):
    """Run the whole pipeline: download, spm, train, evaluate; a stage whose inputs and settings did not
    change is skipped. Prints the test scores with their sacreBLEU signatures."""
    from seq2seq.training.pipeline import run_pipeline

    cfg = load_run_recipe(recipe, overrides)
    click.echo(run_pipeline(cfg, mirror, nproc, tuple(overrides), until), nl=False)


@click.command(context_settings=CONTEXT)
@RECIPE
@OVERRIDES
def clean(recipe, overrides):
    """Delete data/<name>/ of RECIPE (its corpus and run), nothing else."""
    from seq2seq.runs.cleanup import clean as run

    click.echo(run(load_recipe(recipe, overrides)))
