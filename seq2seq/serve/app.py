"""The HTTP application (Starlette): routes, limits, API key, and the model loaded in the background.

Routes (every answer JSON unless said; an error is ``{"error": "<one line>"}`` with its status):

- ``POST /v1/translate``: ``{"text": [lines] | "text", "format": "text"|"json", <decoding>}`` ->
  ``{"lines": [...], "translations": [...]}``; ``lines`` are the lines ``seq2seq translate`` prints
  for the same input and settings (``--format``; the same text, the scores and attention weights up to
  the last printed digit: see batcher.py; ``"exact": true``: byte for byte), ``translations`` the same
  as data.
- ``POST /translate``, ``GET /languages``: LibreTranslate's API (``q``, ``source``, ``target``,
  ``format``, ``api_key``, ``alternatives`` -> ``translatedText``).
- ``GET /health``: 200 ``{"status": "ready"}`` once the model is loaded, 503 before.
- ``GET /info``: languages, checkpoint, test scores and sacreBLEU signatures, decoding defaults, limits.
- ``GET /metrics``: Prometheus text.
- ``GET /`` and ``/static/...``: the web page.

With an API key set, every route but ``/health`` and the page's static files needs it
(``Authorization: Bearer KEY``, ``X-API-Key: KEY``, or LibreTranslate's ``api_key`` field).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from seq2seq.config import DecodeConfig
from seq2seq.errors import UserError
from seq2seq.serve.batcher import Batcher, Overloaded
from seq2seq.serve.metrics import Metrics
from seq2seq.serve.requests import BadRequest, parse_json, parse_libre, parse_v1
from seq2seq.serve.settings import ServeSettings
from seq2seq.translate import format_line
from seq2seq.translator import Translator

STATIC = Path(__file__).resolve().parent / "static"

# what the loader gives: the translator and the /info fields of the run it loaded
Loader = Callable[[], tuple[Translator, dict]]


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class Service:
    """The state behind the routes: the translator once loaded, the batcher, the metrics."""

    def __init__(self, settings: ServeSettings, on_fatal: Callable[[str], None]):
        self.settings, self.on_fatal = settings, on_fatal
        self.metrics = Metrics()
        self.batcher = Batcher(
            settings.max_batch_tokens, settings.max_wait_ms, settings.max_pending, self.metrics
        )
        self.translator: Optional[Translator] = None
        self.info: dict = {}
        self._configs: dict[tuple, DecodeConfig] = {}

    def ready(self) -> Translator:
        if self.translator is None:
            raise BadRequest(
                503, "the model is still loading", {"Retry-After": str(self.settings.retry_after_s)}
            )
        return self.translator

    def decode_config(self, overrides: dict) -> DecodeConfig:
        """The run's decode settings with ``overrides``, checked as ``seq2seq translate`` checks its
        flags (n-best above 1 only asked for; an n-best list longer than the beam is an error)."""
        size = {"batch_size": self.settings.batch_size} if self.settings.batch_size else {}
        overrides = {"n_best": 1, **size, **overrides}  # translate's --n-best default
        key = tuple(sorted(overrides.items()))
        if key not in self._configs:
            try:
                dc = self.ready().decode_config(**overrides)
            except UserError as e:
                raise BadRequest(400, str(e)) from None
            if len(self._configs) > 512:
                self._configs.clear()
            self._configs[key] = dc
        return self._configs[key]

    def check_key(self, request: Request, given: Optional[str] = None) -> None:
        key = self.settings.api_key
        if key is None:
            return
        auth = request.headers.get("authorization", "")
        sent = (
            given
            or request.headers.get("x-api-key")
            or (auth[7:] if auth.lower().startswith("bearer ") else None)
        )
        if not sent:
            raise BadRequest(
                401,
                "an API key is required: send 'Authorization: Bearer KEY' (or X-API-Key, or api_key)",
                {"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), key.encode("utf-8")):
            raise BadRequest(401, "wrong API key", {"WWW-Authenticate": "Bearer"})

    async def read_body(self, request: Request) -> bytes:
        """The request body, or a 413 as soon as it passes ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        too_big = f"the body is larger than {limit} bytes (--max-body-bytes)"
        if declared.isdigit() and int(declared) > limit:
            raise BadRequest(413, too_big)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    async def decode(
        self, request: Request, lines: list[str], dc: DecodeConfig, attention: bool, alone: bool = False
    ):
        """The n-best lists of ``lines`` through the batcher; dropped when the client disconnects."""
        translator = self.ready()
        ids = translator.src_tok.encode(lines)
        work = asyncio.ensure_future(self.batcher.translate(ids, dc, attention, alone))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not work.done():
            work.cancel()
            raise ClientGone
        try:
            return work.result()
        except Overloaded as e:
            raise BadRequest(
                503,
                f"the server is busy ({e}): retry later",
                {"Retry-After": str(self.settings.retry_after_s)},
            ) from None


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body has been read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def error(status: int, reason: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status, headers)


def endpoint(service: Service, route: str):
    """A route handler with its errors as one-line JSON answers, counted and timed in the metrics."""

    def wrap(handler):
        async def run(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
            except BadRequest as e:
                response = error(e.status, e.reason, e.headers)
            except ClientGone:
                response = Response(status_code=499)  # nobody reads it
            except Exception as e:  # noqa: BLE001 - a bug: one line for the client, the server goes on
                response = error(
                    500, f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                )
            service.metrics.requests.labels(route, str(response.status_code)).inc()
            service.metrics.latency.labels(route).observe(time.perf_counter() - start)
            return response

        return run

    return wrap


def create_app(
    settings: ServeSettings, load: Loader, on_fatal: Optional[Callable[[str], None]] = None
) -> Starlette:
    """The app; ``load`` runs in a thread at startup (``/health`` says ready once it returns), and a
    failure to load goes to ``on_fatal`` as one line."""
    service = Service(settings, on_fatal or (lambda msg: None))

    async def translate_v1(request: Request) -> Response:
        body = await service.read_body(request)
        service.check_key(request)
        req = parse_v1(body, settings)
        translator = service.ready()
        dc = service.decode_config(req.overrides)
        if req.exact or dc.sampling:  # translate's batches (sampling draws follow them)
            dc = replace(dc, batch_size=translator.cfg.decode.batch_size)
        found = await service.decode(request, req.lines, dc, req.fmt == "json", req.exact)
        lines = [format_line(translator, src, ts, req.fmt, dc.n_best) for src, ts in zip(req.lines, found)]
        if req.fmt == "json":
            translations = [json.loads(x) for x in lines]
        else:
            translations = [
                [{"text": t.text, "score": round(t.score, 4), "logprob": round(t.logprob, 4)} for t in ts]
                for ts in found
            ]
        return JSONResponse({"lines": lines, "translations": translations})

    async def translate_libre(request: Request) -> Response:
        body = await service.read_body(request)
        form_type = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        if form_type and not body.lstrip().startswith(b"{"):  # curl -d '{...}' sends JSON as a form
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise BadRequest(400, "the form is not UTF-8") from None
            values = {k: v if k == "q" and len(v) > 1 else v[-1] for k, v in form.items()}
        else:
            values = parse_json(body)
        service.check_key(request, values.get("api_key") if isinstance(values.get("api_key"), str) else None)
        translator = service.ready()
        data = translator.cfg.data
        req = parse_libre(values, settings, data.src_lang, data.tgt_lang)
        n_best = req.alternatives + 1
        overrides = {"n_best": n_best} if n_best > 1 else {}
        if n_best > translator.cfg.decode.beam_size:
            overrides["beam_size"] = n_best
        dc = service.decode_config(overrides)
        found = await service.decode(request, req.lines, dc, False)
        texts = [ts[0].text if ts else "" for ts in found]
        others = [[t.text for t in ts[1:]] for ts in found]
        if not req.as_list:
            texts, others = "\n".join(texts), [x for o in others for x in o]
        answer: dict = {"translatedText": texts}
        if req.alternatives:
            answer["alternatives"] = others
        if req.source == "auto":
            answer["detectedLanguage"] = (
                [{"confidence": 100.0, "language": data.src_lang}] * len(req.lines)
                if req.as_list
                else {"confidence": 100.0, "language": data.src_lang}
            )
        return JSONResponse(answer)

    async def languages(request: Request) -> Response:
        service.check_key(request)
        data = service.ready().cfg.data
        return JSONResponse([{"code": data.src_lang, "name": data.src_lang, "targets": [data.tgt_lang]}])

    async def health(request: Request) -> Response:
        if service.translator is None:
            return JSONResponse({"status": "loading"}, 503, {"Retry-After": str(settings.retry_after_s)})
        return JSONResponse({"status": "ready"})

    async def info(request: Request) -> Response:
        service.check_key(request)
        service.ready()
        return JSONResponse(service.info)

    async def metrics(request: Request) -> Response:
        service.check_key(request)
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def not_found(request: Request, exc: HTTPException) -> Response:
        reason = {404: f"no such route: {request.url.path}", 405: f"{request.method} is not allowed here"}
        return error(
            exc.status_code, reason.get(exc.status_code, str(exc.detail)), getattr(exc, "headers", None)
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()

        async def load_model():
            try:
                translator, summary = await loop.run_in_executor(None, load)
            except UserError as e:
                service.on_fatal(str(e))
                return
            except Exception as e:  # noqa: BLE001 - reported in one line, the server stops
                service.on_fatal(f"could not load the model: {type(e).__name__}: {e}")
                return
            service.batcher.start(translator)
            service.translator = translator
            summary.setdefault("decoding", {})["batch_size"] = service.decode_config({}).batch_size
            service.info = summary

        task = loop.create_task(load_model())
        try:
            yield
        finally:
            task.cancel()
            await service.batcher.stop()

    routes = [
        Route("/v1/translate", endpoint(service, "/v1/translate")(translate_v1), methods=["POST"]),
        Route("/translate", endpoint(service, "/translate")(translate_libre), methods=["POST"]),
        Route("/languages", endpoint(service, "/languages")(languages), methods=["GET"]),
        Route("/health", endpoint(service, "/health")(health), methods=["GET"]),
        Route("/info", endpoint(service, "/info")(info), methods=["GET"]),
        Route("/metrics", endpoint(service, "/metrics")(metrics), methods=["GET"]),
        Route("/", index, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            )
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.service = service
    return app
