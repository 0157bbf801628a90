"""Back-translation end to end on the embedded corpus: a reverse run (de -> en) trained for a few steps
translates held-apart German into synthetic English, and an en -> de run trains on the real pairs and
the tagged synthetic ones as two weighted corpora."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seq2seq.config.load import load_config
from seq2seq.data.corpus import read_split
from seq2seq.data.embedded import generate
from seq2seq.data.tokenizer import load_tokenizers
from seq2seq.decode.back_translate import back_translate
from seq2seq.errors import UserError
from seq2seq.training.pipeline import run_pipeline, stale_reason
from seq2seq.training.setup import source_shares
from tests.conftest import tiny_recipe_dict


def _quiet(_msg: str) -> None:
    pass


def _write(folder: Path, stem: str, lang: str, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.{lang}").write_text("".join(x + "\n" for x in lines), encoding="utf-8")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Real en-de pairs (real.*, dev.*) and German text held apart from them (mono.de)."""
    folder = tmp_path_factory.mktemp("bt") / "corpus"
    pairs = generate({"train": 360, "dev": 20}, seed=3)
    real, held = pairs["train"][:300], pairs["train"][300:]
    for stem, rows in (("real", real), ("dev", pairs["dev"])):
        _write(folder, stem, "en", [a for a, _ in rows])
        _write(folder, stem, "de", [b for _, b in rows])
    _write(folder, "mono", "de", [b for _, b in held] + [""])  # an empty line is left out
    return folder


def _recipe(folder: Path, name: str, data: dict) -> Path:
    values = tiny_recipe_dict(folder / name, name=name, data=data, train={"max_steps": 6, "valid_every": 6})
    values["decode"] = {"beam_size": 2, "batch_size": 16}
    if "sources" in data:  # not the tiny recipe's embedded corpus keys beside them
        values["data"] = data
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.mark.slow
def test_back_translation_end_to_end(corpus: Path, tmp_path: Path):
    reverse = load_config(
        _recipe(
            tmp_path,
            "reverse",
            {
                "source": "text",
                "src_lang": "de",
                "tgt_lang": "en",
                "url": str(corpus),
                "splits": {"train": "real", "dev": "dev"},
                "dir": str(tmp_path / "reverse-corpus"),
            },
        )
    )
    run_pipeline(reverse, until="train", log=_quiet)

    sources = [
        {"name": "real", "kind": "text", "url": str(corpus), "splits": {"train": "real", "dev": "dev"}},
        {
            "name": "bt",
            "kind": "text",
            "url": str(tmp_path / "synthetic"),
            "mirror": False,
            "splits": {"train": "bt"},
            "tag": "<BT>",
            "weight": 0.5,
        },
    ]
    data = {"src_lang": "en", "tgt_lang": "de", "sources": sources, "dir": str(tmp_path / "bt-corpus")}
    cfg = load_config(_recipe(tmp_path, "forward", data))
    written = back_translate(
        cfg, "bt", reverse.run_path, str(corpus / "mono.de"), skip=10, sampling=True, topk=5, log=_quiet
    )
    synthetic = (tmp_path / "synthetic" / "bt.en").read_text(encoding="utf-8").splitlines()
    mono = (tmp_path / "synthetic" / "bt.de").read_text(encoding="utf-8").splitlines()
    assert written == len(synthetic) == len(mono) and 0 < written <= 50
    given = iter((corpus / "mono.de").read_text(encoding="utf-8").splitlines()[10:])
    assert all(line in given for line in mono)  # in order; lines whose translation is empty left out
    assert all(synthetic)
    record = json.loads((tmp_path / "synthetic" / "bt.back-translation.json").read_text(encoding="utf-8"))
    assert record["skip"] == 10 and record["decode"]["sampling"] and record["decode"]["topk"] == 5
    again = back_translate(
        cfg, "bt", reverse.run_path, str(corpus / "mono.de"), skip=10, sampling=True, topk=5, log=_quiet
    )
    assert again is None  # the same call: nothing written

    run_pipeline(cfg, until="train", log=_quiet)
    manifest = json.loads((cfg.data_dir / "manifest.json").read_text(encoding="utf-8"))
    assert [(s["name"], s["pairs"]) for s in manifest["sources"]] == [
        ("real", {"train": 300, "dev": 20}),
        ("bt", {"train": written}),
    ]
    src, tgt = read_split(cfg, "train")
    assert src[300:] == [f"<BT> {line}" for line in synthetic] and tgt[300:] == mono
    assert [w for _, w in source_shares(cfg)] == [1.0, 0.5]
    src_tok, _ = load_tokenizers(cfg.run_path)
    assert src_tok.pieces(src[300])[:2] == ["\u2581", "<BT>"]  # the tag is one piece
    assert (cfg.run_path / "checkpoints" / "best.pt").is_file()
    assert "an epoch by the sources' weights" in (cfg.run_path / "train.log").read_text(encoding="utf-8")
    assert stale_reason(cfg, "data") is None
    later = os.stat(cfg.data_dir / "manifest.json").st_mtime + 5
    os.utime(tmp_path / "synthetic" / "bt.en", (later, later))
    assert "bt.en is newer than the corpus" in stale_reason(cfg, "data")


def test_back_translation_needs_a_reverse_run_and_a_text_source(trained_run, tmp_path: Path):
    trained_cfg, _ = trained_run  # en -> de
    sources = [
        {
            "name": "real",
            "kind": "embedded",
            "splits": {"train": "train", "dev": "dev"},
            "embedded_sizes": {"train": 10, "dev": 5},
        },
        {"name": "bt", "kind": "text", "url": str(tmp_path / "out"), "splits": {"train": "bt"}},
    ]
    mono = tmp_path / "mono.de"
    mono.write_text("eins\n", encoding="utf-8")
    data = {"src_lang": "en", "tgt_lang": "de", "sources": sources, "dir": str(tmp_path / "c")}
    cfg = load_config(_recipe(tmp_path, "fwd", data))
    with pytest.raises(
        UserError, match="translates en -> de; back-translation for en -> de needs a de -> en"
    ):
        back_translate(cfg, "bt", trained_cfg.run_path, str(mono), log=_quiet)
    with pytest.raises(UserError, match="back-translations are written as plain text files"):
        back_translate(cfg, "real", trained_cfg.run_path, str(mono), log=_quiet)
    with pytest.raises(UserError, match="no source 'nope'"):
        back_translate(cfg, "nope", trained_cfg.run_path, str(mono), log=_quiet)
    with pytest.raises(UserError, match="monolingual input not found"):
        back_translate(cfg, "bt", trained_cfg.run_path, str(tmp_path / "none.de"), log=_quiet)


@pytest.mark.slow
def test_the_command_is_thin_and_its_errors_one_line(tmp_path: Path):
    data = {"src_lang": "en", "tgt_lang": "de", "dir": str(tmp_path / "c")}
    recipe = _recipe(tmp_path, "single", data)
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", "back-translate", str(recipe), "--source", "bt"]
        + ["--model", str(tmp_path), "--input", "mono.de"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1  # a UserError
    assert "no source 'bt' in data.sources of single (sources: none" in proc.stderr
