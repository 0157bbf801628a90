"""rundir: the exclusive lock on a run directory, its ownership record, stale temporary files, and
reading its config.yaml. The CLI-level cases are rows of tests/cli/test_bad_input_safety.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.load import from_dict, load_config
from seq2seq.errors import UserError
from seq2seq.runs import ownership as rundir


def _recipe(path: Path, tmp_path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path)), encoding="utf-8")
    return path


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with rundir.lock(tmp_path, "train"):
        assert (tmp_path / ".lock").read_text().split() == [str(os.getpid()), "train"]
        with pytest.raises(UserError) as e:
            with rundir.lock(tmp_path, "spm"):
                pass
        assert f"PID {os.getpid()}, seq2seq train" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / ".lock").exists()  # released: the lock file is gone
    with rundir.lock(tmp_path, "spm"):  # and the folder can be taken again
        pass


def test_another_process_is_refused(tmp_path):
    code = (
        "import sys; from pathlib import Path; from seq2seq.runs import ownership as rundir\n"
        "try:\n"
        "    with rundir.lock(Path(sys.argv[1]), 'evaluate'): pass\n"
        "except Exception as e: print(e); sys.exit(3)\n"
    )
    with rundir.lock(tmp_path, "train"):
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 3 and f"PID {os.getpid()}" in proc.stdout


def test_a_stale_lock_file_of_a_killed_process_does_not_block(tmp_path):
    (tmp_path / ".lock").write_text("999999 train\n")  # nobody holds the flock on it
    with rundir.lock(tmp_path, "spm"):
        assert (tmp_path / ".lock").read_text().split()[1] == "spm"


def test_only_rank_0_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with rundir.claim(tmp_path / "run", None, "train"):
        assert not (tmp_path / "run").exists()  # nothing created, nothing locked


def test_a_stage_needing_an_existing_folder_creates_none(tmp_path):
    with rundir.claim(tmp_path / "missing", None, "eval", create=False):
        pass
    assert not (tmp_path / "missing").exists()


def test_ownership_is_recorded_on_success_only(tmp_path):
    cfg = load_config(_recipe(tmp_path / "a" / "tiny.yaml", tmp_path))
    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with rundir.claim(run, cfg, "spm"):
            raise RuntimeError("the stage failed")
    assert not (run / rundir.OWNER).exists()
    with rundir.claim(run, cfg, "spm"):
        pass
    owner = rundir.read_owner(run)
    assert owner["recipe"] == {"path": str(tmp_path / "a" / "tiny.yaml"), "relative": "../a/tiny.yaml"}
    assert owner["stages"]["spm"]["spm"]["vocab_size"] == 120


def test_another_recipe_of_the_same_name_is_refused(tmp_path):
    a = load_config(_recipe(tmp_path / "a" / "tiny.yaml", tmp_path))
    b = load_config(_recipe(tmp_path / "b" / "tiny.yaml", tmp_path))
    with rundir.claim(a.run_path, a, "spm"):
        pass
    with pytest.raises(UserError, match="belongs to recipe .*a/tiny.yaml, not .*b/tiny.yaml.*run_dir="):
        with rundir.claim(b.run_path, b, "train"):
            pass
    with rundir.claim(
        a.run_path, from_dict(tiny_recipe_dict(tmp_path)), "train"
    ):  # built in code: not refused
        pass


def test_the_same_recipe_after_moving_recipe_and_run_together(tmp_path):
    old = tmp_path / "old"
    cfg = load_config(_recipe(old / "recipes" / "tiny.yaml", old), [f"run_dir={old / 'data' / 'run'}"])
    with rundir.claim(cfg.run_path, cfg, "spm"):
        pass
    new = tmp_path / "new"
    old.rename(new)
    moved = load_config(new / "recipes" / "tiny.yaml", [f"run_dir={new / 'data' / 'run'}"])
    with rundir.claim(moved.run_path, moved, "train"):  # same path relative to the run: its own
        pass


def test_spm_settings_are_checked_only_while_checkpoints_depend_on_them(tmp_path):
    recipe = _recipe(tmp_path / "tiny.yaml", tmp_path)
    cfg = load_config(recipe)
    with rundir.claim(cfg.run_path, cfg, "spm"):
        pass
    owner = rundir.read_owner(cfg.run_path)
    other = load_config(recipe, ["spm.vocab_size=90"])
    rundir.check_spm(cfg.run_path, other, owner)  # no checkpoints yet: retraining harms nothing
    (cfg.run_path / "checkpoints").mkdir()
    (cfg.run_path / "checkpoints" / "best.pt").write_bytes(b"x")
    with pytest.raises(UserError, match=r"spm.vocab_size 120 -> 90"):
        rundir.check_spm(cfg.run_path, other, owner)
    rundir.check_spm(cfg.run_path, cfg, owner)  # the same settings: fine


def test_stale_temporary_files_are_removed_under_the_lock(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    nested = tmp_path / "checkpoints" / f".last.pt.{proc.pid}-abcdefgh.tmp"
    legacy = tmp_path / ".config.yaml.abcdefgh.tmp"
    live = tmp_path / f".best.pt.{os.getpid()}-abcdefgh.tmp"
    for p in (nested, legacy, live):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    with rundir.claim(tmp_path, None, "train"):
        assert not nested.exists() and not legacy.exists() and live.exists()


@pytest.mark.parametrize(
    "content, needle",
    [
        ("", "is empty"),
        ("model: [\n", "not valid YAML"),
        ("- a\n", "mapping"),
        ("train: {lr: -1}\n", "damaged"),
    ],
)
def test_a_damaged_run_config_is_one_line(tmp_path, content, needle):
    (tmp_path / "config.yaml").write_text(content)
    with pytest.raises(UserError, match=needle) as e:
        rundir.load_run_config(tmp_path)
    assert "\n" not in str(e.value)


def test_a_file_system_without_locks_is_one_line(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    with pytest.raises(UserError, match=r"could not lock .*\.lock: No locks available"):
        with rundir.lock(tmp_path, "train"):
            pass
