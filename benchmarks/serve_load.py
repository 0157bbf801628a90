"""seq2seq serve under load: N concurrent clients for T seconds against a local server, next to offline
translate of the same sentences with the same run.

    python benchmarks/serve_load.py --run data/multi30k-de-en-cpu/run --clients 32 --seconds 30

Prints (stderr: progress; stdout: a table, then one JSON line):
- offline: the sentences through translate's own function (``translate_lines``, the run's batch size,
  in chunks of translate's 2000 lines), model load excluded: sentences/s and target tokens/s;
- idle: one-sentence requests one after the other (the sentence nearest 13 words): p50/p95 latency;
- load: ``--clients`` threads, each posting ``--lines`` sentences per request with keep-alive for
  ``--seconds``: requests/s, sentences/s, target tokens/s, p50/p95/p99 latency, errors.

Target tokens are the outputs re-encoded with the run's target SentencePiece model (the same count
for both sides). The clients run in this process, on the same CPUs as the server: on a 2-core machine
they take a share of it (say so when comparing with offline throughput).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from _common import ROOT, CpuShare, busy_warning, cpu_name, cpuinfo, emit, info, loadavg, resolve

FLAGS_SHOWN = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "neon")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline(run: Path, sentences: list[str], beam: int | None, threads: int) -> dict:
    """translate's own path (translate_lines, 2000-line chunks), the model loaded once, untimed."""
    import torch

    from seq2seq.translate import TranslateIO, translate_lines
    from seq2seq.translator import Translator

    if threads:
        torch.set_num_threads(threads)
    translator = Translator.load(run, device="cpu")
    dc = translator.decode_config(beam_size=beam, n_best=1)
    io = TranslateIO(fmt="text")
    translate_lines(translator, dc, io, sentences[:8], 1)  # warm-up
    start = time.perf_counter()
    out = []
    for i in range(0, len(sentences), 2000):
        out += translate_lines(translator, dc, io, sentences[i : i + 2000], i + 1)
    seconds = time.perf_counter() - start
    tokens = sum(len(x) for x in translator.tgt_tok.encode(out))
    return {
        "sentences": len(sentences),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sentences) / seconds, 1),
        "target_tokens_per_s": round(tokens / seconds, 1),
        "beam_size": dc.beam_size,
        "batch_size": dc.batch_size,
        "torch_threads": torch.get_num_threads(),
    }


def start_server(run: Path, port: int, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "seq2seq", "serve", str(run), "--port", str(port), *args]
    info("starting: " + " ".join(cmd[1:]))
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited with status {proc.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("the server was not ready after 120 s")


def idle_latency(url: str, sentence: str, beam: int | None, count: int) -> dict:
    body = {"text": [sentence], **({"beam_size": beam} if beam else {})}
    times = []
    with requests.Session() as s:
        for i in range(count + 3):
            t = time.perf_counter()
            r = s.post(url + "/v1/translate", json=body, timeout=60)
            if i >= 3:  # the first ones warm up
                times.append(time.perf_counter() - t)
            r.raise_for_status()
    return {
        "requests": count,
        "words": len(sentence.split()),
        "p50_ms": round(1000 * percentile(times, 50), 1),
        "p95_ms": round(1000 * percentile(times, 95), 1),
    }


def load(url: str, sentences: list[str], clients: int, seconds: float, lines: int, beam: int | None, tgt_tok):
    results: list[tuple[float, int, list[str]]] = []  # (latency, status, outputs)
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    extra = {"beam_size": beam} if beam else {}

    def client(k: int):
        i = k * 7919 % len(sentences)
        mine = []
        with requests.Session() as s:
            while time.monotonic() < stop:
                batch = [sentences[(i + j) % len(sentences)] for j in range(lines)]
                i += lines
                t = time.perf_counter()
                try:
                    r = s.post(url + "/v1/translate", json={"text": batch, **extra}, timeout=120)
                    status, out = r.status_code, (r.json()["lines"] if r.ok else [])
                except (requests.RequestException, ValueError):
                    status, out = 0, []
                mine.append((time.perf_counter() - t, status, out))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = [r for r in results if r[1] == 200]
    outputs = [x for r in ok for x in r[2]]
    tokens = sum(len(x) for x in tgt_tok.encode(outputs))
    lat = [r[0] for r in ok]
    return {
        "clients": clients,
        "lines_per_request": lines,
        "seconds": round(wall, 2),
        "requests": len(results),
        "errors": len(results) - len(ok),
        "requests_per_s": round(len(ok) / wall, 1),
        "sentences_per_s": round(len(outputs) / wall, 1),
        "target_tokens_per_s": round(tokens / wall, 1),
        "p50_ms": round(1000 * percentile(lat, 50), 1),
        "p95_ms": round(1000 * percentile(lat, 95), 1),
        "p99_ms": round(1000 * percentile(lat, 99), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a trained run directory")
    p.add_argument("--sentences", default=None, help="one sentence per line (default: the run's test source)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--lines", type=int, default=1, help="sentences per request (default %(default)s)")
    p.add_argument("--beam-size", type=int, default=None, help="default: the run's")
    p.add_argument("--idle-requests", type=int, default=50)
    p.add_argument("--threads", type=int, default=0, help="torch threads, offline and server (0: default)")
    p.add_argument("--server-args", default="", help="more seq2seq serve options, e.g. '--max-wait-ms 10'")
    a = p.parse_args()

    from seq2seq.rundir import load_run_config
    from seq2seq.tokenizer import load_tokenizers

    run = resolve(a.run)
    cfg = load_run_config(run)
    path = resolve(a.sentences) if a.sentences else cfg.data_dir / f"test.{cfg.data.src_lang}"
    sentences = [x for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    if not sentences:
        sys.exit(f"no sentences in {path}")
    tgt_tok = load_tokenizers(run, cfg.spm.joint)[1]
    fields = cpuinfo()
    flags = [f for f in fields.get("flags", fields.get("Features", "")).split() if f in FLAGS_SHOWN]
    info(f"{len(sentences)} sentences from {path}; CPU {cpu_name()}, {os.cpu_count()} logical CPUs")

    share = CpuShare()
    info("offline translate ...")
    off = offline(run, sentences, a.beam_size, a.threads)
    busy_warning(share.other_busy(), "offline translate")

    port = free_port()
    server_args = (["--threads", str(a.threads)] if a.threads else []) + a.server_args.split()
    proc = start_server(run, port, server_args)
    url = f"http://127.0.0.1:{port}"
    try:
        one = min(sentences, key=lambda x: abs(len(x.split()) - 13))
        info("idle latency ...")
        idle = idle_latency(url, one, a.beam_size, a.idle_requests)
        info(f"{a.clients} clients for {a.seconds:g} s ...")
        loaded = load(url, sentences, a.clients, a.seconds, a.lines, a.beam_size, tgt_tok)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    ratio = loaded["sentences_per_s"] / off["sentences_per_s"]
    print(f"CPU: {cpu_name()}; {os.cpu_count()} logical CPUs; flags: {' '.join(flags) or '-'}")
    print(
        f"run: {run} (beam {off['beam_size']}, batch {off['batch_size']}, torch threads {off['torch_threads']})"
    )
    print(
        f"offline translate: {off['sentences_per_s']} sentences/s, {off['target_tokens_per_s']} target tokens/s"
    )
    print(f"idle server, one {idle['words']}-word sentence: p50 {idle['p50_ms']} ms, p95 {idle['p95_ms']} ms")
    print(
        f"server, {loaded['clients']} clients x {loaded['lines_per_request']} line(s): "
        f"{loaded['requests_per_s']} requests/s, {loaded['sentences_per_s']} sentences/s "
        f"({ratio:.0%} of offline), {loaded['target_tokens_per_s']} target tokens/s, latency p50 "
        f"{loaded['p50_ms']} / p95 {loaded['p95_ms']} / p99 {loaded['p99_ms']} ms, errors {loaded['errors']} "
        f"of {loaded['requests']}; server exit status {code}"
    )
    emit(
        {
            "bench": "serve_load",
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "flags": flags,
            "loadavg_1m": loadavg(),
            "offline": off,
            "idle": idle,
            "load": loaded,
            "server_vs_offline": round(ratio, 3),
            "server_exit": code,
        }
    )


if __name__ == "__main__":
    main()
