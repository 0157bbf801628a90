"""The Python API as a notebook uses it: ``from seq2seq import Translator``; load a run, translate."""

from __future__ import annotations

import subprocess
import sys

import pytest

from seq2seq.errors import UserError

LINES = ["two plus three is five", "", "I have forty-two cats."]


@pytest.fixture(scope="module")
def translator(trained_run):
    from seq2seq import Translator

    cfg, _ = trained_run
    return Translator.load(cfg.run_path)


def cli_translate(run, *flags, input: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", str(run), *flags],
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")[:-1]


def test_import_is_light_and_translator_loads_on_first_use():
    code = (
        "import sys, seq2seq; assert 'torch' not in sys.modules; "
        "from seq2seq import Translator, Translation; assert 'torch' in sys.modules; print(Translator.__name__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "Translator", proc.stderr


def test_translate_returns_strings_like_the_cli(translator, trained_run):
    cfg, _ = trained_run
    out = translator.translate(LINES, beam_size=3, n_best=1)
    assert isinstance(out, list) and len(out) == 3 and all(isinstance(x, str) for x in out)
    assert out[1] == ""
    assert out == cli_translate(cfg.run_path, "--beam-size", "3", input="".join(x + "\n" for x in LINES))
    assert translator.translate(LINES[0], beam_size=3) == out[0]  # one string in, one string out


def test_n_best_and_scores(translator):
    texts = translator.translate(LINES, beam_size=3, n_best=3)
    assert [len(x) for x in texts] == [3, 0, 3] and all(isinstance(t, str) for t in texts[0])
    scored = translator.translate(LINES, beam_size=3, n_best=3, with_scores=True)
    for plain, hyps in zip(texts, scored):
        assert [h.text for h in hyps] == plain
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert all(h.logprob <= 0 and isinstance(h.tokens, list) for h in hyps)
    best = translator.translate(LINES, beam_size=3, with_scores=True)
    assert [h[0].text if h else "" for h in best] == translator.translate(LINES, beam_size=3)


def test_overrides_are_checked_like_a_recipe_and_never_stick(translator):
    before = translator.cfg.decode
    with pytest.raises(UserError, match="decode.beam_siz"):
        translator.translate(LINES, beam_siz=5)
    with pytest.raises(UserError, match="decode.beam_size"):
        translator.translate(LINES, beam_size=0)
    with pytest.raises(UserError, match="decode.n_best"):
        translator.translate(LINES, beam_size=2, n_best=3)
    with pytest.raises(UserError, match="decode.temperature"):
        translator.translate(LINES, sampling=True, temperature="hot")
    assert translator.translate(LINES, beam_size="2") == translator.translate(LINES, beam_size=2)
    assert translator.cfg.decode == before


def test_sampling_through_the_api_is_seeded(trained_run):
    from seq2seq import Translator

    cfg, _ = trained_run
    a = Translator.load(cfg.run_path).translate(LINES * 3, sampling=True, sampling_seed=7, n_best=2)
    b = Translator.load(cfg.run_path).translate(LINES * 3, sampling=True, sampling_seed=7, n_best=2)
    assert a == b and [len(x) for x in a] == [2, 0, 2] * 3


def test_checkpoint_by_name_or_by_file(trained_run, tmp_path):
    from seq2seq import Translator

    cfg, _ = trained_run
    by_name = Translator.load(cfg.run_path, checkpoint="last").translate(LINES)
    by_file = Translator.load(cfg.run_path, checkpoint=str(cfg.run_path / "checkpoints" / "last.pt"))
    assert by_file.translate(LINES) == by_name
    assert Translator.load([cfg.run_path], checkpoint="last.pt").translate(LINES) == by_name
    with pytest.raises(UserError, match="checkpoint file not found"):
        Translator.load(cfg.run_path, checkpoint=str(tmp_path / "nope.pt"))


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried"
        ),
        MemoryError(),
    ],
)
def test_out_of_memory_while_decoding_is_one_line(translator, monkeypatch, error):
    """A beam or batch too large for the memory (a limit, a small GPU): a UserError naming what to lower."""
    import seq2seq.decode.translator as module

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(module, "decode_ids", fail)
    with pytest.raises(UserError, match=r"out of memory decoding with beam \d+ .*--beam-size"):
        translator.translate(["one is the"])
