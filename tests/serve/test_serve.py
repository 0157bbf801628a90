"""seq2seq serve: a real server (a subprocess on a free local port) on the tiny trained run, compared
with offline translate; every refusal; lifecycle; the web page in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SERVER_ARGS = ["--batch-size", "64", "--max-lines", "64", "--max-body-bytes", "65536", "--max-wait-ms", "5"]
# the decoding settings the load test mixes, each also given to offline translate
COMBOS = {
    "default": ({}, []),
    "nbest": ({"beam_size": 2, "n_best": 2}, ["--beam-size", "2", "--n-best", "2"]),
    "json": ({"format": "json", "beam_size": 1}, ["--format", "json", "--beam-size", "1"]),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def start_server(run_dir: Path, *args: str, port: int | None = None):
    """(process, base URL) of ``seq2seq serve run_dir`` once /health says ready."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "seq2seq", "serve", str(run_dir), "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not get ready in 90 s")


def stop_server(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def metric(url: str, name: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(name + " "))


@pytest.fixture(scope="module")
def run_dir(trained_run) -> Path:
    return trained_run[0].run_path


@pytest.fixture(scope="module")
def pool(trained_run) -> list[str]:
    """Source lines: the tiny corpus's test and dev lines, a blank line, and some train lines."""
    cfg = trained_run[0]
    src = cfg.data.src_lang
    lines = []
    for split in ("test", "dev", "train"):
        lines += (cfg.data_dir / f"{split}.{src}").read_text(encoding="utf-8").splitlines()[:40]
    return sorted(set(lines)) + [""]


@pytest.fixture(scope="module")
def offline(run_dir, pool, tmp_path_factory) -> dict[str, dict[str, str]]:
    """{combo: {line: what seq2seq translate prints for it}}: the command line for the defaults, the
    function it calls for the others."""
    from seq2seq.decode.files import TranslateIO, translate

    tmp = tmp_path_factory.mktemp("offline")
    src = tmp / "in.txt"
    src.write_text("".join(x + "\n" for x in pool), encoding="utf-8")
    out = {}
    for name, (body, _flags) in COMBOS.items():
        dest = tmp / f"{name}.out"
        if name == "default":
            cmd = [
                sys.executable,
                "-m",
                "seq2seq",
                "translate",
                str(run_dir),
                "-i",
                str(src),
                "-o",
                str(dest),
            ]
            subprocess.run(cmd, env=env(), check=True, capture_output=True)
        else:
            overrides = {k: v for k, v in body.items() if k != "format"}
            translate(
                [run_dir], TranslateIO(input=src, output=dest, fmt=body.get("format", "text")), **overrides
            )
        out[name] = dict(zip(pool, dest.read_text(encoding="utf-8").split("\n")))
    return out


@pytest.fixture(scope="module")
def served(run_dir):
    proc, url = start_server(run_dir, *SERVER_ARGS)
    yield proc, url
    assert stop_server(proc) == 0


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 2e-4  # 4 printed decimals, a last-bit difference rounded either way


def same_output(got: str, want: str, fmt: str) -> bool:
    """translate's line ``want`` and a server's ``got``: the same text and pieces; scores and attention
    weights equal up to their last printed digit (a batch's shape changes float sums' last bits)."""
    if fmt == "json":
        g, w = json.loads(got), json.loads(want)
        if (g["source"], g["source_tokens"], len(g["hypotheses"])) != (
            w["source"],
            w["source_tokens"],
            len(w["hypotheses"]),
        ):
            return False
        for x, y in zip(g["hypotheses"], w["hypotheses"]):
            if (x["text"], x["tokens"]) != (y["text"], y["tokens"]):
                return False
            if not (close(x["score"], y["score"]) and close(x["logprob"], y["logprob"])):
                return False
            rows = zip(x["attention"] or [], y["attention"] or [])
            if not all(len(r) == len(q) and all(close(u, v) for u, v in zip(r, q)) for r, q in rows):
                return False
        return True
    g, w = got.split("\t"), want.split("\t")
    return (
        len(g) == len(w)
        and g[::2] == w[::2]
        and all(close(float(a), float(b)) for a, b in zip(g[1::2], w[1::2]))
    )


def test_answers_equal_offline_translate_under_64_concurrent_clients(served, pool, offline, translator):
    from seq2seq.decode.files import TranslateIO, translate_lines

    proc, url = served
    requests.post(url + "/v1/translate", json={"text": pool[:3]}, timeout=60).raise_for_status()  # warm up
    before_rss, before_sent = rss_kib(proc.pid), metric(url, "seq2seq_sentences_total")

    def client(seed: int):
        rng = random.Random(seed)
        answers = []
        with requests.Session() as session:
            for k in range(10):
                lines = rng.sample(pool, rng.choice([1, 1, 1, 2, 2, 3, 4, 6]))
                name = rng.choice(list(COMBOS))
                exact = rng.random() < 0.25
                body = {"text": lines, **COMBOS[name][0], **({"exact": True} if exact else {})}
                r = session.post(url + "/v1/translate", json=body, timeout=300)
                answers.append((seed, k, lines, name, exact, r.status_code, r.json()))
        return answers

    with ThreadPoolExecutor(64) as ex:
        answers = [a for batch in ex.map(client, range(64)) for a in batch]
    assert len(answers) == 640 and len({(a[0], a[1]) for a in answers}) == 640
    sent = 0
    for seed, k, lines, name, exact, status, body in answers:
        assert status == 200, (seed, k, body)
        assert len(body["lines"]) == len(body["translations"]) == len(lines)
        settings = {k: v for k, v in COMBOS[name][0].items() if k != "format"}
        fmt = COMBOS[name][0].get("format", "text")
        if exact:  # translate's own function on these lines: byte for byte
            dc = translator.decode_config(**{"n_best": 1, **settings})
            assert body["lines"] == translate_lines(translator, dc, TranslateIO(fmt=fmt), lines, 1)
        else:
            for got, line in zip(body["lines"], lines):
                assert same_output(got, offline[name][line], fmt), (seed, k, name, line, got)
        sent += len(lines)
    # every line decoded exactly once: none lost, none twice
    assert metric(url, "seq2seq_sentences_total") - before_sent == sent
    assert metric(url, "seq2seq_queue_sentences") == 0
    assert rss_kib(proc.pid) < before_rss + 512 * 1024  # generous: no per-request growth


def test_json_answer_is_translates_json_line_and_libretranslate(served, pool, offline):
    _, url = served
    lines = [x for x in pool if x][:3]
    body = requests.post(url + "/v1/translate", json={"text": lines, "format": "json", "beam_size": 1}).json()
    assert body["lines"] == [offline["json"][x] for x in lines]
    assert [json.dumps(x, ensure_ascii=False) for x in body["translations"]] == body["lines"]
    # a string is split into lines as a file is
    text = requests.post(url + "/v1/translate", json={"text": "\r\n".join(lines) + "\n"}).json()
    assert text["lines"] == [offline["default"][x] for x in lines]
    # LibreTranslate: a string, a list, source auto, alternatives
    libre = requests.post(
        url + "/translate", json={"q": lines[0], "source": "en", "target": "de", "format": "text"}
    )
    assert libre.status_code == 200 and libre.json() == {"translatedText": offline["default"][lines[0]]}
    many = requests.post(url + "/translate", data={"q": lines[:2], "source": "auto", "target": "de"}).json()
    assert many["translatedText"] == [offline["default"][x] for x in lines[:2]]
    assert many["detectedLanguage"][0]["language"] == "en"
    alt = requests.post(
        url + "/translate", json={"q": lines[0], "source": "en", "target": "de", "alternatives": 1}
    )
    assert len(alt.json()["alternatives"]) == 1
    assert requests.get(url + "/languages").json() == [{"code": "en", "name": "en", "targets": ["de"]}]
    info = requests.get(url + "/info").json()
    assert (info["source_language"], info["target_language"], info["checkpoint"]) == ("en", "de", "best.pt")
    assert info["decoding"]["beam_size"] == 3
    text = requests.get(url + "/metrics").text
    assert "seq2seq_request_seconds_bucket" in text and "seq2seq_batch_sentences_bucket" in text


def test_sampling_and_long_lines_equal_offline(served, run_dir, pool, tmp_path):
    from seq2seq.decode.files import TranslateIO, translate

    _, url = served
    long = " ".join(["seven hundred twenty-one"] * 45)  # past train.max_len: translated in parts
    lines = [x for x in pool if x][:4] + [long]
    settings = {"sampling": True, "n_best": 2, "sampling_seed": 7, "temperature": 1.5}
    src, dest = tmp_path / "in", tmp_path / "out"
    src.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    translate([run_dir], TranslateIO(input=src, output=dest), **settings)
    body = requests.post(url + "/v1/translate", json={"text": lines, **settings}, timeout=120).json()
    assert body["lines"] == dest.read_text(encoding="utf-8").splitlines()


BAD = [
    ("/v1/translate", b'{"text": ["a"', 400, "malformed JSON: "),
    ("/v1/translate", b"[1, 2]", 400, "the body must be a JSON object, got an array"),
    ("/v1/translate", b'{"text": 5}', 400, "'text' must be a string or an array of strings, got a number"),
    ("/v1/translate", b'{"text": ["a", 3]}', 400, "'text'[1] must be a string, got a number"),
    ("/v1/translate", b'{"text": ["a\\nb"]}', 400, "'text'[0] holds a line break"),
    ("/v1/translate", b'{"text": ["\\ud800"]}', 400, "not valid Unicode"),
    (
        "/v1/translate",
        b'{"text": ["a"], "beam_size": "5"}',
        400,
        "'beam_size' must be a number, got a string",
    ),
    ("/v1/translate", b'{"text": ["a"], "beam_size": 0}', 400, "'beam_size' must be in [1, 256], got 0"),
    ("/v1/translate", b'{"text": ["a"], "beam_size": 2.5}', 400, "'beam_size': expected an integer, got 2.5"),
    ("/v1/translate", b'{"text": ["a"], "length_penalty": 11}', 400, "'length_penalty' must be in [0, 10]"),
    (
        "/v1/translate",
        b'{"text": ["a"], "beam_size": 99}',
        400,
        "'beam_size' must be at most 32 on this server",
    ),
    (
        "/v1/translate",
        b'{"text": ["a"], "beam_size": 2, "n_best": 3}',
        400,
        "must not exceed decode.beam_size",
    ),
    (
        "/v1/translate",
        b'{"text": ["a"], "sampling": 1}',
        400,
        "'sampling' must be true or false, got a number",
    ),
    ("/v1/translate", b'{"text": ["a"], "checkpoint": "last"}', 400, "unknown field 'checkpoint'"),
    ("/v1/translate", b'{"text": ["a"], "format": "xml"}', 400, "'format' must be one of text, json"),
    ("/v1/translate", json.dumps({"text": ["a"] * 65}).encode(), 413, "too many lines: 65, at most 64"),
    ("/v1/translate", b'{"text": "' + b"a" * 70000 + b'"}', 413, "the body is larger than 65536 bytes"),
    (
        "/translate",
        b'{"q": "a", "source": "fr", "target": "de"}',
        400,
        "unsupported language pair fr->de: this server translates en to de",
    ),
    ("/translate", b'{"q": "a", "source": "en"}', 400, "'target' is required"),
    (
        "/translate",
        b'{"q": "a", "source": "en", "target": "de", "format": "html"}',
        400,
        "'format' must be text",
    ),
]


@pytest.mark.parametrize("route,body,status,reason", BAD, ids=[f"{b[2]}-{b[3][:30]}" for b in BAD])
def test_bad_requests_get_a_status_and_a_one_line_reason(served, route, body, status, reason):
    _, url = served
    r = requests.post(url + route, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == status
    error = r.json()["error"]
    assert reason in error and "\n" not in error


def test_unknown_routes_and_methods(served):
    _, url = served
    r = requests.get(url + "/v2/translate")
    assert (r.status_code, r.json()) == (404, {"error": "no such route: /v2/translate"})
    r = requests.get(url + "/v1/translate")
    assert r.status_code == 405 and "GET is not allowed" in r.json()["error"]


def test_second_server_on_the_same_port_and_a_bad_run_are_one_line_errors(served, tmp_path):
    _, url = served
    port = url.rsplit(":", 1)[1]
    run_dir = served[0].args[4]
    r = subprocess.run(
        [sys.executable, "-m", "seq2seq", "serve", run_dir, "--port", port],
        env=env(),
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert r.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (another server?): pick another with --port"
    ]
    r = subprocess.run(
        [sys.executable, "-m", "seq2seq", "serve", str(tmp_path), "--port", "0"],
        env=env(),
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and r.stderr.splitlines() == [
        f"error: {tmp_path} is not a run directory (no config.yaml)"
    ]


def test_sigterm_under_load_finishes_in_flight_refuses_new_exits_0(run_dir, pool, offline):
    # a long batching wait: the first requests are still in flight when SIGTERM comes
    proc, url = start_server(run_dir, "--max-wait-ms", "4000", "--batch-size", "64")
    lines = [x for x in pool if x][:3]
    with ThreadPoolExecutor(8) as ex:
        flying = [
            ex.submit(requests.post, url + "/v1/translate", json={"text": lines}, timeout=60)
            for _ in range(8)
        ]
        wait_for(lambda: metric(url, "seq2seq_queue_sentences") == 24)  # all 8 waiting for their batch
        proc.send_signal(signal.SIGTERM)
        port = int(url.rsplit(":", 1)[1])

        def refused() -> bool:  # connect only: a request sent before the listener closed would be answered
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_for(refused, 5)
        with pytest.raises(requests.ConnectionError):
            requests.post(url + "/v1/translate", json={"text": lines}, timeout=10)
        assert not any(f.done() for f in flying)
        for f in flying:
            r = f.result()
            assert r.status_code == 200 and r.json()["lines"] == [offline["default"][x] for x in lines]
    assert stop_server(proc) == 0


# --- in-process servers: a loader held back, a decoder held back, an API key ---


@pytest.fixture(scope="module")
def translator(run_dir):
    from seq2seq.decode.translator import Translator

    return Translator.load(run_dir)


@contextlib.contextmanager
def in_process(settings, load):
    import uvicorn

    from seq2seq.serve import create_app

    app = create_app(settings, load)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}", app.state.service
    finally:
        server.should_exit = True
        thread.join(20)


def wait_for(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_health_is_ready_only_once_the_model_is_loaded(translator):
    from seq2seq.serve import ServeSettings

    gate = threading.Event()

    def load():
        gate.wait(30)
        return translator, {"name": "tiny"}

    with in_process(ServeSettings(), load) as (url, _):
        r = requests.get(url + "/health")
        assert (r.status_code, r.json(), r.headers["Retry-After"]) == (503, {"status": "loading"}, "1")
        r = requests.post(url + "/v1/translate", json={"text": ["a"]})
        assert (r.status_code, r.json()) == (503, {"error": "the model is still loading"})
        gate.set()
        wait_for(lambda: requests.get(url + "/health").status_code == 200)
        assert requests.post(url + "/v1/translate", json={"text": ["a"]}).status_code == 200


def test_api_key_guards_every_route_but_health_and_the_page(translator):
    from seq2seq.serve import ServeSettings

    with in_process(ServeSettings(api_key="s3cret"), lambda: (translator, {"name": "tiny"})) as (url, _):
        wait_for(lambda: requests.get(url + "/health").status_code == 200)
        for method, route in (("get", "/info"), ("get", "/metrics"), ("post", "/v1/translate")):
            r = getattr(requests, method)(url + route, json={"text": ["a"]})
            assert r.status_code == 401 and r.json()["error"].startswith("an API key is required")
            assert r.headers["WWW-Authenticate"] == "Bearer"
        r = requests.post(
            url + "/v1/translate", json={"text": ["a"]}, headers={"Authorization": "Bearer nope"}
        )
        assert (r.status_code, r.json()) == (401, {"error": "wrong API key"})
        assert requests.post(url + "/v1/translate", json={"text": ["a"]}, headers={"X-API-Key": "s3cret"}).ok
        assert requests.get(url + "/info", headers={"Authorization": "Bearer s3cret"}).ok
        libre = {"q": "a", "source": "en", "target": "de"}
        assert requests.post(url + "/translate", json=libre).status_code == 401
        assert requests.post(url + "/translate", json={**libre, "api_key": "s3cret"}).ok
        assert requests.get(url + "/").ok and requests.get(url + "/static/app.js").ok
        assert (
            "access-control-allow-origin"
            not in requests.get(url + "/health", headers={"Origin": "http://x"}).headers
        )


def test_over_the_pending_cap_is_503_with_retry_after_and_a_gone_client_is_dropped(translator):
    from seq2seq.serve import ServeSettings

    with in_process(ServeSettings(max_pending=4), lambda: (translator, {"name": "tiny"})) as (url, service):
        wait_for(lambda: requests.get(url + "/health").status_code == 200)
        gate, decode = threading.Event(), service.batcher._decode
        service.batcher._decode = lambda *a: (gate.wait(30), decode(*a))[1]
        with ThreadPoolExecutor(1) as ex:
            first = ex.submit(requests.post, url + "/v1/translate", json={"text": ["a", "b"]}, timeout=60)
            wait_for(lambda: service.batcher.pending == 2 and not service.batcher.jobs)  # in the held batch
            # a client that sends a request and goes away: its lines leave the queue
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as s:
                body = json.dumps({"text": ["c"]}).encode()
                s.sendall(
                    b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                wait_for(lambda: service.batcher.pending == 3)
            wait_for(lambda: service.batcher.pending == 2)
            assert service.metrics.dropped._value.get() == 1
            r = requests.post(url + "/v1/translate", json={"text": ["c", "d", "e"]})
            assert (r.status_code, r.headers["Retry-After"]) == (503, "1")
            assert r.json()["error"] == "the server is busy (2 lines pending, at most 4): retry later"
            gate.set()
            assert first.result().status_code == 200
        assert requests.post(url + "/v1/translate", json={"text": ["c", "d", "e"]}).status_code == 200


# --- the web page in a real browser ---


@pytest.mark.browser
def test_web_page_translates_in_headless_chromium(served, tmp_path):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, url = served
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=420,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
        sentence = "two hundred plus three is two hundred three"
        driver.find_element(By.ID, "source").send_keys(sentence)
        driver.find_element(By.ID, "translate").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
        shown = driver.find_element(By.ID, "result").get_property("textContent")
        assert driver.find_element(By.ID, "heatmap").get_property("width") > 0
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
    expected = requests.post(url + "/v1/translate", json={"text": [sentence]}).json()["lines"]
    assert [shown] == expected
    assert (tmp_path / "page.png").stat().st_size > 1000


def test_serves_in_int8_as_translate_does(run_dir, pool):
    """serve --precision int8: the loader quantizes on load; answers equal the int8 Translator's, and
    /info says which precision decodes."""
    from seq2seq.decode.translator import Translator
    from seq2seq.serve import ServeSettings
    from seq2seq.serve.server import loader

    lines = [x for x in pool if x][:8]
    want = Translator.from_run_dirs([run_dir], "best", "cpu", precision="int8").translate(lines)
    with in_process(ServeSettings(), loader(run_dir, "best", "cpu", "int8")) as (url, _):
        wait_for(lambda: requests.get(url + "/health").status_code == 200)
        r = requests.post(url + "/v1/translate", json={"text": lines})
        assert r.status_code == 200 and [t[0]["text"] for t in r.json()["translations"]] == want, r.text
        assert requests.get(url + "/info").json()["decoding"]["search_precision"] == "int8"
