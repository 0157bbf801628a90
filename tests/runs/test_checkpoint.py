"""Checkpoints: round trip, versioning, atomic saves, and damaged or hostile files as one-line UserErrors."""

from __future__ import annotations

import builtins
import pickle

import pytest
import torch
from conftest import tiny_model

from seq2seq import fileio
from seq2seq.errors import UserError
from seq2seq.runs import checkpoint as ckpt_io


def payload(seed: int = 0) -> dict:
    model = tiny_model(seed, 30)
    return {
        "model": model.state_dict(),
        "src_vocab": 30,
        "tgt_vocab": 30,
        "config": {"model": {"emb_dim": 16}},
        "progress": {"step": 7, "best_bleu": 1.5},
        "rng_cpu": torch.get_rng_state(),
        "names": ["a", "b"],
    }


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- round trip ----------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "dir" / "model.pt"  # parent folders are created
    original = payload()
    ckpt_io.save(path, original)
    loaded = ckpt_io.load(path)
    assert loaded["format_version"] == ckpt_io.FORMAT_VERSION == 1
    assert set(loaded) == set(original) | {"format_version"}
    assert loaded["model"].keys() == original["model"].keys()
    for name, value in original["model"].items():
        assert torch.equal(loaded["model"][name], value), name
    assert torch.equal(loaded["rng_cpu"], original["rng_cpu"])
    for k in ("src_vocab", "tgt_vocab", "config", "progress", "names"):
        assert loaded[k] == original[k]
    # the loaded weights rebuild the same model
    model = tiny_model(1, 30)
    model.load_state_dict(loaded["model"])
    for name, value in model.state_dict().items():
        assert torch.equal(value, original["model"][name])
    assert leftovers(path.parent) == []


def test_format_version_is_written_into_the_file(tmp_path):
    path = tmp_path / "a.pt"
    ckpt_io.save(path, {"model": {}})
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == ckpt_io.FORMAT_VERSION


def test_other_format_version_is_refused(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format_version": ckpt_io.FORMAT_VERSION + 1, "model": {}}, path)
    with pytest.raises(UserError, match="format") as e:
        ckpt_io.load(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("obj", [{"model": {}}, {"format_version": 1}, {}])
def test_dict_without_the_required_keys_is_refused(tmp_path, obj):
    path = tmp_path / "partial.pt"
    torch.save(obj, path)
    with pytest.raises(UserError, match="not a seq2seq checkpoint") as e:
        ckpt_io.load(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(UserError, match="not found") as e:
        ckpt_io.load(path)
    assert str(path) in str(e.value)
    with pytest.raises(UserError):
        ckpt_io.load(tmp_path)  # a folder is not a checkpoint either


# ---- atomic saves (the writes themselves: test_fileio.py) ---------------------------------------


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "last.pt"
    ckpt_io.save(path, payload(0))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, failing, boom)
    with pytest.raises(UserError) as e:
        ckpt_io.save(path, payload(1))
    monkeypatch.undo()
    assert str(path) in str(e.value) and "No space left" in str(e.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"], "no temporary file is left behind"
    assert torch.equal(
        ckpt_io.load(path)["model"]["decoder.bridge.weight"], payload(0)["model"]["decoder.bridge.weight"]
    )


# ---- damaged and hostile files -------------------------------------------------------------------


def assert_refused(path):
    with pytest.raises(UserError) as e:
        ckpt_io.load(path)
    message = str(e.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "cut.pt"
    ckpt_io.save(path, payload())
    data = path.read_bytes()
    for size in (len(data) // 2, 100, 0):
        path.write_bytes(data[:size])
        assert_refused(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(
        bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist())
    )
    assert_refused(path)


def test_text_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  emb_dim: 16\n")
    assert_refused(path)


@pytest.mark.parametrize("obj", [[1, 2, 3], torch.zeros(3), "model", 42])
def test_torch_save_of_a_non_dict(tmp_path, obj):
    path = tmp_path / "list.pt"
    torch.save(obj, path)
    assert "not a seq2seq checkpoint" in assert_refused(path)


class Exploit:
    """Unpickling this calls exec(), which writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def test_exploit_really_runs_code_with_plain_pickle(tmp_path):
    """Sanity check of the exploit used below: an unrestricted unpickler does create the marker."""
    marker = tmp_path / "marker-plain"
    pickle.loads(pickle.dumps(Exploit(marker)))
    assert marker.is_file()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["pickle", "torch.save", "inside-dict"])
def test_code_in_a_pickle_is_never_run(tmp_path, how):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    if how == "pickle":
        with open(path, "wb") as f:
            pickle.dump(Exploit(marker), f)
    elif how == "torch.save":
        torch.save(Exploit(marker), path)
    else:  # a plausible checkpoint with the exploit hidden in one value
        torch.save({"format_version": 1, "model": {}, "extra": Exploit(marker)}, path)
    assert not marker.exists()
    assert_refused(path)
    assert not marker.exists(), "loading a checkpoint must never execute code"
