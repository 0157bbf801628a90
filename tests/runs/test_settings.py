"""A run's settings are its own: overrides given to train are remembered, a disagreement names every key
at once, and a finished run's config.yaml is never rewritten by a run that trains nothing."""

from __future__ import annotations

import pytest
import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.load import load_config
from seq2seq.constants import CONFIG, checkpoint_file
from seq2seq.data.corpus import download
from seq2seq.data.tokenizer import train_tokenizers
from seq2seq.errors import UserError
from seq2seq.runs.settings import decode_overrides, load_for_run
from seq2seq.training.setup import train

QUIET = lambda *_: None  # noqa: E731


@pytest.fixture
def finished(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path, train={"max_steps": 6})), encoding="utf-8")
    cfg = load_for_run(recipe, ("max_len=40",))
    download(cfg, log=QUIET)
    train_tokenizers(cfg, log=QUIET)
    train(cfg, log=QUIET)
    return recipe, cfg


def test_overrides_given_to_train_are_kept_for_later_stages(finished, capsys):
    recipe, _ = finished
    cfg = load_for_run(recipe)
    assert cfg.train.max_len == 40
    assert "was trained with max_len=40 (kept)" in capsys.readouterr().err
    assert load_for_run(recipe, ("max_len=30",)).train.max_len == 30  # given now: wins


def test_a_finished_run_given_other_settings_names_every_key_and_keeps_config_yaml(finished):
    recipe, cfg = finished
    saved = (cfg.run_path / CONFIG).read_bytes()
    with pytest.raises(UserError) as err:
        train(load_for_run(recipe, ("max_len=12", "label_smoothing=0.2")), log=QUIET)
    message = str(err.value)
    assert "train.max_len: 40 in the run, 12 given" in message and "train.label_smoothing" in message
    assert "\n" not in message
    assert (cfg.run_path / CONFIG).read_bytes() == saved
    train(load_for_run(recipe), log=QUIET)  # the same settings: nothing to do, nothing rewritten
    assert (cfg.run_path / CONFIG).read_bytes() == saved


def test_resuming_with_other_model_keys_names_them_all_at_once(finished):
    recipe, cfg = finished
    assert checkpoint_file(cfg.run_path, "last").is_file()
    with pytest.raises(UserError) as err:
        train(load_config(recipe, ["max_len=40", "max_steps=12", "emb_dim=8", "dec_hidden=8"]), log=QUIET)
    assert "model.emb_dim" in str(err.value) and "model.dec_hidden" in str(err.value)


def test_translate_overrides_decode_keys_free_other_keys_must_match(finished):
    _, cfg = finished
    assert decode_overrides(cfg.run_path, ("n_best=2", "max_len=40", "run_dir=x")) == {"n_best": 2}
    with pytest.raises(UserError, match="train.max_len: 40 in the run, 12 given; model.emb_dim"):
        decode_overrides(cfg.run_path, ("max_len=12", "emb_dim=8"))
