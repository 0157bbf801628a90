"""The ``seq2seq`` command line: parse, load the config, call one library function."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import NoReturn

import click

from seq2seq.cli.common import CONTEXT, Group, PipeClosed, silence_stdout
from seq2seq.cli.pipeline import clean, config_cmd, download, evaluate, run_cmd, spm, train
from seq2seq.cli.recipes import new_recipe, recipes
from seq2seq.cli.runs import average, info, plot, quantize, tune_decode
from seq2seq.cli.serve import serve
from seq2seq.cli.share import compare, export, push
from seq2seq.cli.translate import back_translate, translate
from seq2seq.constants import VERSION as __version__
from seq2seq.errors import UserError


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(version=__version__, prog_name="seq2seq")
def cli():
    """Neural machine translation: bidirectional-GRU encoder, attention LSTM decoder.

    Every stage takes a recipe YAML and optional KEY=VALUE overrides, e.g.
    `seq2seq train recipes/default.yaml max_steps=200 model.dropout=0.2`.
    A bare key works when it is unique across the recipe's sections.
    """


for command in (
    run_cmd,
    download,
    spm,
    train,
    evaluate,
    config_cmd,
    translate,
    back_translate,
    plot,
    info,
    average,
    quantize,
    tune_decode,
    new_recipe,
    clean,
    recipes,
    compare,
    export,
    push,
    serve,
):
    cli.add_command(command)


def utf8_output() -> None:
    """Standard output in UTF-8 whatever the locale or PYTHONIOENCODING says (translations are UTF-8
    text, like the files -o writes: never a UnicodeEncodeError, never a lossy '?'); messages on standard
    error keep the terminal's encoding, with escapes for what it cannot show."""
    for stream, options in (
        (sys.stdout, {"encoding": "utf-8"}),
        (sys.stderr, {"errors": "backslashreplace"}),
    ):
        try:
            stream.reconfigure(**options)
        except (AttributeError, ValueError, OSError):  # closed, or not a text stream (captured by a caller)
            pass


def main(argv=None) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        leave_process(_exit_code(_main, argv))
    _main(argv)


def _exit_code(fn, *args) -> int:
    """The exit status ``fn(*args)`` ends with (its ``sys.exit`` included)."""
    try:
        fn(*args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def leave_process(code: int) -> NoReturn:
    """End a torchrun worker without the interpreter's teardown. DDP's reducer holds the gloo process
    group to the end (destroy_process_group cannot free it: its worker threads stay alive), and the C++
    teardown at interpreter exit raced with those threads: a rank aborted after its work was done and
    saved (SIGABRT, "terminate called without an active exception"), failing the whole torchrun. By
    here every file is written and closed; only the output streams need flushing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


def _main(argv=None) -> None:
    utf8_output()
    try:
        os.getcwd()
    except FileNotFoundError:  # torch's libraries would abort on their own ("oneMKL FATAL ERROR")
        click.echo("error: the current folder no longer exists (deleted): cd to an existing folder", err=True)
        sys.exit(2)
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
