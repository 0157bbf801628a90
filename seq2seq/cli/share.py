"""The ``seq2seq compare``, ``export`` and ``push`` commands (added to the group in :mod:`seq2seq.cli`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seq2seq.cli.common import CONTEXT, checkpoint_option


@click.command(context_settings=CONTEXT)
@click.argument("systems", nargs=-1, required=True, metavar="SYSTEM [SYSTEM ...]")
@click.option(
    "--ref",
    "refs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Reference file, one line per sentence; repeat it for several references.",
)
@click.option(
    "--src",
    type=click.Path(path_type=Path),
    default=None,
    help="Source file: what a run directory or model folder among the systems translates first.",
)
@click.option(
    "--test",
    "tests",
    type=click.Choice(["both", "bs", "ar"]),
    default="both",
    show_default=True,
    help="bs: paired bootstrap resampling; ar: paired approximate randomization.",
)
@click.option("--bootstrap-samples", type=int, default=1000, show_default=True, help="Bootstrap resamples.")
@click.option(
    "--ar-trials", type=int, default=10000, show_default=True, help="Approximate randomization trials."
)
@click.option("--seed", type=int, default=12345, show_default=True, help="sacreBLEU's random seed.")
@click.option(
    "--tokenize", default="auto", show_default=True, help="BLEU tokenizer (auto: by the target language)."
)
@click.option(
    "-l", "--tgt-lang", default=None, help="Target language (auto BLEU tokenizer); default: a run's."
)
@checkpoint_option()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of the text report.")
def compare(
    systems,
    refs,
    src,
    tests,
    bootstrap_samples,
    ar_trials,
    seed,
    tokenize,
    tgt_lang,
    checkpoint,
    device,
    as_json,
):
    """Paired significance tests of SYSTEMs against the first (the baseline): BLEU, chrF and TER.

    A SYSTEM is a hypothesis file, or a run directory / model folder / hf://OWNER/NAME that translates
    --src first with its own decode settings. Uses sacreBLEU's own paired bootstrap resampling (mean,
    95% confidence interval, p-value) and approximate randomization (p-value).
    """
    import sys

    from seq2seq.evaluation.compare import compare as run
    from seq2seq.evaluation.compare import format_compare

    log = lambda msg: click.echo(msg, err=True)  # progress on stderr: stdout is the report
    result = run(
        list(systems),
        list(refs),
        src,
        ("bs", "ar") if tests == "both" else (tests,),
        bootstrap_samples,
        ar_trials,
        seed,
        tokenize,
        tgt_lang,
        checkpoint,
        device,
        log,
    )
    sys.stdout.write(
        (json.dumps(result, indent=2, ensure_ascii=False) if as_json else format_compare(result)) + "\n"
    )


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="The model folder to write."
)
@checkpoint_option()
@click.option(
    "--license", "license_", default="unknown", show_default=True, help="The card's licence (SPDX id)."
)
def export(run_dir, output, checkpoint, license_):
    """Write RUN_DIR's checkpoint as a self-contained model folder: safetensors weights, SentencePiece
    model(s), config.yaml, seq2seq.json and a model card README.md."""
    from seq2seq.share import export as run

    run(run_dir, output, checkpoint, license_)


@click.command(context_settings=CONTEXT)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), metavar="DIR")
@click.argument("repo_id", metavar="OWNER/NAME")
@click.option("--private", is_flag=True, help="Create the repository private.")
@click.option("--revision", default=None, help="Branch to push to (created when missing; default main).")
def push(folder, repo_id, private, revision):
    """Upload the model folder DIR to the Hugging Face Hub as OWNER/NAME (token: HF_TOKEN or hf auth login)."""
    from seq2seq.share import push as run

    run(folder, repo_id, private, revision)
