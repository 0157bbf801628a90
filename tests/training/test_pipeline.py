"""seq2seq run: every stage once, then only the stages whose settings changed."""

from __future__ import annotations

import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.load import load_config
from seq2seq.constants import checkpoint_file
from seq2seq.training.pipeline import run_pipeline


def test_run_skips_what_is_up_to_date_and_reruns_only_evaluate_for_a_decode_key(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path)), encoding="utf-8")
    lines: list[str] = []
    scores = run_pipeline(load_config(recipe), log=lines.append)
    assert "BLEU" in scores and "nrefs:1" in scores
    assert [line.split(":")[0] for line in lines if line.endswith(")") and ": running (" in line] == [
        "data",
        "spm",
        "train",
        "eval",
    ]
    best = checkpoint_file(tmp_path / "run", "best")
    mtime = best.stat().st_mtime_ns

    lines.clear()
    assert run_pipeline(load_config(recipe), log=lines.append) == scores
    assert lines == [f"{s}: up to date" for s in ("data", "spm", "train", "eval")]

    lines.clear()
    run_pipeline(load_config(recipe, ["beam_size=1"]), log=lines.append)
    assert [line for line in lines if "running" in line] == ["eval: running (eval settings changed)"]
    assert best.stat().st_mtime_ns == mtime

    lines.clear()
    run_pipeline(load_config(recipe, ["beam_size=1"]), until="spm", log=lines.append)
    assert lines == ["data: up to date", "spm: up to date"]
