"""seq2seq quantize and decode.search_precision on the tiny trained run: the int8 file (where, what, how big),
translating it (API and CLI) equals quantizing on load, bf16 where native, and the refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from seq2seq.decode.int8 import quantize_run
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.model.precision import cpu_has_native_bf16
from seq2seq.model.quantized import QUANTIZATION, is_int8
from seq2seq.runs import checkpoint as ckpt_io

LINES = ["two plus three", "one is the", "", "four five six seven"]


@pytest.fixture(scope="module")
def int8_file(trained_run):
    cfg = trained_run[0]
    path, size, fp32 = quantize_run(cfg.run_path, "best")
    return cfg, path, size, fp32


def test_quantize_writes_an_int8_checkpoint_beside_best(int8_file):
    cfg, path, size, fp32 = int8_file
    assert path == cfg.run_path / "checkpoints" / "best-int8.pt"
    ckpt = ckpt_io.load(path)
    assert ckpt["quantization"] == QUANTIZATION
    assert ckpt["model"]["decoder.output.weight"].dtype == torch.int8
    assert ckpt["tokenizers"] == ckpt_io.load(cfg.run_path / "checkpoints" / "best.pt")["tokenizers"]
    assert size == path.stat().st_size and 0 < size < fp32
    assert not list(path.parent.glob("*.tmp*"))


def test_the_int8_file_translates_as_quantizing_on_load(int8_file):
    cfg = int8_file[0]
    from_file = Translator.from_run_dirs([cfg.run_path], "best-int8", "cpu")
    on_load = Translator.from_run_dirs([cfg.run_path], "best", "cpu", precision="int8")
    assert is_int8(from_file.searcher("off", "auto")) and is_int8(on_load.searcher("off", "int8"))
    fp32 = Translator.load(cfg.run_path, device="cpu")
    assert is_int8(Translator.load(cfg.run_path, device="cpu", precision="int8").searcher("off", "int8"))
    assert not is_int8(fp32.searcher("off", "auto"))
    for dc in (None, {"beam_size": 1}):
        opts = dc or {}
        a = from_file.translate(LINES, with_scores=True, **opts)
        b = on_load.translate(LINES, with_scores=True, **opts)
        assert [[(t.text, t.score) for t in x] for x in a] == [[(t.text, t.score) for t in x] for x in b]
    assert fp32.translate(LINES, search_precision="int8") == on_load.translate(LINES)


def test_precision_refusals(int8_file):
    cfg, path = int8_file[:2]
    with pytest.raises(UserError, match="the checkpoint is int8"):
        Translator.from_run_dirs([cfg.run_path], "best-int8", "cpu", precision="fp32")
    with pytest.raises(UserError, match="already an int8 checkpoint"):
        quantize_run(cfg.run_path, "best-int8")
    with pytest.raises(UserError, match="belongs to training"):
        quantize_run(cfg.run_path, "best", cfg.run_path / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match="int8 checkpoint: average the fp32"):
        ckpt_io.average([path, cfg.run_path / "checkpoints" / "best.pt"], cfg.run_path / "x.pt")
    translator = Translator.from_run_dirs([cfg.run_path], "best-int8", "cpu")
    with pytest.raises(UserError, match="int8 models are not compiled"):
        translator.translate(LINES, compile_search="default")


def test_bf16_translates_where_native_and_is_one_line_elsewhere(trained_run):
    cfg = trained_run[0]
    if cpu_has_native_bf16():
        t = Translator.from_run_dirs([cfg.run_path], "best", "cpu", precision="bf16")
        assert len(t.translate(LINES)) == len(LINES)
    else:
        with pytest.raises(UserError, match="decode.search_precision.*no native bf16"):
            Translator.from_run_dirs([cfg.run_path], "best", "cpu", precision="bf16")


def s2s(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_cli_quantize_then_translate_and_export_refuses(trained_run, tmp_path):
    cfg = trained_run[0]
    out = tmp_path / "small.pt"
    proc = s2s("quantize", cfg.run_path, "-o", out)
    assert proc.returncode == 0 and "% of the fp32 parameters" in proc.stdout, proc.stderr
    src = "\n".join(LINES) + "\n"
    by_file = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", cfg.run_path, "--checkpoint", out],
        input=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    on_load = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", cfg.run_path, "--precision", "int8"],
        input=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert by_file.returncode == 0 and on_load.returncode == 0, by_file.stderr + on_load.stderr
    assert by_file.stdout == on_load.stdout and len(by_file.stdout.split("\n")) == len(LINES) + 1
    proc = s2s("export", cfg.run_path, "--checkpoint", out, "-o", tmp_path / "folder")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "int8 checkpoint" in lines[0], proc.stderr


def test_evaluate_takes_the_precision_override(int8_file, tmp_path):
    from seq2seq.evaluation.stage import evaluate_files

    cfg = int8_file[0]
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("two plus three\none is the\n", encoding="utf-8")
    ref.write_text("fünf\ndrei\n", encoding="utf-8")
    results, hyps = evaluate_files(cfg.run_path, src, [ref], overrides=("decode.search_precision=int8",))
    assert results["decode"]["search_precision"] == "int8" and len(hyps) == 2
    want = Translator.from_run_dirs([cfg.run_path], "best-int8", "cpu").translate(
        ["two plus three", "one is the"]
    )
    assert hyps == want


def test_fine_tuning_from_an_int8_checkpoint_is_refused(int8_file, tmp_path):
    from dataclasses import replace

    from seq2seq.data.tokenizer import load_tokenizers
    from seq2seq.training.finetune import parent_weights

    cfg, path = int8_file[:2]
    child = replace(cfg, run_dir=str(tmp_path / "child"), train=replace(cfg.train, init_from=str(path)))
    toks = load_tokenizers(cfg.run_path, cfg.spm.joint)
    with pytest.raises(UserError, match="is an int8 checkpoint: fine-tune from an fp32 one"):
        parent_weights(child, toks)
