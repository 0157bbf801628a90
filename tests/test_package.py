"""The package as pip builds it: its distribution name and licence, every imported dependency
declared, the recipes inside it, and `seq2seq recipes` working from the installed files alone."""

from __future__ import annotations

import ast
import email
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"yaml": "pyyaml", "huggingface_hub": "huggingface-hub"}


def _third_party_imports() -> set[str]:
    names = set()
    for path in (ROOT / "seq2seq").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("seq2seq", "__future__")}


def test_every_imported_package_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    imported = {DISTRIBUTIONS.get(n, n) for n in _third_party_imports()}
    assert {"numpy", "torch", "pyarrow"} <= imported
    assert imported <= declared, imported - declared
    assert project["name"] == "seq2seq-nmt" and project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_repository_recipes_folder_is_the_packaged_one():
    assert (ROOT / "recipes").resolve() == (ROOT / "seq2seq" / "recipes").resolve()
    assert (ROOT / "recipes" / "default.yaml").is_file()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available in this Python")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("seq2seq_nmt-*.whl")
    return path


def test_wheel_metadata_and_recipes(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.message_from_string(
            z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        )
    assert meta["Name"] == "seq2seq-nmt" and meta["License-Expression"] == "MIT"
    requires = " ".join(meta.get_all("Requires-Dist"))
    for dep in ("torch", "numpy", "pyarrow", "sacrebleu", "datasets", "sentencepiece"):
        assert dep in requires
    shipped = {Path(n).name for n in names if n.startswith("seq2seq/recipes/")}
    assert shipped == {p.name for p in (ROOT / "seq2seq" / "recipes").glob("*.yaml")}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_package_lists_and_copies_recipes(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}  # the unpacked wheel only, not the checkout
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "seq2seq", *a],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    where = subprocess.run(
        [sys.executable, "-c", "import seq2seq; print(seq2seq.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert where.stdout.strip().startswith(str(site))
    listed = run("recipes")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(
        p.stem for p in (ROOT / "seq2seq" / "recipes").glob("*.yaml")
    )
    copied = run("recipes", "default", "-o", "mine")
    assert (
        copied.returncode == 0
        and (tmp_path / "mine" / "default.yaml").read_text()
        == (ROOT / "recipes" / "default.yaml").read_text()
    )
    again = run("recipes", "default", "-o", "mine")
    assert again.returncode == 2 and "exists" in again.stderr and "--force" in again.stderr
    assert run("recipes", "nope").stderr.startswith("error: no shipped recipe 'nope' (have: default,")
    assert run("--version").stdout.strip() == "seq2seq, version " + __import__("seq2seq").__version__


def test_building_the_package_warns_about_no_ignored_package(tmp_path):
    """setuptools' ~45-line "Package would be ignored" warning at `make setup` looked like a broken install."""
    root = ROOT
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            str(root),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    if proc.returncode != 0:
        pytest.skip(f"no wheel could be built here: {proc.stderr.strip().splitlines()[-1:]}")
    assert "would be ignored" not in proc.stdout + proc.stderr

    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert "seq2seq/recipes/default.yaml" in names and any(
        n.startswith("seq2seq/serve/static/") for n in names
    )


def test_the_gpu_session_script_names_files_that_exist():
    """benchmarks/gpu_session.sh --dry-run: one JSON line per figure a GPU session owes, whose scripts,
    recipes and test files exist (it ran tests/test_devices.py after that file had moved)."""
    root = ROOT
    out = subprocess.run(
        ["bash", "benchmarks/gpu_session.sh", "--dry-run"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    plan = [json.loads(line) for line in out.stdout.splitlines()]
    figures = {p["figure"] for p in plan}
    assert {"gpu_tests", "train_tokens_per_s", "decode_sentences_per_s", "multi30k_de_en_dev_bleu"} <= figures
    for p in plan:
        assert all((root / f).is_file() for f in p["files"]), p
    script = (root / "benchmarks" / "gpu_session.sh").read_text()
    assert all(
        (root / word).is_file()
        for word in script.split()
        if word.startswith("tests/") and word.endswith(".py")
    )
