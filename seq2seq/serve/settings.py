"""The server's limits and switches: one place that the CLI fills and the app, batcher and request
parser read."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServeSettings:
    batch_size: int | None = (
        None  # sentences per decoder call within a batch (None: the run's decode.batch_size)
    )
    max_batch_tokens: int = 2048  # source pieces per decoding batch (a line longer than this goes alone)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others to join it
    max_lines: int = 256  # lines per request (413 above)
    max_pending: int = 4096  # lines queued or decoding over all requests (503 + Retry-After above)
    max_body_bytes: int = 1 << 20  # request body (413 above)
    max_beam: int = 32  # beam_size and n_best a request may ask for (DoS bound; recipes have none)
    retry_after_s: int = 1  # the Retry-After of a 503
    drain_s: float = 20.0  # SIGTERM/SIGINT: how long in-flight requests may take before the exit
    api_key: str | None = None  # every route but /health, / and /static needs it when set
    cors_origins: list[str] = field(default_factory=list)  # empty: no CORS headers at all
