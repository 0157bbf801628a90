"""The smallest recipe of each corpus kind (docs/data.md, linked from the README's "Your own corpus"),
each run end to end on a tiny generated corpus, and
`seq2seq new-recipe`: what it writes, its checks, and a pipeline run on what it wrote."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from seq2seq.config.load import from_dict, load_config
from seq2seq.config.recipes import field_docs, shipped_values
from seq2seq.config.schema import SECTIONS, Config
from seq2seq.data.corpus import download, read_split
from seq2seq.data.embedded import generate
from seq2seq.data.new_recipe import NewRecipe, new_recipe
from seq2seq.data.tokenizer import train_tokenizers
from seq2seq.errors import UserError
from seq2seq.evaluation.stage import evaluate
from seq2seq.training.setup import train

DATA_DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"
SIZES = {"train": 300, "dev": 12, "test": 12}
# a few steps of a tiny model: the recipes' own model sizes are for real corpora
TINY = [
    "spm.vocab_size=100",
    "emb_dim=16",
    "enc_hidden=16",
    "enc_layers=1",
    "dec_hidden=24",
    "attn_dim=16",
    "batch_tokens=400",
    "max_steps=4",
    "valid_every=4",
    "log_every=2",
    "samples=0",
    "beam_size=2",
    "decode.batch_size=8",
]


def _pairs(seed: int = 3) -> dict[str, list[tuple[str, str]]]:
    """(German, English) pairs per split: the embedded generator's (English, German), turned round."""
    return {s: [(de, en) for en, de in rows] for s, rows in generate(SIZES, seed).items()}


def _write_corpus(folder: Path, kind: str, pairs=None, stems=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (pairs or _pairs()).items():
        stem = folder / (stems or {}).get(split, split)
        if kind == "text":
            stem.with_name(stem.name + ".de").write_text(
                "".join(de + "\n" for de, _ in rows), encoding="utf-8"
            )
            stem.with_name(stem.name + ".en").write_text(
                "".join(en + "\n" for _, en in rows), encoding="utf-8"
            )
        elif kind == "tsv":
            stem.with_name(stem.name + ".tsv").write_text(
                "".join(f"{de}\t{en}\n" for de, en in rows), encoding="utf-8"
            )
        elif kind == "jsonl":
            text = "".join(json.dumps({"de": de, "en": en}, ensure_ascii=False) + "\n" for de, en in rows)
            stem.with_name(stem.name + ".jsonl").write_text(text, encoding="utf-8")


def _write_hub_mirror(mirror: Path) -> None:
    """wmt/wmt16 as `hf download --include "de-en/*" --local-dir` leaves it: per-config parquet shards."""
    for split, rows in _pairs().items():
        shards = [rows[: len(rows) // 2], rows[len(rows) // 2 :]] if split == "train" else [rows]
        for i, part in enumerate(shards):
            path = (
                mirror
                / "de-en"
                / f"{split if split != 'dev' else 'validation'}-{i:05d}-of-{len(shards):05d}.parquet"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"translation": [{"de": de, "en": en} for de, en in part]}), path)


def readme_recipes() -> dict[str, str]:
    """The YAML blocks of docs/data.md's "The smallest recipe of each kind", by the file name in their
    first line."""
    text = DATA_DOC.read_text(encoding="utf-8")
    section = text[text.index("## The smallest recipe of each kind") :] + "\n## "
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    return {re.match(r"# (\S+\.yaml)", b).group(1): b for b in blocks}


def _pipeline(recipe: Path, mirror=None) -> tuple[Config, dict]:
    cfg = load_config(recipe, TINY)
    download(cfg, mirror=mirror, log=lambda _: None)
    train_tokenizers(cfg)
    train(cfg, log=lambda _: None)
    return cfg, evaluate(cfg, log=lambda _: None)


def _check_run(cfg: Config, results: dict, pairs) -> None:
    assert read_split(cfg, "train") == ([de for de, _ in pairs["train"]], [en for _, en in pairs["train"]])
    assert (cfg.run_path / "checkpoints" / "best.pt").is_file()
    test = results["tests"]["test"]
    assert test["sentences"] == SIZES["test"] and test["bleu_signature"].startswith("nrefs:1|case:mixed")


def test_readme_has_the_four_recipes():
    sources = {name: yaml.safe_load(text)["data"]["source"] for name, text in readme_recipes().items()}
    assert sources == {
        "my-text.yaml": "text",
        "my-tsv.yaml": "tsv",
        "my-jsonl.yaml": "jsonl",
        "my-hub.yaml": "hub",
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["my-text.yaml", "my-tsv.yaml", "my-jsonl.yaml", "my-hub.yaml"])
def test_readme_recipe_end_to_end(name: str, tmp_path: Path):
    recipe = tmp_path / name
    recipe.write_text(readme_recipes()[name], encoding="utf-8")
    kind = yaml.safe_load(recipe.read_text())["data"]["source"]
    mirror = None
    if kind == "hub":
        mirror = tmp_path / "mirrors" / "wmt16"
        _write_hub_mirror(mirror)
    else:
        _write_corpus(tmp_path / "corpus", kind)
    cfg, results = _pipeline(recipe, mirror)
    assert cfg.data_dir == Path("data") / recipe.stem / "corpus"
    _check_run(cfg, results, _pairs())


# ---------------------------------------------------------------- new-recipe


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch):
    """Every recipe here puts its data/<name>/ under the folder seq2seq runs in: tmp_path."""
    monkeypatch.chdir(tmp_path)


def _spec(tmp_path: Path, kind: str, test: bool = True, **kw) -> NewRecipe:
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, kind)
    prefixes = {s: str(corpus / s) for s in ("train", "dev", "test") if test or s != "test"}
    return NewRecipe("mine", "de", "en", prefixes, output=tmp_path / "mine.yaml", **kw)


def test_new_recipe_spells_out_every_key_with_its_comment(tmp_path: Path):
    path = new_recipe(_spec(tmp_path, "text", size="gpu"))[0]
    shipped = from_dict(shipped_values("multi30k-en-de")).to_dict()
    text = path.read_text(encoding="utf-8")
    cfg = load_config(path)
    assert cfg.data.source == "text" and cfg.data.url == str(tmp_path / "corpus")
    assert cfg.data.splits == {"train": "train", "dev": "dev", "test": "test"}
    values = yaml.safe_load(text)
    for section, cls in SECTIONS.items():
        if section != "data":
            assert values[section] == shipped[section]  # every key of the shipped GPU recipe, spelled out
            assert set(values[section]) == {f for f in cls.__dataclass_fields__}
    lines = text.splitlines()
    for key, docs in field_docs().items():
        if key.startswith("data.sources."):  # the keys of one corpus of data.sources, commented out
            name = key.split(".")[-1]
            at = next(i for i, line in enumerate(lines) if re.match(rf"  #   (- |  ){name}:", line))
            assert [line.removeprefix("  #     # ") for line in lines[at - len(docs) : at]] == docs, key
            continue
        section, name = key.split(".")
        if section == "data" and name not in values["data"]:
            continue
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  {name}:"))
        above = [line.strip()[2:] for line in lines[at - len(docs) : at]]
        assert above == docs, key  # the comment of config.py, right above its key
    assert "# per direction" in text and "  enc_hidden: 256" in text


@pytest.mark.parametrize(
    "size, cuda, shipped",
    [
        ("cpu", True, "multi30k-en-de-cpu"),
        ("gpu", False, "multi30k-en-de"),
        ("", False, "multi30k-en-de-cpu"),
        ("", True, "multi30k-en-de"),
    ],
)
def test_new_recipe_size_picks_the_shipped_settings_and_says_why(tmp_path, monkeypatch, size, cuda, shipped):
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    path, why = new_recipe(_spec(tmp_path, "text", size=size))
    expected = from_dict(shipped_values(shipped)).to_dict()
    assert load_config(path).to_dict()["model"] == expected["model"]
    assert shipped in why and (size or ("a GPU is visible" if cuda else "no GPU is visible")) in why
    assert why in path.read_text()


def test_new_recipe_like_takes_another_recipes_settings(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("model: {emb_dim: 24, dec_hidden: 40}\ntrain: {max_steps: 7}\n")
    path, why = new_recipe(_spec(tmp_path, "text", like=str(other)))
    cfg = load_config(path)
    assert (cfg.model.emb_dim, cfg.model.dec_hidden, cfg.train.max_steps) == (24, 40, 7)
    assert str(other) in why
    with pytest.raises(UserError, match="--size or --like"):
        new_recipe(_spec(tmp_path, "text", like=str(other), size="cpu", force=True))


def test_new_recipe_paths_are_relative_to_the_recipe_and_work_from_anywhere(tmp_path, monkeypatch):
    _write_corpus(tmp_path / "corpus", "text")
    prefixes = {s: f"corpus/{s}" for s in ("train", "dev")}
    path, _ = new_recipe(NewRecipe("mine", "de", "en", prefixes, output=tmp_path / "recipes" / "mine.yaml"))
    assert yaml.safe_load(path.read_text())["data"]["url"] == "../corpus"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(path).data.url == str(tmp_path / "corpus")


def test_an_old_recipe_with_working_folder_paths_still_loads_with_one_warning(tmp_path, capsys):
    _write_corpus(tmp_path / "corpus", "text")
    (tmp_path / "recipes").mkdir()
    old = tmp_path / "recipes" / "old.yaml"
    old.write_text(
        "data: {source: text, src_lang: de, tgt_lang: en, url: corpus, splits: {train: train, dev: dev}}\n"
    )
    assert load_config(old).data.url == "corpus"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: data.url 'corpus'") and "'../corpus'" in err[0]


@pytest.mark.parametrize(
    "kind, header, fields",
    [
        ("tsv", None, ("0", "1")),
        ("tsv", "de\ten", ("de", "en")),
        ("tsv", "EN\tDE", ("DE", "EN")),
        ("jsonl", None, ("de", "en")),
        ("jsonl", "nested", ("translation.de", "translation.en")),
    ],
)
def test_new_recipe_finds_columns_and_fields(tmp_path: Path, kind: str, header, fields):
    spec = _spec(tmp_path, kind)
    for split in ("train", "dev", "test"):
        path = tmp_path / "corpus" / f"{split}.{kind}"
        if header == "nested":
            rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
            path.write_text("".join(json.dumps({"translation": r}) + "\n" for r in rows), encoding="utf-8")
        elif header:
            lines = path.read_text(encoding="utf-8").splitlines()
            if header.startswith("EN"):
                lines = ["\t".join(reversed(x.split("\t"))) for x in lines]
            path.write_text(header + "\n" + "".join(x + "\n" for x in lines), encoding="utf-8")
    cfg = load_config(new_recipe(spec)[0])
    assert (cfg.data.source, cfg.data.src_field, cfg.data.tgt_field) == (kind, *fields)
    download(cfg, log=lambda _: None)
    assert read_split(cfg, "dev")[0] == [de for de, _ in _pairs()["dev"]]  # German is the source


def test_new_recipe_without_test_split_and_in_several_folders(tmp_path: Path):
    _write_corpus(tmp_path / "a", "text", stems={"train": "big"})
    _write_corpus(tmp_path / "b", "text")
    spec = NewRecipe(
        "x", "de", "en", {"train": str(tmp_path / "a" / "big"), "dev": str(tmp_path / "b" / "dev")}
    )
    spec.output = tmp_path
    cfg = load_config(new_recipe(spec)[0])
    assert cfg.test_sets == [] and cfg.data.url == ""
    assert cfg.data.splits == {"train": str(tmp_path / "a" / "big"), "dev": str(tmp_path / "b" / "dev")}
    download(cfg, log=lambda _: None)
    assert len(read_split(cfg, "train")[0]) == SIZES["train"]


def test_new_recipe_gzip_text(tmp_path: Path):
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, "text")
    for p in corpus.iterdir():
        p.with_name(p.name + ".gz").write_bytes(gzip.compress(p.read_bytes()))
        p.unlink()
    spec = NewRecipe(
        "g", "de", "en", {s: str(corpus / s) for s in ("train", "dev")}, output=tmp_path / "g.yaml"
    )
    assert load_config(new_recipe(spec)[0]).data.file_pattern == "{split}.{lang}.gz"


@pytest.mark.parametrize(
    "change, needle",
    [
        ("missing", "found neither"),
        ("mixed", "every split must be the same kind of file"),
        ("exists", "exists: remove it or pass --force"),
        ("jsonl-fields", "pass --src-field and --tgt-field"),
    ],
)
def test_new_recipe_errors(tmp_path: Path, change: str, needle: str):
    spec = _spec(tmp_path, "jsonl" if change == "jsonl-fields" else "text")
    if change == "missing":
        spec.prefixes["dev"] = str(tmp_path / "corpus" / "nope")
    elif change == "mixed":
        _write_corpus(tmp_path / "other", "tsv")
        spec.prefixes["dev"] = str(tmp_path / "other" / "dev")
    elif change == "exists":
        spec.output.write_text("keep me\n")
    else:
        spec.src_lang = "fr"
    with pytest.raises(UserError) as err:
        new_recipe(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)
    if change == "exists":
        assert spec.output.read_text() == "keep me\n"
        spec.force = True
        assert load_config(new_recipe(spec)[0]).data.source == "text"


@pytest.mark.slow
def test_new_recipe_cli_then_pipeline(tmp_path: Path):
    _write_corpus(tmp_path / "corpus", "tsv")
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", "new-recipe", "ours", "--src-lang", "de", "--tgt-lang", "en"]
        + ["--train", "corpus/train", "--dev", "corpus/dev", "--test", "corpus/test.tsv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("wrote ours.yaml; next: seq2seq run ours.yaml")
    cfg = load_config(tmp_path / "ours.yaml")
    assert (cfg.data.url, cfg.data.file_pattern, cfg.data.src_field) == ("corpus", "{split}.tsv", "0")
    cfg, results = _pipeline(Path("ours.yaml"))
    _check_run(cfg, results, _pairs())
