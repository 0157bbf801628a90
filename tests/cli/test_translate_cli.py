"""translate for daily use: answering a pipe line by line, JSON with attention, a heatmap per line,
the decoding flags, consistent flags (--format json, --checkpoint NAME|FILE, --n-best within the beam)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

from seq2seq.runs import checkpoint as ckpt_io

S2S = [sys.executable, "-m", "seq2seq"]


def run(*args, input: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*S2S, *map(str, args)], input=input, capture_output=True, text=True, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]


def read_line(stream, timeout: float = 120.0) -> str:
    """One line from a pipe, failing (not hanging) if none comes within ``timeout`` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no output line within {timeout} s"
    return stream.readline()


@pytest.mark.skipif(os.name != "posix", reason="select() on pipes")
def test_buffer_size_one_answers_each_line_before_input_closes(trained_run):
    cfg, _ = trained_run
    expected = ok(run("translate", cfg.run_path, input="two plus three\none is the\n")).stdout.split("\n")
    proc = subprocess.Popen(
        [*S2S, "translate", str(cfg.run_path), "--buffer-size", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    try:
        proc.stdin.write("two plus three\n")
        proc.stdin.flush()
        assert read_line(proc.stdout) == expected[0] + "\n"  # stdin is still open
        proc.stdin.write("one is the\n")
        proc.stdin.flush()
        assert read_line(proc.stdout) == expected[1] + "\n"
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_json_has_source_pieces_and_attention(trained_run):
    cfg, _ = trained_run
    out = ok(run("translate", cfg.run_path, "--format", "json", "--n-best", "2", input="two plus three\n\n"))
    first, empty = (json.loads(x) for x in out.stdout.splitlines())
    assert empty["hypotheses"] == [] and empty["source_tokens"] == ["</s>"]
    width = len(first["source_tokens"])
    assert first["source_tokens"][-1] == "</s>" and width >= 3
    assert len(first["hypotheses"]) == 2
    for h in first["hypotheses"]:
        rows = h["attention"]
        assert len(rows) in (len(h["tokens"]), len(h["tokens"]) + 1)  # + the EOS step when it ended so
        assert all(len(r) == width and abs(sum(r) - 1) < 1e-2 for r in rows)


def test_attention_dir_has_a_heatmap_per_line(trained_run, tmp_path):
    cfg, _ = trained_run
    out_dir = tmp_path / "attn"
    proc = ok(run("translate", cfg.run_path, "--attention", out_dir, input="two plus three\n\none is the\n"))
    assert len(proc.stdout.split("\n")) == 4
    assert sorted(p.name for p in out_dir.iterdir()) == ["line-000001.png", "line-000003.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 5000 for p in out_dir.iterdir())
    (tmp_path / "file").write_text("x")
    one_line_error(run("translate", cfg.run_path, "--attention", tmp_path / "file", input="x\n"), "folder")


def pieces(out: str) -> list[list[str]]:
    return [json.loads(x)["hypotheses"][0]["tokens"] for x in out.splitlines()]


LINES = "two plus three is five\none is the\nI have forty-two cats.\n"


def test_decoding_flags(trained_run):
    cfg, _ = trained_run
    base = ["translate", cfg.run_path, "--format", "json", "--beam-size", "2"]
    for toks in pieces(ok(run(*base, "--min-len", "6", input=LINES)).stdout):
        assert len(toks) >= 6
    for toks in pieces(ok(run(*base, "--no-repeat-ngram", "1", input=LINES)).stdout):
        assert len(set(toks)) == len(toks)
    short = pieces(ok(run(*base, "--max-len-ratio", "0.01", "--min-len", "50", input=LINES)).stdout)
    assert [len(t) for t in short] == [cfg.decode.max_len_offset] * 3  # int(0.01 * n) + offset pieces
    shorter = pieces(
        ok(
            run(*base, "--max-len-ratio", "0.01", "--max-len-offset", "2", "--min-len", "50", input=LINES)
        ).stdout
    )
    assert [len(t) for t in shorter] == [2] * 3
    sampled = [
        run("translate", cfg.run_path, "--sampling", "--topk", "5", "--temperature", "1.5", input=LINES * 4)
    ]
    sampled.append(
        run("translate", cfg.run_path, "--sampling", "--topk", "5", "--temperature", "1.5", input=LINES * 4)
    )
    assert ok(sampled[0]).stdout == ok(sampled[1]).stdout  # decode.sampling_seed: reproducible
    other = ok(run("translate", cfg.run_path, "--sampling", "--sampling-seed", "9", input=LINES * 4)).stdout
    assert len(other.split("\n")) == 13
    one_line_error(run(*base, "--temperature", "0", "--sampling", input=LINES), "decode.temperature")


def test_n_best_above_the_beam_is_an_error(trained_run):
    cfg, _ = trained_run
    one_line_error(
        run("translate", cfg.run_path, "--beam-size", "2", "--n-best", "3", input=LINES),
        "decode.n_best",
        "3",
        "2",
    )
    sampled = ok(
        run("translate", cfg.run_path, "--sampling", "--n-best", "3", "--format", "json", input=LINES)
    )
    assert all(len(json.loads(x)["hypotheses"]) == 3 for x in sampled.stdout.splitlines())


def test_checkpoint_is_a_name_or_a_compatible_file(trained_run, tmp_path):
    cfg, _ = trained_run
    by_name = ok(run("translate", cfg.run_path, "--checkpoint", "last", input=LINES)).stdout
    path = cfg.run_path / "checkpoints" / "last.pt"
    assert ok(run("translate", cfg.run_path, "--checkpoint", path, input=LINES)).stdout == by_name
    foreign = ckpt_io.load(path)
    foreign["tokenizers"] = "0" * 64  # trained with other SentencePiece models
    ckpt_io.save(tmp_path / "foreign.pt", foreign)
    one_line_error(
        run("translate", cfg.run_path, "--checkpoint", tmp_path / "foreign.pt", input=LINES),
        "foreign.pt",
        "SentencePiece",
    )
    one_line_error(
        run("translate", cfg.run_path, "--checkpoint", tmp_path / "nope.pt", input=LINES), "not found"
    )


def test_info_format_json(trained_run):
    cfg, _ = trained_run
    data = json.loads(ok(run("info", cfg.run_path, "--format", "json")).stdout)
    assert data["progress"]["step"] == 12
    assert (
        json.loads(ok(run("info", cfg.run_path, "--json")).stdout) == data
    )  # the older spelling still works
    assert "--json" not in ok(run("info", "--help")).stdout
