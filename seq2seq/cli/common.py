"""Parts of the ``seq2seq`` command line that click lacks: flags range-checked like recipe keys, and a
closed output pipe reported to ``main`` (click would turn it into exit status 1 itself)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Optional

import click

from seq2seq.config.schema import CHOICES

CONTEXT = {"help_option_names": ["-h", "--help"]}
RECIPE = click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
OVERRIDES = click.argument("overrides", nargs=-1)
MIRROR = click.option(
    "--mirror",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local folder holding the recipe's files (found by file name); nothing is fetched.",
)


def checkpoint_option(default: Optional[str] = None):
    """``--checkpoint NAME|FILE``: a name in <run_dir>/checkpoints or a file; no default: the run's
    decode.checkpoint."""
    where = (
        "Checkpoint name in <run_dir>/checkpoints (best, last, averaged, average, ...) or a checkpoint file"
    )
    return click.option(
        "--checkpoint",
        default=default,
        show_default=default is not None,
        metavar="NAME|FILE",
        help=where + ("." if default else " (default: the run's decode.checkpoint)."),
    )


PRECISION = click.option(
    "--precision",
    "search_precision",
    type=click.Choice(CHOICES["decode.search_precision"]),
    default=None,
    help="Decoding arithmetic (decode.search_precision): auto (the checkpoint's: int8 for a seq2seq quantize "
    "file, else fp32), fp32, bf16 (native bf16 only) or int8 (CPU; quantizes on load).",
)


def load_recipe(recipe: Path, overrides):
    """The recipe's validated config with its ``key=value`` overrides (the config package is imported on
    first use: ``seq2seq --help`` stays fast)."""
    from seq2seq.config.load import load_config

    return load_config(recipe, list(overrides))


def load_run_recipe(recipe: Path, overrides):
    """As :func:`load_recipe`, after the overrides the recipe's run was trained with (a run remembers)."""
    from seq2seq.runs.settings import load_for_run

    return load_for_run(recipe, tuple(overrides))


class Setting(click.ParamType):
    """A number (``many``: comma-separated numbers) for the config key ``key``, checked against the
    recipe's own range for that key (config.RANGES): flags and recipes share one set of bounds."""

    name = "number"

    def __init__(self, key: str, many: bool = False):
        self.key, self.many = key, many

    def convert(self, value, param, ctx):
        from seq2seq.config.rules import check_setting

        if not isinstance(value, str):
            return value
        flag = param.opts[-1] if param is not None else self.key
        items = value.split(",") if self.many else [value]
        numbers = [check_setting(self.key, x, f"{flag} ({self.key})") for x in items]
        return numbers if self.many else numbers[0]


class PipeClosed(Exception):
    """The reader of our output went away (``| head -1``): not an OSError, so click leaves it to main()."""


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise PipeClosed from None
            raise


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail on the closed pipe."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass
