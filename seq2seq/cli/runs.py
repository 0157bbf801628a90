"""Commands on a trained run: ``plot``, ``info``, ``average``, ``quantize``, ``tune-decode`` (added to the group in
:mod:`seq2seq.cli`)."""

from __future__ import annotations

from pathlib import Path

import click

from seq2seq.cli.common import CONTEXT, OVERRIDES, RECIPE, Setting, checkpoint_option, load_recipe
from seq2seq.config.schema import OUTPUT_FORMATS


@click.command(context_settings=CONTEXT)
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
    from seq2seq.inspect.plots import plot_run

    plot_run(run_dir, out_dir, sentences)


@click.command(context_settings=CONTEXT)
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

    from seq2seq.inspect.info import format_info, run_info

    data = run_info(run_dir)
    as_json = as_json or fmt == "json"
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else format_info(data))


@click.command(context_settings=CONTEXT)
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
    from seq2seq.runs.checkpoint import average_run

    paths, out = average_run(run_dir, list(names), last_n, out_name)
    if not names and len(paths) < last_n:
        click.echo(
            f"warning: --last {last_n}, but the run keeps only {len(paths)} step checkpoints", err=True
        )
    click.echo(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {out}")


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@checkpoint_option("best")
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Where the int8 checkpoint goes (default: <run_dir>/checkpoints/<checkpoint>-int8.pt).",
)
def quantize(run_dir, checkpoint, out):
    """Write an int8 checkpoint (int8 weights with per-row scales) for CPU decoding: translate, evaluate
    and serve it with --checkpoint NAME-int8."""
    from seq2seq.decode.int8 import quantize_run

    path, size, fp32 = quantize_run(run_dir, checkpoint, out)
    click.echo(
        f"wrote {path} (int8 weights with per-row scales): {_size(size)}, {100 * size / fp32:.0f}% of the "
        f"fp32 parameters ({_size(fp32)}); translate it with --checkpoint {path.stem}"
    )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


@click.command("tune-decode", context_settings=CONTEXT)
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
    from seq2seq.evaluation.tune import tune_decode as run

    run(load_recipe(recipe, overrides), beams, alphas, split)
