"""``seq2seq serve``: one run behind HTTP with uvicorn.

The port is bound first (in use: a one-line error before anything is loaded), then the server
answers at once while the model loads in a thread (``/health`` says when it is ready; a run that does
not load stops the server with its one-line error). SIGTERM or SIGINT: no new connections, the
requests in flight are answered (for at most ``drain_s`` seconds), exit status 0.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import signal
import socket
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Optional

import torch
import uvicorn

from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.inspect.info import read_results
from seq2seq.model.device import pick_device
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs.ownership import load_run_config
from seq2seq.serve.app import create_app
from seq2seq.serve.settings import ServeSettings


def read_api_key(path: Path) -> str:
    """The key in ``path``: its text without surrounding whitespace; missing or empty: a UserError."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UserError(f"--api-key-file: {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(
            f"--api-key-file: could not read {path}: {getattr(e, 'strerror', None) or e}"
        ) from None
    if not key or "\n" in key:
        raise UserError(f"--api-key-file: {path} must hold one key on one line")
    return key


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a port in use or a bad host is a one-line UserError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is in use (another server?): pick another with --port"
            ) from None
        if e.errno == errno.EACCES:
            raise UserError(
                f"port {port} on {host} needs privileges: pick one above 1023 with --port"
            ) from None
        raise UserError(f"could not listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def loader(run_dir: Path, checkpoint: str, device: str, precision: Optional[str] = None):
    """The function the app runs at startup: the run loaded with translate's checks, and /info.
    ``precision``: a decode.search_precision value instead of the run's (None keeps it)."""
    dev = pick_device(device, "--device")

    def load():
        translator = Translator.from_run_dirs([run_dir], checkpoint, dev, precision)
        return translator, summary(run_dir, checkpoint, translator)

    return load


def summary(run_dir: Path, checkpoint: str, translator: Translator) -> dict:
    cfg = translator.cfg
    results = Path(run_dir) / "results.json"
    info = {
        "name": cfg.name,
        "source_language": cfg.data.src_lang,
        "target_language": cfg.data.tgt_lang,
        "checkpoint": str(ckpt_io.resolve(run_dir, checkpoint, "--checkpoint").name),
        "decoding": {
            k: v for k, v in asdict(translator.decode_config(n_best=1)).items() if k != "checkpoint"
        },
        "max_len": cfg.train.max_len,
    }
    if results.is_file():
        info["results"] = read_results(results)
    return info


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Server(uvicorn.Server):
    """uvicorn's server, but a SIGTERM/SIGINT that shut it down gracefully ends the process with status 0
    (uvicorn re-raises the signal after the drain: status 143/130), and so does a repeated one that
    arrives while the process exits (uvicorn puts the default handlers back: killed, status 143)."""

    stopped_by_signal = False

    def handle_exit(self, sig, frame) -> None:
        if self.should_exit and sig == signal.SIGINT:  # a second Ctrl-C: no more waiting
            self.force_exit = True
        self.should_exit = True
        self.stopped_by_signal = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():  # stopping as asked: further signals change nothing
                signal.signal(sig, signal.SIG_IGN if self.stopped_by_signal else handler)


def serve(
    run_dir: Path,
    checkpoint: str = "best",
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: Optional[ServeSettings] = None,
    api_key_file: Optional[Path] = None,
    device: str = "auto",
    threads: int = 0,
    access_log: bool = False,
    log=None,
    precision: Optional[str] = None,
) -> None:
    """Serve ``run_dir`` until SIGTERM/SIGINT, decoding in ``precision`` (a decode.search_precision value; None:
    the run's). Raises UserError for a run that does not load, a port in use, a bad key file."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    settings = settings or ServeSettings()
    run_dir = Path(run_dir)
    load_run_config(run_dir)  # the cheap checks before binding: a run directory, its checkpoint
    ckpt_io.resolve(run_dir, checkpoint, "--checkpoint")
    if api_key_file is not None:
        settings.api_key = read_api_key(api_key_file)
    if threads:
        torch.set_num_threads(threads)
    load = loader(run_dir, checkpoint, device, precision)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    fatal: list[str] = []
    server: Optional[_Server] = None

    def on_fatal(msg: str) -> None:
        fatal.append(msg)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, load, on_fatal)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=access_log,
        timeout_graceful_shutdown=max(1, int(settings.drain_s)),
        lifespan="on",
        server_header=False,
    )
    server = _Server(config)
    shown = f"[{host}]" if ":" in host else host
    log(
        f"seq2seq serve: {run_dir} ({checkpoint}) on http://{shown}:{port}/ (loading the model; "
        f"GET /health says when it is ready); Ctrl-C or SIGTERM stops it"
    )
    if not is_loopback(host) and settings.api_key is None:
        log(f"warning: listening on {host} without --api-key-file: anyone who can reach it can use it")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if fatal:
        raise UserError(fatal[0])
    log("seq2seq serve: stopped")
