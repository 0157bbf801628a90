"""``seq2seq serve``: a trained run behind HTTP (a JSON API, LibreTranslate's API, a web page, Prometheus
metrics), with concurrent requests batched together."""

from seq2seq.serve.app import create_app
from seq2seq.serve.server import serve
from seq2seq.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "serve"]
