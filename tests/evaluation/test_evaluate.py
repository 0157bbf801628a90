"""BLEU's tokenizer by target language, `seq2seq evaluate RUN_DIR --src --ref ...` on any files
(multi-reference, JSON), and a recipe without a test split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.bleu import bleu_tokenizer
from seq2seq.config.load import from_dict, load_config
from seq2seq.config.schema import CHOICES
from seq2seq.errors import UserError
from seq2seq.evaluation.metrics import score, score_refs

# two Chinese lines: no spaces between words, so 13a sees one "word" per sentence
ZH_HYPS = ["我喜欢吃苹果。", "今天天气很好。"]
ZH_REFS = ["我喜欢吃香蕉。", "今天天气很好。"]


def s2s(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.parametrize(
    "lang, setting, expected",
    [
        ("zh", "auto", "zh"),
        ("zh-CN", "auto", "zh"),
        ("ZH_Hant", "auto", "zh"),
        ("ja", "auto", "ja-mecab"),
        ("ko", "auto", "ko-mecab"),
        ("de", "auto", "13a"),
        ("en", "auto", "13a"),
        ("", "auto", "13a"),
        ("zh", "char", "char"),
        ("de", "intl", "intl"),
    ],
)
def test_bleu_tokenizer_follows_target_language(lang: str, setting: str, expected: str):
    assert bleu_tokenizer(lang, setting) == expected
    if setting == "auto" and lang in ("zh", "ja", "ko", "de"):  # sacreBLEU's own choice for trg_lang
        assert (
            sacrebleu.metrics.BLEU._TOKENIZER_MAP.get(lang, sacrebleu.metrics.BLEU.TOKENIZER_DEFAULT)
            == expected
        )


def test_bleu_tokenize_choices_are_sacrebleus():
    assert set(CHOICES["decode.bleu_tokenize"]) - {"auto"} <= set(sacrebleu.metrics.BLEU.TOKENIZERS)
    assert {"13a", "zh", "intl", "char", "none", "ja-mecab", "ko-mecab"} <= set(
        CHOICES["decode.bleu_tokenize"]
    )
    with pytest.raises(UserError) as err:
        from_dict({"decode": {"bleu_tokenize": "moses"}})
    assert "'decode.bleu_tokenize'" in str(err.value)


def test_chinese_bleu_uses_the_zh_tokenizer():
    zh, plain = score(ZH_HYPS, ZH_REFS, "zh"), score(ZH_HYPS, ZH_REFS, "en")
    assert "tok:zh" in zh["bleu_signature"] and "tok:13a" in plain["bleu_signature"]
    assert zh["bleu"] == round(sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="zh").score, 2)
    assert plain["bleu"] == round(sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS]).score, 2)
    assert zh["bleu"] > 50 and plain["bleu"] == 0.0  # 13a: each sentence is one "word", none match
    assert score(ZH_HYPS, ZH_REFS, "zh", "13a")["bleu"] == plain["bleu"]  # a recipe's choice wins


def test_multi_reference_score():
    hyps, refs = ["the cat sat on the mat"], [["the cat sat on a mat"], ["a cat sat on the mat"]]
    s = score_refs(hyps, refs)
    assert s["bleu"] == round(sacrebleu.corpus_bleu(hyps, refs).score, 2) and "nrefs:2" in s["bleu_signature"]
    assert s["bleu"] > score(hyps, refs[0])["bleu"]


def test_missing_tokenizer_package_is_one_line(monkeypatch):
    import seq2seq.config.bleu as ev
    from seq2seq.evaluation.metrics import score

    def no_mecab(**_kwargs):
        raise RuntimeError(
            "Japanese tokenization requires extra dependencies.\n\n    pip install sacrebleu[ja]\n"
        )

    monkeypatch.setattr(ev.sacrebleu.metrics, "BLEU", no_mecab)
    with pytest.raises(UserError) as err:
        score(["a"], ["a"], "ja")
    msg = str(err.value)
    assert (
        "\n" not in msg
        and "'ja-mecab'" in msg
        and "pip install sacrebleu[ja]" in msg
        and "bleu_tokenize" in msg
    )


def test_download_checks_the_bleu_tokenizer_before_anything(tmp_path: Path, monkeypatch):
    """A Japanese target without MeCab fails in the first stage, not at the first validation."""
    import seq2seq.config.bleu as ev
    from seq2seq.data.corpus import download

    def no_mecab(**_kwargs):
        raise RuntimeError(
            "Japanese tokenization requires extra dependencies.\n    pip install sacrebleu[ja]"
        )

    monkeypatch.setattr(ev.sacrebleu.metrics, "BLEU", no_mecab)
    cfg = from_dict(tiny_recipe_dict(tmp_path, data={"tgt_lang": "ja"}))
    with pytest.raises(UserError) as err:
        download(cfg, log=lambda _: None)
    assert "'ja-mecab'" in str(err.value) and not cfg.data_dir.exists()


def test_dev_bleu_of_training_uses_the_target_language(tmp_path: Path, monkeypatch):
    """The validation of the training loop scores with the recipe's target language and setting."""
    from seq2seq.data.corpus import download
    from seq2seq.data.tokenizer import train_tokenizers
    from seq2seq.training import loop
    from seq2seq.training.setup import build_trainer

    cfg = from_dict(tiny_recipe_dict(tmp_path, decode={"beam_size": 2, "bleu_tokenize": "char"}))
    download(cfg, log=lambda _: None)
    train_tokenizers(cfg)
    calls = []
    real = loop.score
    monkeypatch.setattr(loop, "score", lambda *a, **k: calls.append(a[2:]) or real(*a, **k))
    build_trainer(cfg, log=lambda _: None).validate()
    assert calls == [("de", "char")]


# ---------------------------------------------------------------- evaluate on any files


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evalrun")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp)), encoding="utf-8")
    for stage in ("download", "spm", "train"):
        proc = s2s(stage, recipe)
        assert proc.returncode == 0, proc.stderr
    return tmp


def test_evaluate_files_multi_reference_and_json(run: Path):
    src, ref = run / "corpus" / "test.en", run / "corpus" / "test.de"
    ref2 = run / "ref2.de"
    ref2.write_text(ref.read_text(encoding="utf-8").upper(), encoding="utf-8")
    out = run / "hyp.txt"
    proc = s2s("evaluate", run / "run", "--src", src, "--ref", ref, "--ref", ref2, "-o", out, "beam_size=2")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.splitlines()
    assert text[0].startswith(f"{src}: BLEU ") and "(20 sentences, beam 2" in text[0]
    assert text[1].strip().startswith("nrefs:2|case:mixed|eff:no|tok:13a") and "nrefs:2" in text[2]
    hyps = out.read_text(encoding="utf-8").split("\n")[:-1]
    refs = [p.read_text(encoding="utf-8").split("\n")[:-1] for p in (ref, ref2)]
    expected = sacrebleu.corpus_bleu(hyps, refs).score
    assert f"BLEU {expected:.2f}" in text[0]

    proc = s2s("evaluate", run / "run", "--src", src, "--ref", ref, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["sentences"] == 20 and result["references"] == [str(ref)]
    assert result["bleu_signature"].startswith("nrefs:1") and 0 <= result["bleu"] <= 100
    assert result["decode"]["beam_size"] == 3  # the run's own setting without an override
    again = json.loads(s2s("evaluate", run / "run", "--src", src, "--ref", ref, "--json").stdout)
    again.pop("decode_seconds"), result.pop("decode_seconds")
    assert again == result  # --json is --format json


@pytest.mark.parametrize(
    "args, needle",
    [
        (["{run}/run"], "give --src FILE --ref FILE"),
        (["{run}/run", "--src", "{run}/corpus/test.en"], "give --src FILE --ref FILE"),
        (
            ["{run}/run", "--src", "{run}/corpus/test.en", "--ref", "{run}/corpus/train.de"],
            "has 400 lines but",
        ),
        (["{run}/run", "--src", "{run}/nope.en", "--ref", "{run}/corpus/test.de"], "file not found"),
        (["{run}/tiny.yaml", "--src", "{run}/corpus/test.en"], "go with a run directory"),
        (
            ["{run}/corpus", "--src", "{run}/corpus/test.en", "--ref", "{run}/corpus/test.de"],
            "not a run directory",
        ),
    ],
)
def test_evaluate_files_errors_are_one_line(run: Path, args: list[str], needle: str):
    proc = s2s("evaluate", *[a.format(run=run) for a in args])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


def test_recipe_without_test_split_has_nothing_to_score(run: Path, tmp_path: Path):
    values = tiny_recipe_dict(run)
    values["data"].update(splits={"train": "train", "dev": "dev"}, embedded_sizes={"train": 400, "dev": 20})
    values["run_dir"] = str(tmp_path / "run")
    recipe = tmp_path / "notest.yaml"
    recipe.write_text(yaml.safe_dump(values), encoding="utf-8")
    assert load_config(recipe).test_sets == []
    proc = s2s("evaluate", recipe)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to score" in proc.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["tests"] == {} and "nothing to score" in results["note"]
    assert "nothing to score" in (tmp_path / "run" / "results.txt").read_text()  # what make train prints
