"""Recipe loading: YAML + key=value overrides, validation errors naming the key, stage stamps."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe_dict

from seq2seq import config as config_mod
from seq2seq.config.load import from_dict, load_config, parse_overrides, save_config
from seq2seq.config.schema import Config
from seq2seq.config.stamps import write_stamps
from seq2seq.config.values import resolve_key
from seq2seq.errors import UserError


def _write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------- loading


def test_load_recipe_values(tiny_recipe: Path, tmp_path: Path):
    cfg = load_config(tiny_recipe)
    assert isinstance(cfg, Config)
    assert cfg.name == "tiny"
    assert cfg.data.source == "embedded"
    assert cfg.data.embedded_sizes == {"train": 400, "dev": 20, "test": 20}
    assert cfg.spm.vocab_size == 120
    assert cfg.model.emb_dim == 16 and cfg.model.dropout == pytest.approx(0.1)
    assert cfg.train.max_steps == 12 and cfg.train.lr == pytest.approx(0.003)
    assert cfg.decode.beam_size == 3
    # untouched keys keep the dataclass defaults
    assert cfg.train.max_epochs == 50 and cfg.model.attention == "additive"
    assert cfg.data_dir == tmp_path / "corpus"
    assert cfg.run_path == tmp_path / "run"
    assert cfg.test_sets == ["test"]


def test_repo_recipes_load():
    root = Path(__file__).resolve().parents[2] / "recipes"
    cfg = load_config(root / "default.yaml")
    assert cfg.name == "default"
    assert cfg.train.lr_schedule == "cosine" and cfg.train.max_steps > 0


def test_name_defaults_to_file_stem(tmp_path: Path):
    values = tiny_recipe_dict(tmp_path)
    del values["name"]
    cfg = load_config(_write(tmp_path / "my-recipe.yaml", values))
    assert cfg.name == "my-recipe"


def test_explicit_name_wins_over_stem(tmp_path: Path):
    cfg = load_config(_write(tmp_path / "file.yaml", tiny_recipe_dict(tmp_path, name="chosen")))
    assert cfg.name == "chosen"


def test_default_dirs_follow_name(tmp_path: Path):
    cfg = from_dict({"name": "xyz"})
    assert cfg.data_dir == Path("data/xyz/corpus")
    assert cfg.run_path == Path("data/xyz/run")


def test_empty_recipe_is_all_defaults(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.name == "empty"
    assert cfg.to_dict() == dataclasses.replace(Config(), name="empty").to_dict()


def test_missing_recipe_file(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(UserError) as err:
        load_config(missing)
    assert "nope.yaml" in _one_line(err)


def test_invalid_yaml(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: {max_steps: 3\nmodel: [", encoding="utf-8")
    with pytest.raises(UserError) as err:
        load_config(path)
    assert "bad.yaml" in _one_line(err)


def test_recipe_not_a_mapping(tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(UserError, match="mapping"):
        load_config(path)


def test_section_not_a_mapping(tmp_path: Path):
    with pytest.raises(UserError, match="'train'"):
        load_config(_write(tmp_path / "r.yaml", {"train": 5}))


# ---------------------------------------------------------------- overrides


def test_bare_override(tiny_recipe: Path):
    cfg = load_config(tiny_recipe, ["max_steps=5"])
    assert cfg.train.max_steps == 5
    assert cfg.train.lr == pytest.approx(0.003)  # rest of the section is kept


def test_dotted_override(tiny_recipe: Path):
    cfg = load_config(tiny_recipe, ["train.max_steps=7", "model.dropout=0.25", "decode.beam_size=4"])
    assert cfg.train.max_steps == 7
    assert cfg.model.dropout == pytest.approx(0.25)
    assert cfg.decode.beam_size == 4
    assert cfg.model.emb_dim == 16  # merged, not replaced


def test_override_types(tiny_recipe: Path):
    cfg = load_config(
        tiny_recipe,
        [
            "precision=bf16",
            "lr=1e-4",
            "attention=general",
            "name=other",
            "dataset_config=null",
            "splits={train: a, dev: b, t1: c, t2: d}",
            "embedded_sizes={train: 4, dev: 1, t1: 1, t2: 1}",
        ],
    )
    assert cfg.train.precision == "bf16"
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.model.attention == "general"
    assert cfg.name == "other"
    assert cfg.data.dataset_config is None
    assert cfg.data.splits == {"train": "a", "dev": "b", "t1": "c", "t2": "d"}
    assert cfg.test_sets == ["t1", "t2"]


def test_override_empty_value_is_empty_string(tiny_recipe: Path):
    cfg = load_config(tiny_recipe, ["run_dir="])
    assert cfg.run_dir == ""


def test_override_later_wins(tiny_recipe: Path):
    cfg = load_config(tiny_recipe, ["max_steps=5", "train.max_steps=9"])
    assert cfg.train.max_steps == 9


def test_parse_overrides_nested():
    assert parse_overrides(["max_steps=3", "model.dropout=0.5", "name=x"]) == {
        "train": {"max_steps": 3},
        "model": {"dropout": 0.5},
        "name": "x",
    }


def test_override_without_equals(tiny_recipe: Path):
    with pytest.raises(UserError) as err:
        load_config(tiny_recipe, ["max_steps"])
    assert "max_steps" in _one_line(err)


def test_no_bare_key_is_ambiguous_today():
    owners: dict[str, list[str]] = {}
    for section, cls in config_mod.SECTIONS.items():
        for f in dataclasses.fields(cls):
            owners.setdefault(f.name, []).append(section)
    assert not [k for k, v in owners.items() if len(v) > 1]
    for key in owners:  # hence every bare key resolves to its one section
        assert resolve_key(key, config_mod.SECTIONS, ("name", "run_dir")) == (owners[key][0], key)


def test_ambiguous_bare_key(monkeypatch):
    # No real key is in two sections (see above); add a section that repeats one to exercise the check.
    @dataclasses.dataclass
    class Extra:
        max_steps: int = 0

    monkeypatch.setitem(config_mod.SECTIONS, "extra", Extra)
    with pytest.raises(UserError) as err:
        parse_overrides(["max_steps=5"])
    msg = _one_line(err)
    assert "ambiguous" in msg and "train.max_steps" in msg and "extra.max_steps" in msg
    assert parse_overrides(["train.max_steps=5"]) == {"train": {"max_steps": 5}}


# ---------------------------------------------------------------- errors that name the key


@pytest.mark.parametrize(
    "override, key",
    [
        ("no_such_key=1", "no_such_key"),
        ("train.no_such_key=1", "train.no_such_key"),
        ("nosection.max_steps=1", "nosection.max_steps"),
        ("train.max_steps.x=1", "train.max_steps.x"),
    ],
)
def test_unknown_override_key(tiny_recipe: Path, override: str, key: str):
    with pytest.raises(UserError) as err:
        load_config(tiny_recipe, [override])
    assert f"'{key}'" in _one_line(err)


def test_unknown_key_in_yaml_section(tmp_path: Path):
    path = _write(tmp_path / "r.yaml", tiny_recipe_dict(tmp_path, train={"max_stepz": 3}))
    with pytest.raises(UserError) as err:
        load_config(path)
    assert "'train.max_stepz'" in _one_line(err)


def test_unknown_top_level_key_in_yaml(tmp_path: Path):
    path = _write(tmp_path / "r.yaml", tiny_recipe_dict(tmp_path, optimizer={"lr": 1}))
    with pytest.raises(UserError) as err:
        load_config(path)
    assert "'optimizer'" in _one_line(err)


@pytest.mark.parametrize(
    "override, key",
    [
        ("max_steps=abc", "train.max_steps"),
        ("max_steps=1.5", "train.max_steps"),
        ("max_steps=true", "train.max_steps"),
        ("dropout=[1]", "model.dropout"),
        ("dropout=abc", "model.dropout"),
        ("precision=maybe", "train.precision"),
        ("src_lang=[en]", "data.src_lang"),
        ("splits=abc", "data.splits"),
    ],
)
def test_wrong_type_override(tiny_recipe: Path, override: str, key: str):
    with pytest.raises(UserError) as err:
        load_config(tiny_recipe, [override])
    assert f"'{key}'" in _one_line(err)


def test_wrong_type_in_yaml(tmp_path: Path):
    path = _write(tmp_path / "r.yaml", tiny_recipe_dict(tmp_path, model={"enc_layers": "two"}))
    with pytest.raises(UserError) as err:
        load_config(path)
    assert "'model.enc_layers'" in _one_line(err)


def test_integral_float_is_accepted_as_int(tiny_recipe: Path):
    assert load_config(tiny_recipe, ["max_steps=5.0"]).train.max_steps == 5


def test_checkpoint_must_be_a_plain_name(tiny_recipe: Path):
    assert load_config(tiny_recipe, ["checkpoint=average"]).decode.checkpoint == "average"
    for bad in ("../escape", "a/b", ".hidden"):
        with pytest.raises(UserError) as err:
            load_config(tiny_recipe, [f"checkpoint={bad}"])
        assert "'decode.checkpoint'" in _one_line(err)


@pytest.mark.parametrize(
    "override, key",
    [
        ("attention=foo", "model.attention"),
        ("source=ftp", "data.source"),
        ("model_type=word", "spm.model_type"),
        ("precision=fp8", "train.precision"),
        ("lr_schedule=step", "train.lr_schedule"),
        ("enc_cell=transformer", "model.enc_cell"),
        ("dec_cell=LSTM", "model.dec_cell"),
    ],
)
def test_bad_choice(tiny_recipe: Path, override: str, key: str):
    with pytest.raises(UserError) as err:
        load_config(tiny_recipe, [override])
    msg = _one_line(err)
    assert f"'{key}'" in msg and "not one of" in msg


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["batch_tokens=0"], "train.batch_tokens"),
        (["beam_size=-1"], "decode.beam_size"),
        (["max_steps=-1"], "train.max_steps"),
        (["dropout=1.0"], "model.dropout"),
        (["lr=0"], "train.lr"),
        (["n_best=5", "beam_size=2"], "decode.n_best"),
        (["share_embeddings=true", "joint=false"], "model.share_embeddings"),
        (["attention=dot"], "model.attention"),  # tiny recipe: dec_hidden 24 != 2 * enc_hidden 16
        (["lr_schedule=cosine", "max_steps=0"], "train.lr_schedule"),
        (["splits={train: a, test: b}"], "data.splits"),  # no dev split
        (["embedded_sizes={train: 5, dev: 5}"], "data.embedded_sizes"),
        (["source=hub"], "data.dataset"),
        (["source=jsonl"], "data.src_field"),
        (["attention=dot", "bidirectional=false", "dec_hidden=32"], "model.attention"),  # memory is 16 wide
        (["coverage=true", "attention=general"], "model.coverage"),
        (["coverage=true", "attention=none"], "model.coverage"),
        (["attention=none", "coverage_penalty=0.2"], "decode.coverage_penalty"),
        (["coverage_penalty=-0.1"], "decode.coverage_penalty"),
    ],
)
def test_validation_errors_name_key(tiny_recipe: Path, overrides: list[str], key: str):
    with pytest.raises(UserError) as err:
        load_config(tiny_recipe, overrides)
    assert f"'{key}'" in _one_line(err)


def test_dot_attention_with_matching_sizes_is_valid(tiny_recipe: Path):
    cfg = load_config(tiny_recipe, ["attention=dot", "dec_hidden=32"])
    assert cfg.model.attention == "dot"
    cfg = load_config(tiny_recipe, ["attention=dot", "dec_hidden=16", "bidirectional=false"])
    assert cfg.model.memory_dim == 16


def test_architecture_keys_default_to_the_original_model(tiny_recipe: Path):
    m = load_config(tiny_recipe).model
    assert (m.enc_cell, m.dec_cell, m.bidirectional, m.attention, m.coverage) == (
        "gru",
        "lstm",
        True,
        "additive",
        False,
    )
    assert load_config(tiny_recipe).decode.coverage_penalty == 0.0
    cfg = load_config(tiny_recipe, ["enc_cell=rnn", "dec_cell=gru", "attention=none", "coverage_penalty=0"])
    assert (cfg.model.enc_cell, cfg.model.dec_cell, cfg.model.attention) == ("rnn", "gru", "none")
    assert load_config(tiny_recipe, ["coverage=true", "coverage_penalty=0.4"]).model.coverage


def test_null_for_string_key_is_not_the_string_none(tmp_path: Path):
    values = tiny_recipe_dict(tmp_path)
    values["run_dir"] = None
    try:
        cfg = from_dict(values)
    except UserError as e:  # rejecting it is fine too
        assert "run_dir" in str(e)
        return
    assert cfg.run_dir != "None"


# ---------------------------------------------------------------- save / stamps


def test_save_config_round_trip(tiny_recipe: Path, tmp_path: Path):
    cfg = load_config(tiny_recipe, ["max_steps=3", "dataset_config=null"])
    out = tmp_path / "saved" / "config.yaml"
    save_config(cfg, out)
    again = load_config(out)
    assert again == cfg


def _stamp_state(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        p.name: (p.stat().st_mtime_ns, p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.yaml"))
    }


def _age(folder: Path) -> None:
    """Set every stamp's mtime far in the past so that a rewrite is visible regardless of clock resolution."""
    for p in folder.glob("*.yaml"):
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))


def test_write_stamps_creates_all_stages(tiny_recipe: Path, tmp_path: Path):
    folder = tmp_path / "stamps"
    cfg = load_config(tiny_recipe)
    write_stamps(cfg, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["data.yaml", "eval.yaml", "spm.yaml", "train.yaml"]
    assert set(yaml.safe_load((folder / "data.yaml").read_text())) == {"data"}
    assert set(yaml.safe_load((folder / "spm.yaml").read_text())) == {"data", "spm"}
    assert set(yaml.safe_load((folder / "train.yaml").read_text())) == {"data", "spm", "model", "train"}
    eval_stamp = yaml.safe_load((folder / "eval.yaml").read_text())
    assert set(eval_stamp) == {"data", "spm", "model", "train", "decode"}
    assert eval_stamp["decode"]["beam_size"] == 3


def test_write_stamps_unchanged_rewrites_nothing(tiny_recipe: Path, tmp_path: Path):
    folder = tmp_path / "stamps"
    write_stamps(load_config(tiny_recipe), folder)
    _age(folder)
    before = _stamp_state(folder)
    # a different name or run_dir is not part of any stage's settings
    write_stamps(load_config(tiny_recipe, ["name=renamed", f"run_dir={tmp_path / 'elsewhere'}"]), folder)
    assert _stamp_state(folder) == before


@pytest.mark.parametrize(
    "override, changed",
    [
        ("decode.beam_size=7", {"eval.yaml"}),
        ("train.max_steps=99", {"train.yaml", "eval.yaml"}),
        ("model.dropout=0.2", {"train.yaml", "eval.yaml"}),
        ("spm.vocab_size=200", {"spm.yaml", "train.yaml", "eval.yaml"}),
        ("data.embedded_seed=5", {"data.yaml", "spm.yaml", "train.yaml", "eval.yaml"}),
    ],
)
def test_write_stamps_rewrites_only_changed_stages(
    tiny_recipe: Path, tmp_path: Path, override: str, changed: set[str]
):
    folder = tmp_path / "stamps"
    write_stamps(load_config(tiny_recipe), folder)
    _age(folder)
    before = _stamp_state(folder)
    write_stamps(load_config(tiny_recipe, [override]), folder)
    after = _stamp_state(folder)
    assert set(after) == set(before)
    rewritten = {name for name in after if after[name][0] != before[name][0]}
    content_changed = {name for name in after if after[name][1] != before[name][1]}
    assert rewritten == changed
    assert content_changed == changed
    key, value = override.split("=")
    section, name = key.split(".")
    for stage in changed:
        assert str(yaml.safe_load(after[stage][1])[section][name]) == value


def test_string_overrides_keep_their_text(tiny_recipe: Path):
    """Values that are not YAML, or that YAML would turn into numbers, stay as written for string keys."""
    cfg = load_config(
        tiny_recipe, ["file_pattern={split}.{lang}.gz", "name=007", "url=https://x.invalid/a:b"]
    )
    assert cfg.data.file_pattern == "{split}.{lang}.gz" and cfg.name == "007"
    assert cfg.data.url == "https://x.invalid/a:b"


def test_every_number_in_a_recipe_has_a_checked_range():
    numeric = {
        f"{section}.{f.name}"
        for section, cls in config_mod.SECTIONS.items()
        for f in dataclasses.fields(cls)
        if f.type in ("int", "float", int, float)
    }
    numeric |= {  # the keys of every item of a list (data.sources.weight)
        f"{key}.{f.name}"
        for key, cls in config_mod.LIST_SECTIONS.items()
        for f in dataclasses.fields(cls)
        if f.type in ("int", "float", int, float)
    }
    assert numeric == set(config_mod.RANGES)
    for key, interval in config_mod.RANGES.items():  # the bounds themselves behave as written
        low, high = (float(x) for x in interval[1:-1].split(","))
        assert config_mod.in_range(low, interval) == (interval[0] == "["), key
        if high != float("inf"):
            assert config_mod.in_range(high, interval) == (interval[-1] == "]"), key


@pytest.mark.parametrize(
    "override, hint",
    [("max_step=10", "did you mean max_steps?"), ("train.max_stepz=1", "did you mean train.max_steps")],
)
def test_an_unknown_key_suggests_the_closest(tiny_recipe, override, hint):
    with pytest.raises(UserError, match=re.escape(hint)):
        load_config(tiny_recipe, [override])
