"""Model folders: export -> load -> translate equals the run, the card's numbers, damage and strangers
refused, and hf:// references resolved through a Hugging Face cache (no network)."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import pytest
import yaml

from seq2seq.cli import main
from seq2seq.decode import model_folder as mf
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.fileio import file_sha256

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def evaluated(trained_run, tmp_path_factory):
    """(config, run copy with results.json, exported model folder, test source lines)."""
    from seq2seq.evaluation.stage import evaluate
    from seq2seq.share import export

    cfg, _ = trained_run
    tmp = tmp_path_factory.mktemp("share")
    run = tmp / "run"
    shutil.copytree(cfg.run_path, run)
    cfg = dataclasses.replace(cfg, run_dir=str(run))
    evaluate(cfg, log=lambda *_: None)
    (
        run / "train.log"
    ).write_text(  # the fixture trains silently: the lines a logged run begins and ends with
        "2026-01-01 10:00:00 training: 17,800 parameters, 400 training pairs, device cpu, 2 threads\n"
        "2026-01-01 10:05:30 finished at step 12 (budget reached)\n"
    )
    folder = export(run, tmp / "model", log=lambda *_: None)
    src = (cfg.data_dir / "test.en").read_text(encoding="utf-8").splitlines()
    return cfg, run, folder, src


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    return out


def test_export_load_translate_equals_the_run(evaluated, tmp_path):
    cfg, run, folder, src = evaluated
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.yaml",
        "seq2seq.json",
        "spm",
        "weights.safetensors",
    ]
    assert not list(folder.rglob("*.pt")) and not list(tmp_path.parent.glob(".model.*.tmp"))
    expected = Translator.load(run).translate(src)
    assert Translator.load(folder).translate(src) == expected
    assert Translator.load(str(folder), device="cpu").translate(src, beam_size=1) == Translator.load(
        run
    ).translate(src, beam_size=1)
    # the command line: byte-identical output files
    inp = tmp_path / "in.en"
    inp.write_text("".join(x + "\n" for x in src), encoding="utf-8")
    for name, model in (("run", run), ("folder", folder)):
        main(["translate", str(model), "-i", str(inp), "-o", str(tmp_path / f"{name}.de")])
    assert (tmp_path / "run.de").read_bytes() == (tmp_path / "folder.de").read_bytes()


def test_evaluate_takes_a_folder(evaluated, capsys):
    cfg, run, folder, _ = evaluated
    from seq2seq.evaluation.stage import evaluate_files

    src, ref = cfg.data_dir / "test.en", cfg.data_dir / "test.de"
    on_run, hyps_run = evaluate_files(run, src, [ref])
    on_folder, hyps_folder = evaluate_files(folder, src, [ref])
    assert hyps_run == hyps_folder
    assert (on_folder["bleu"], on_folder["chrf"], on_folder["ter"]) == (
        on_run["bleu"],
        on_run["chrf"],
        on_run["ter"],
    )
    assert on_folder["checkpoint"] == str(folder) and "ter_signature" in on_folder


def test_the_card_comes_from_results_and_config(evaluated):
    from seq2seq.model.network import count_parameters

    cfg, run, folder, _ = evaluated
    text = (folder / "README.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))["tests"]["test"]
    assert meta["language"] == ["en", "de"] and "translation" in meta["tags"]
    assert meta["license"] == "unknown" and meta["pipeline_tag"] == "translation"
    (entry,) = meta["model-index"]
    (res,) = entry["results"]
    assert res["dataset"]["split"] == "test"
    values = {m["type"]: m["value"] for m in res["metrics"]}
    assert values == {"bleu": results["bleu"], "chrf": results["chrf"], "ter": results["ter"]}
    assert (
        results["bleu_signature"] in body
        and results["chrf_signature"] in body
        and results["ter_signature"] in body
    )
    row = f"| test | {results['sentences']} | {results['bleu']:.2f} | {results['chrf']:.2f} | {results['ter']:.2f} |"
    assert row in body
    model = Translator.load(folder).models[0]
    assert f"{count_parameters(model):,} parameters" in body
    manifest = json.loads((cfg.data_dir / "manifest.json").read_text())["files"]
    assert f"| train | {manifest['train.en']['lines']:,} |" in body
    assert f"at most {cfg.train.max_len} pieces" in body
    assert f"beam {cfg.decode.beam_size}" in body and "trained on: cpu, 2 threads" in body
    assert "training time: 5 min 30 s" in body
    # the folder's config: the run's settings, local paths removed
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert (
        config["model"] == dataclasses.asdict(cfg.model)
        and config["run_dir"] == ""
        and config["data"]["dir"] == ""
    )
    manifest = json.loads((folder / "seq2seq.json").read_text())
    assert manifest["format_version"] == mf.FORMAT_VERSION and manifest["precision"] == "fp32"
    assert manifest["quantization"] is None and manifest["exported_from"]["step"] == cfg.train.max_steps


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_or_truncated_weights(evaluated, tmp_path, damage):
    folder = _copy(evaluated[2], tmp_path)
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) - 100]
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="weights.safetensors is damaged or was changed"):
        Translator.load(folder)
    # even with the manifest's hash updated, safetensors itself refuses a cut file
    if damage == "truncate":
        manifest = json.loads((folder / "seq2seq.json").read_text())
        manifest["files"]["weights.safetensors"] = file_sha256(weights)
        (folder / "seq2seq.json").write_text(json.dumps(manifest))
        with pytest.raises(UserError, match="does not hold this model's parameters"):
            Translator.load(folder)


def test_a_pickle_is_never_unpickled(evaluated, tmp_path):
    """A weights file that is a pickle (with a matching hash): refused without running it."""
    folder = _copy(evaluated[2], tmp_path)
    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    (folder / "weights.safetensors").write_bytes(pickle.dumps(Evil()))
    manifest = json.loads((folder / "seq2seq.json").read_text())
    manifest["files"]["weights.safetensors"] = file_sha256(folder / "weights.safetensors")
    (folder / "seq2seq.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="does not hold"):
        Translator.load(folder)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(format_version=2), "format version 2; this seq2seq reads version 1 \\(upgrade"),
        (lambda m: m.update(format="something-else"), "is not a seq2seq model folder"),
        (lambda m: m.update(quantization="int8"), "holds int8 weights"),
        (lambda m: m["files"].update({"../x": "0"}), "names a file outside the folder"),
    ],
)
def test_manifest_checks(evaluated, tmp_path, change, message):
    folder = _copy(evaluated[2], tmp_path)
    manifest = json.loads((folder / "seq2seq.json").read_text())
    change(manifest)
    (folder / "seq2seq.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=message):
        Translator.load(folder)


def test_missing_file_and_strangers(evaluated, tmp_path):
    folder = _copy(evaluated[2], tmp_path)
    (folder / "spm" / "joint.model").unlink()
    with pytest.raises(UserError, match="spm/joint.model is missing"):
        Translator.load(folder)
    with pytest.raises(UserError, match="one set of weights"):
        Translator.load(evaluated[2], checkpoint="last")
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "config.json").write_text("{}")
    (stranger / "seq2seq.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="is not a seq2seq model folder"):
        Translator.load(stranger)


def test_export_refuses_other_folders_and_replaces_its_own(evaluated, tmp_path, capsys):
    from seq2seq.share import export

    run = evaluated[1]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a model folder"):
        export(run, busy)
    assert (busy / "notes.txt").read_text() == "mine"
    out = export(run, tmp_path / "m", checkpoint="last", license="mit", log=lambda *_: None)
    export(run, out, log=lambda *_: None)  # over its own earlier export
    assert json.loads((out / "seq2seq.json").read_text())["exported_from"]["checkpoint"] == "best"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "m"]  # no temporary folder left
    with pytest.raises(SystemExit) as e:
        main(["export", str(out), "-o", str(tmp_path / "again")])
    assert e.value.code == 2 and "already a model folder" in capsys.readouterr().err


# ---------------------------------------------------------------- hf://


def hub_cache(cache: Path, folder: Path, repo: str = "someone/tiny-en-de") -> Path:
    """The Hugging Face cache layout that ``hf download`` leaves: blobs, a snapshot of symlinks, refs/main."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / COMMIT
    for f in folder.rglob("*"):
        if f.is_file():
            blob = root / "blobs" / file_sha256(f)
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, blob)
            link = snap / f.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path("../" * len(f.relative_to(folder).parts) + "..") / "blobs" / blob.name)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    return snap


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache in tmp_path, and no request can leave the machine."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: connection refused
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(mf, "_resolved", {})
    return cache


def test_hf_reference_from_the_cache_offline(evaluated, hub, monkeypatch, tmp_path):
    cfg, run, folder, src = evaluated
    hub_cache(hub, folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = Translator.load(run).translate(src)
    assert Translator.load("hf://someone/tiny-en-de").translate(src) == expected
    assert Translator.load(f"hf://someone/tiny-en-de@{COMMIT}").translate(src) == expected
    assert mf.describe("hf://someone/tiny-en-de") == f"hf://someone/tiny-en-de@{COMMIT}"
    # the command line takes it too, and evaluate records the pinned revision
    from seq2seq.evaluation.stage import evaluate_files

    results, hyps = evaluate_files(
        Path("hf://someone/tiny-en-de"), cfg.data_dir / "test.en", [cfg.data_dir / "test.de"]
    )
    assert results["checkpoint"] == f"hf://someone/tiny-en-de@{COMMIT}" and hyps == expected
    out = tmp_path / "out.de"
    main(["translate", "hf://someone/tiny-en-de", "-i", str(cfg.data_dir / "test.en"), "-o", str(out)])
    assert out.read_text(encoding="utf-8").splitlines() == expected


def test_hf_reference_without_network_uses_the_cache(evaluated, hub):
    """Not offline by setting, but the Hub cannot be reached: the cached snapshot is used."""
    _, run, folder, src = evaluated
    hub_cache(hub, folder)
    assert Translator.load("hf://someone/tiny-en-de").translate(src) == Translator.load(run).translate(src)


def test_hf_reference_not_cached(hub, monkeypatch, capsys):
    with pytest.raises(
        UserError, match="the Hugging Face Hub cannot be reached and the Hugging Face cache holds no"
    ):
        Translator.load("hf://someone/absent")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as e:
        main(["translate", "hf://someone/other", "-i", "/dev/null"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "HF_HUB_OFFLINE is set and the Hugging Face cache holds no snapshot" in err


def test_hf_repo_that_is_not_ours(hub, monkeypatch, tmp_path):
    other = tmp_path / "transformers-model"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "marian"}')
    (other / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    (other / "README.md").write_text("---\ntags: [translation]\n---\n")
    hub_cache(hub, other, "Helsinki-NLP/opus-mt-en-de")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        UserError, match=f"hf://Helsinki-NLP/opus-mt-en-de@{COMMIT} is not a seq2seq model folder"
    ):
        Translator.load("hf://Helsinki-NLP/opus-mt-en-de")
