"""The ``seq2seq serve`` command (added to the group in :mod:`seq2seq.cli`)."""

from __future__ import annotations

from pathlib import Path

import click

from seq2seq.cli.common import CONTEXT, PRECISION, Setting, checkpoint_option


@click.command(context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@checkpoint_option("best")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free port."
)
@click.option(
    "--batch-size",
    type=Setting("decode.batch_size"),
    default=None,
    help="Sentences per decoder call within a batch (default: the run's decode.batch_size).",
)
@click.option(
    "--max-batch-tokens",
    type=click.IntRange(1),
    default=2048,
    show_default=True,
    help="Source pieces per decoding batch (the lines of concurrent requests are merged up to this).",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="How long a request waits for others to share its batch.",
)
@click.option(
    "--max-lines", type=click.IntRange(1), default=256, show_default=True, help="Lines per request."
)
@click.option(
    "--max-pending",
    type=click.IntRange(1),
    default=4096,
    show_default=True,
    help="Lines queued over all requests; above it requests get 503 with Retry-After.",
)
@click.option(
    "--max-body-bytes", type=click.IntRange(1), default=1 << 20, show_default=True, help="Request body size."
)
@click.option(
    "--max-beam",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="The largest beam_size and n_best a request may ask for.",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A file holding one key: every route but /health and the page's files then needs it "
    "(Authorization: Bearer KEY).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="Allow browser pages from ORIGIN (e.g. https://example.org; * for any) to call the API; "
    "repeatable. Default: no CORS.",
)
@click.option(
    "--drain-seconds",
    type=click.FloatRange(0),
    default=20.0,
    show_default=True,
    help="On SIGTERM/SIGINT, how long requests in flight may take before the server exits.",
)
@click.option(
    "--threads", type=click.IntRange(0), default=0, help="CPU threads of decoding (0: torch's default)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@PRECISION
@click.option("--access-log", is_flag=True, help="Log every request on stderr.")
def serve(
    run_dir,
    checkpoint,
    host,
    port,
    api_key_file,
    threads,
    device,
    search_precision,
    access_log,
    cors_origins,
    **limits,
):
    """Serve RUN_DIR over HTTP: POST /v1/translate, LibreTranslate's POST /translate, GET /health, /info,
    /metrics, and a web page at /.

    Concurrent requests are decoded together in batches. Binds 127.0.0.1 unless --host says otherwise;
    SIGTERM or Ctrl-C finishes the requests in flight and exits.
    """
    from seq2seq.serve import ServeSettings
    from seq2seq.serve import serve as run

    settings = ServeSettings(drain_s=limits.pop("drain_seconds"), cors_origins=list(cors_origins), **limits)
    run(
        run_dir,
        checkpoint,
        host,
        port,
        settings,
        api_key_file,
        device,
        threads,
        access_log,
        precision=search_precision,
    )
