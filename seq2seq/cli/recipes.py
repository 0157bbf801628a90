"""The ``seq2seq new-recipe`` and ``seq2seq recipes`` commands (added to the group in :mod:`seq2seq.cli`)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from seq2seq.cli.common import CONTEXT


@click.command("new-recipe", context_settings=CONTEXT)
@click.argument("name")
@click.option("--src-lang", required=True, help="Source language code, e.g. de (also a file suffix).")
@click.option(
    "--tgt-lang", required=True, help="Target language code, e.g. en (also picks the BLEU tokenizer)."
)
@click.option(
    "--train",
    "train_prefix",
    required=True,
    metavar="PREFIX",
    help="PREFIX.de + PREFIX.en, or PREFIX.tsv / .jsonl.",
)
@click.option("--dev", "dev_prefix", required=True, metavar="PREFIX", help="Dev split, as --train.")
@click.option(
    "--test", "test_prefix", default=None, metavar="PREFIX", help="Test split, as --train (optional)."
)
@click.option(
    "--src-field", default="", help="tsv/jsonl: the source column or field (default: found from line 1)."
)
@click.option("--tgt-field", default="", help="tsv/jsonl: the target column or field.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Recipe file or folder (default: ./NAME.yaml).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing recipe file.")
@click.option(
    "--size",
    type=click.Choice(["cpu", "gpu"]),
    default=None,
    help="Start from the shipped CPU or GPU settings (default: cpu unless a GPU is visible).",
)
@click.option(
    "--like",
    default="",
    metavar="RECIPE",
    help="Start from this recipe's settings (a file or a shipped name).",
)
def new_recipe(
    name,
    src_lang,
    tgt_lang,
    train_prefix,
    dev_prefix,
    test_prefix,
    src_field,
    tgt_field,
    output,
    force,
    size,
    like,
):
    """Write a recipe for your own corpus, every key spelled out with its default and a comment."""
    from seq2seq.data.new_recipe import NewRecipe
    from seq2seq.data.new_recipe import new_recipe as run

    prefixes = {"train": train_prefix, "dev": dev_prefix, **({"test": test_prefix} if test_prefix else {})}
    spec = NewRecipe(
        name, src_lang, tgt_lang, prefixes, output, src_field, tgt_field, force, size or "", like
    )
    path, why = run(spec)
    click.echo(why)
    click.echo(f"wrote {path}; next: seq2seq run {shlex.quote(str(path))}")


@click.command(context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="Copy NAME here.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def recipes(name, out_dir, force):
    """List the recipes shipped with seq2seq, or copy recipe NAME into OUT_DIR."""
    from seq2seq.config.recipes import copy_recipe, list_recipes

    if name:
        click.echo(f"wrote {copy_recipe(name, out_dir, force)}")
        return
    for recipe, summary in list_recipes():
        click.echo(f"{recipe:24s} {summary}")
