"""seq2seq compare: sacreBLEU's own paired tests, the same numbers as its command line; errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.cli import main
from seq2seq.compare import compare, format_compare
from seq2seq.errors import UserError

WORDS = "the a cat dog sat on mat house red blue green big small runs sleeps eats fish bird tree".split()


def _systems(tmp_path: Path, n: int = 40) -> tuple[Path, list[Path]]:
    """A reference and three systems: good, a bit worse, much worse (seeded edits of the reference)."""
    rng = random.Random(3)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(n)]

    def noisy(p: float) -> list[str]:
        out = []
        for line in refs:
            words = [w if rng.random() > p else rng.choice(WORDS) for w in line.split()]
            out.append(" ".join(words))
        return out

    ref = tmp_path / "ref.txt"
    ref.write_text("".join(x + "\n" for x in refs), encoding="utf-8")
    systems = []
    for name, p in (("base", 0.3), ("close", 0.33), ("worse", 0.6)):
        path = tmp_path / f"{name}.txt"
        path.write_text("".join(x + "\n" for x in noisy(p)), encoding="utf-8")
        systems.append(path)
    return ref, systems


# sacreBLEU's own command line with only its table printer replaced by a JSON dump (its -f json cannot
# print paired bootstrap results: numpy float32 is not JSON serializable)
CLI = """
import json, sys
import sacrebleu.sacrebleu as cli

def dump(results, sigs, args):
    row = lambda r: r if isinstance(r, str) else {k: None if v is None else float(v) for k, v in vars(r).items()}
    print(json.dumps({"results": {k: [row(r) for r in rs] for k, rs in results.items()}, "sigs": sigs}))

cli.print_results_table = dump
sys.argv = ["sacrebleu"] + sys.argv[1:]
cli.main()
"""


def _sacrebleu_cli(ref: Path, systems: list[Path], test: str, n: int) -> tuple[dict, dict]:
    """``sacrebleu REF -i SYS... -m bleu chrf ter --paired-bs|--paired-ar`` with seed 12345."""
    flag = (
        ["--paired-bs", "--paired-bs-n", str(n)] if test == "bs" else ["--paired-ar", "--paired-ar-n", str(n)]
    )
    argv = [str(ref), "-i", *map(str, systems), "-m", "bleu", "chrf", "ter", *flag]
    env = {"SACREBLEU_SEED": "12345", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", CLI, *argv], capture_output=True, text=True, check=True, env=env
    )
    taken = json.loads(out.stdout)
    return taken["results"], taken["sigs"]


@pytest.mark.parametrize("test, n", [("bs", 200), ("ar", 300)])
def test_reproduces_sacrebleus_own_significance_output(tmp_path, test, n):
    ref, systems = _systems(tmp_path)
    ours = compare(systems, [ref], bootstrap_samples=n, ar_trials=n)  # both tests, as by default
    theirs, sigs = _sacrebleu_cli(ref, systems, test, n)
    assert [s["name"] for s in ours["systems"]] == [str(p) for p in systems]
    assert theirs["System"] == ["Baseline: " + str(systems[0])] + [str(p) for p in systems[1:]]
    for metric in ("BLEU", "chrF2", "TER"):
        assert ours["signatures"][metric][test] == sigs[metric]
        for mine, cli in zip(ours["systems"], theirs[metric]):
            assert mine[metric]["score"] == cli["score"]
            expected = {k: v for k, v in cli.items() if k != "score" and v is not None}
            assert mine[metric][test] == expected, (metric, test)
    # baseline: mean and CI with bootstrap, nothing more; every other system has a p-value
    assert "p_value" not in ours["systems"][0]["BLEU"][test]
    assert all("p_value" in s["BLEU"][test] for s in ours["systems"][1:])
    # the much worse system is significantly worse on every metric
    assert all(ours["systems"][2][m][test]["p_value"] < 0.05 for m in ("BLEU", "chrF2", "TER"))
    sig = ours["signatures"]["BLEU"][test]
    assert f"{test}:{n}" in sig and "seed:12345" in sig and "tok:13a" in sig


def test_both_tests_and_the_report(tmp_path, capsys):
    ref, systems = _systems(tmp_path)
    both = compare(systems[:2], [ref], bootstrap_samples=100, ar_trials=100)
    assert set(both["systems"][1]["chrF2"]) == {"score", "bs", "ar"}
    assert set(both["systems"][1]["chrF2"]["bs"]) == {"mean", "ci", "p_value"}
    text = format_compare(both)
    assert text.count("nrefs:1") == 6 and "baseline: " + str(systems[0]) in text and "(AR)" in text
    # ar alone still gives a mean and CI (sacreBLEU's bootstrap for AR confidence), same p-values
    ar = compare(systems[:2], [ref], tests=("ar",), bootstrap_samples=100, ar_trials=100)
    assert set(ar["systems"][1]["BLEU"]["ar"]) == {"mean", "ci", "p_value"}
    assert ar["systems"][1]["BLEU"]["ar"]["p_value"] == both["systems"][1]["BLEU"]["ar"]["p_value"]
    import os

    import sacrebleu
    from sacrebleu.significance import PairedTest

    refs = [ref.read_text().splitlines()]
    named = [(str(p), p.read_text().splitlines()) for p in systems[:2]]
    os.environ["SACREBLEU_SEED"] = "12345"  # sacreBLEU's default, as in compare
    try:
        _, api = PairedTest(named, {"BLEU": sacrebleu.metrics.BLEU(references=refs)}, None, "ar", 100, 100)()
    finally:
        del os.environ["SACREBLEU_SEED"]
    assert ar["systems"][1]["BLEU"]["ar"] == {
        k: float(v) for k, v in vars(api["BLEU"][1]).items() if k != "score"
    }
    main(
        [
            "compare",
            "--ref",
            str(ref),
            *map(str, systems[:2]),
            "--test",
            "bs",
            "--bootstrap-samples",
            "50",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert out["baseline"] == str(systems[0]) and "bs:50" in out["signatures"]["TER"]["bs"]


def test_a_run_directory_translates_the_source(trained_run, tmp_path):
    from seq2seq.translator import Translator

    cfg, _ = trained_run
    src, ref = cfg.data_dir / "test.en", cfg.data_dir / "test.de"
    lines = src.read_text(encoding="utf-8").splitlines()
    hyp = tmp_path / "beam1.de"
    hyp.write_text("".join(x + "\n" for x in Translator.load(cfg.run_path).translate(lines, beam_size=1)))
    result = compare([hyp, cfg.run_path], [ref], src=src, tests=("bs",), bootstrap_samples=50)
    run = result["systems"][1]
    assert run["model"].endswith("best.pt")
    beam = tmp_path / "beam.de"
    beam.write_text("".join(x + "\n" for x in Translator.load(cfg.run_path).translate(lines)))
    files = compare([hyp, beam], [ref], tests=("bs",), bootstrap_samples=50)
    assert run["BLEU"] == files["systems"][1]["BLEU"]  # the run's own decode settings
    with pytest.raises(UserError, match="give --src FILE"):
        compare([hyp, cfg.run_path], [ref])


def test_errors(tmp_path, capsys):
    ref, systems = _systems(tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("one line\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="has 1 lines but the references have 40"):
        compare([systems[0], short], [ref])
    with pytest.raises(UserError, match="is empty"):
        compare([systems[0], empty], [ref])
    with pytest.raises(UserError, match="is empty"):
        compare(systems[:2], [empty])
    with pytest.raises(UserError, match="reference .* has 1 lines"):
        compare(systems[:2], [ref, short])
    with pytest.raises(UserError, match="at least two systems"):
        compare(systems[:1], [ref])
    with pytest.raises(UserError, match="not found"):
        compare([systems[0], tmp_path / "absent.txt"], [ref])
    with pytest.raises(UserError, match="given twice"):
        compare([systems[0], systems[0]], [ref])
    with pytest.raises(SystemExit) as e:
        main(["compare", "--ref", str(ref), str(systems[0]), str(short)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
