"""``seq2seq compare``: is one system really better than another? sacreBLEU's own paired significance tests.

Each system is a file of hypotheses, or a run directory / model folder (``hf://`` too) that translates
the source file first with its own decode settings. BLEU, chrF and TER of every system are compared with
the first system's (the baseline) by sacreBLEU's paired bootstrap resampling (Koehn 2004: a mean and a
95% confidence interval per system, and a p-value) and its paired approximate randomization (Riezler
and Maxwell 2005: a p-value), exactly as ``sacrebleu REF -i BASE SYS ... --paired-bs`` / ``--paired-ar``
computes them: :class:`sacrebleu.significance.PairedTest` is called, nothing is re-implemented. The seed
(``SACREBLEU_SEED``, 12345 by default, as sacreBLEU's) goes into the signatures.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import sacrebleu
from sacrebleu.significance import PairedTest

from seq2seq.config.bleu import bleu_metric, bleu_tokenizer
from seq2seq.decode.model_folder import describe, is_model_folder
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.fileio import read_lines
from seq2seq.runs.checkpoint import resolve
from seq2seq.runs.ownership import load_run_config
from seq2seq.text import normalize

TESTS = {"bs": "paired bootstrap resampling", "ar": "paired approximate randomization"}
DEFAULT_SEED = 12345  # sacreBLEU's


def read_text(path: Path, what: str) -> list[str]:
    """The normalized lines of a text file (:func:`seq2seq.text.normalize`); missing, a folder or empty: a
    one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found" + (" (a folder)" if path.is_dir() else ""))
    with open(path, "rb") as f:
        lines = [normalize(line) for line in read_lines(f, str(path), hint=None)]
    if not lines:
        raise UserError(f"{what} {path} is empty")
    return lines


def _is_model(system) -> bool:
    return is_model_folder(system) or Path(system).is_dir()


def translate_with(
    system, src_lines: list[str], checkpoint: Optional[str], device: str
) -> tuple[list[str], str, str]:
    """(hypotheses, target language, what was used) of a run directory or model folder on ``src_lines``,
    with its own decode settings."""
    which = checkpoint
    if not is_model_folder(system) and which is None:
        which = load_run_config(Path(system)).decode.checkpoint
    translator = Translator.from_run_dirs([system], which or "best", device)
    hyps = translator.translate(src_lines)
    if is_model_folder(system):
        used = describe(system)
    else:
        used = str(resolve(Path(system), which))
    return hyps, translator.cfg.data.tgt_lang, used


@contextlib.contextmanager
def _seed(seed: int) -> Iterator[None]:
    """sacreBLEU reads its seed from SACREBLEU_SEED (PairedTest and its baseline bootstrap alike)."""
    saved = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = saved


def metrics_for(refs: list[list[str]], tokenize: str) -> dict:
    """sacreBLEU's BLEU (the tokenizer seq2seq evaluate uses), chrF and TER, references cached."""
    bleu_metric(tokenize)  # a tokenizer whose packages are missing: one line saying what to install
    return {
        "BLEU": sacrebleu.metrics.BLEU(tokenize=tokenize, references=refs),
        "chrF": sacrebleu.metrics.CHRF(references=refs),
        "TER": sacrebleu.metrics.TER(references=refs),
    }


def _result(r) -> dict:
    return {k: (None if v is None else float(v)) for k, v in vars(r).items()}


def compare(
    systems: Sequence,
    refs: Sequence[Path],
    src: Optional[Path] = None,
    tests: Sequence[str] = ("bs", "ar"),
    bootstrap_samples: int = 1000,
    ar_trials: int = 10000,
    seed: int = DEFAULT_SEED,
    tokenize: str = "auto",
    tgt_lang: Optional[str] = None,
    checkpoint: Optional[str] = None,
    device: str = "auto",
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Paired significance tests of ``systems`` (the first is the baseline) against ``refs``; see the
    module's docstring. Returns {"baseline", "sentences", "signatures": {metric: {test: signature}},
    "systems": [{"name", "model"?, metric: {"score", "bs": {mean, ci, p_value}, "ar": {p_value, ...}}}]}."""
    if len(systems) < 2:
        raise UserError("compare needs at least two systems: the baseline first, then the others")
    if not refs:
        raise UserError("give the reference(s): --ref FILE")
    for t in tests:
        if t not in TESTS:
            raise UserError(f"unknown test {t!r}: bs (paired bootstrap) or ar (approximate randomization)")
    if seed < 1:
        raise UserError("--seed must be 1 or more (sacreBLEU takes 0 as 'no fixed seed')")
    if bootstrap_samples < 1 or ar_trials < 1:
        raise UserError("--bootstrap-samples and --ar-trials must be 1 or more")
    ref_lines = [read_text(r, "reference file") for r in refs]
    n = len(ref_lines[0])
    for path, lines in zip(refs, ref_lines):
        if len(lines) != n:
            raise UserError(f"reference {path} has {len(lines)} lines but {refs[0]} has {n}")
    src_lines = None
    if src is not None:
        src_lines = read_text(src, "source file")
        if len(src_lines) != n:
            raise UserError(f"source {src} has {len(src_lines)} lines but the references have {n}")
    named, entries, names = [], [], set()
    for system in systems:
        name = str(system)
        if name in names:
            raise UserError(f"{name} is given twice: every system once")
        names.add(name)
        entry: dict = {"name": name}
        if _is_model(system):
            if src_lines is None:
                raise UserError(f"{name} is a run directory or model folder: give --src FILE to translate")
            log(f"translating {src} with {name} ...")
            hyps, lang, used = translate_with(system, src_lines, checkpoint, device)
            tgt_lang = tgt_lang or lang
            entry["model"] = used
        else:
            hyps = read_text(Path(system), "system file")
            if len(hyps) != n:
                raise UserError(f"system {name} has {len(hyps)} lines but the references have {n}")
        named.append((name, hyps))
        entries.append(entry)
    tok = bleu_tokenizer(tgt_lang or "", tokenize)
    metrics = metrics_for(ref_lines, tok)
    signatures: dict = {}
    for test in tests:
        samples = bootstrap_samples if test == "bs" else ar_trials
        confidence = bootstrap_samples if test == "ar" and "bs" not in tests else -1
        log(f"{TESTS[test]} ({samples} {'resamples' if test == 'bs' else 'trials'}) ...")
        with _seed(seed):
            sigs, scores = PairedTest(named, metrics, None, test, samples, confidence, n_jobs=1)()
        for metric, sig in sigs.items():
            signatures.setdefault(metric, {})[test] = str(sig)
            for entry, result in zip(entries, scores[metric]):
                r = _result(result)
                entry.setdefault(metric, {"score": r["score"]})[test] = {
                    k: v for k, v in r.items() if k != "score" and v is not None
                }
    return {
        "baseline": entries[0]["name"],
        "references": [str(r) for r in refs],
        "source": str(src) if src is not None else None,
        "sentences": n,
        "seed": seed,
        "signatures": signatures,
        "systems": entries,
    }


def format_compare(result: dict) -> str:
    """The text report: per system and metric the score, bootstrap mean ± 95% CI and the p-values; then
    the signatures, once."""
    metrics = list(result["signatures"])
    width = max(len(m) for m in metrics)
    lines = []
    for i, s in enumerate(result["systems"]):
        head = f"{'baseline' if i == 0 else 'system'}: {s['name']}"
        lines.append(head + (f" ({s['model']})" if s.get("model") and s["model"] != s["name"] else ""))
        for m in metrics:
            r = s[m]
            text = f"  {m:<{width}} {r['score']:6.2f}"
            ci = r.get("bs") if "mean" in r.get("bs", {}) else r.get("ar", {})
            if "mean" in ci:
                text += f"  (μ = {ci['mean']:.2f} ± {ci['ci']:.2f})"
            for test in ("bs", "ar"):
                if "p_value" in r.get(test, {}):
                    text += f"  p = {r[test]['p_value']:.4f} ({'bootstrap' if test == 'bs' else 'AR'})"
            lines.append(text)
    lines.append(
        f"{result['sentences']} sentences; p: the chance of a difference from the baseline at least this "
        f"large if the systems were equally good (below 0.05: significant)"
    )
    for test in next(iter(result["signatures"].values())):
        lines.append(f"signatures ({TESTS[test]}):")
        lines += [f"  {m:<{width}} {result['signatures'][m][test]}" for m in metrics]
    return "\n".join(lines)
