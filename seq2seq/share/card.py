"""The model card (README.md) of a model folder: Hugging Face front matter, and a body a person reads.

Every number in it comes from the run: the test scores and their sacreBLEU signatures from
results.json, the architecture and the settings from the config, the parameter count from the model,
the data counts from the corpus manifest, the training time and device from train.log, the speed from
the test decoding. :func:`gather` collects them (a missing file leaves its part out), :func:`card_text`
writes them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Optional

import yaml

from seq2seq.config.schema import Config
from seq2seq.decode.translator import LONG_LINE_PARTS

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")
LOG_DEVICE = re.compile(r"training: .*device (\S+?)(?:,|$)(?:.*?(\d+) threads)?")
LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "cs": "Czech",
    "es": "Spanish",
    "it": "Italian",
    "nl": "Dutch",
    "ro": "Romanian",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
}


def _json(path: Path) -> Optional[dict]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def corpus_counts(cfg: Config) -> dict:
    """{split: sentence pairs} from the corpus folder's manifest.json (source-side line counts)."""
    manifest = _json(cfg.data_dir / "manifest.json") or {}
    counts = {}
    for entry in (manifest.get("files") or {}).values():
        if isinstance(entry, dict) and entry.get("lang") == cfg.data.src_lang and "lines" in entry:
            counts[str(entry.get("split"))] = int(entry["lines"])
    return counts


def training_log(run_dir: Path) -> dict:
    """Wall-clock training time (first to last line of train.log, in seconds) and the device it names."""
    path = run_dir / "train.log"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    times = [LOG_TIME.match(x) for x in lines]
    times = [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S") for m in times if m]
    out: dict = {}
    if len(times) >= 2:
        out["seconds"] = int((times[-1] - times[0]).total_seconds())
    for line in lines:
        m = LOG_DEVICE.search(line)
        if m:
            out["device"] = m[1] + (f", {m[2]} threads" if m[2] else "")
    return out


def gather(
    cfg: Config, run_dir: Path, parameters: int, vocab: tuple[int, int], ckpt: dict, which: str
) -> dict:
    """The facts of a card: from the run directory and the loaded checkpoint."""
    results = _json(run_dir / "results.json") or {}
    return {
        "parameters": parameters,
        "vocab": list(vocab),
        "checkpoint": which,
        "progress": ckpt.get("progress") or {},
        "results": results,
        "corpus": corpus_counts(cfg),
        "training": training_log(run_dir),
    }


def _duration(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _lang(code: str) -> str:
    name = LANGUAGE_NAMES.get(code.split("-")[0].lower())
    return f"{name} ({code})" if name else code


def dataset_name(cfg: Config) -> str:
    """The corpus in words; with data.sources, each corpus by its name and weight."""
    if cfg.data.sources:
        return "; ".join(f"{s.name}: {_corpus_words(s)} (weight {s.weight:g})" for s in cfg.data.sources)
    return _corpus_words(cfg.data.source_list()[0])


def _corpus_words(s) -> str:
    if s.kind == "hub":
        return s.dataset + (f" ({s.dataset_config})" if s.dataset_config else "")
    if s.kind == "embedded":
        return "seq2seq's embedded synthetic corpus (numbers and dates)"
    return f"{s.kind} files" + (f" from {s.url}" if s.url.startswith(("http://", "https://")) else "")


def front_matter(cfg: Config, facts: dict, license: str) -> dict:
    d = cfg.data
    tests = (facts["results"].get("tests") or {}) if facts["results"] else {}
    hub = [s.dataset for s in d.source_list() if s.kind == "hub" and s.dataset]
    if d.sources:
        dataset_id = f"{cfg.name}-sources"
    else:
        dataset_id = d.dataset if d.source == "hub" and d.dataset else f"{cfg.name}-{d.source}"
    meta: dict = {
        "language": [d.src_lang, d.tgt_lang],
        "license": license,
        "library_name": "seq2seq",
        "tags": ["translation", "seq2seq", "safetensors"],
        "pipeline_tag": "translation",
    }
    if hub:
        meta["datasets"] = hub
    meta["metrics"] = ["bleu", "chrf", "ter"] if any("ter" in s for s in tests.values()) else ["bleu", "chrf"]
    if tests:
        results = []
        for split, s in tests.items():
            metrics = [
                {"type": "bleu", "value": s["bleu"], "name": "BLEU", "args": s.get("bleu_signature")},
                {"type": "chrf", "value": s["chrf"], "name": "chrF", "args": s.get("chrf_signature")},
            ]
            if "ter" in s:
                metrics.append(
                    {"type": "ter", "value": s["ter"], "name": "TER", "args": s.get("ter_signature")}
                )
            results.append(
                {
                    "task": {"type": "translation", "name": f"Translation {d.src_lang}-{d.tgt_lang}"},
                    "dataset": {"name": dataset_name(cfg), "type": dataset_id, "split": split},
                    "metrics": metrics,
                }
            )
        meta["model-index"] = [{"name": cfg.name, "results": results}]
    return meta


def card_text(cfg: Config, facts: dict, license: str = "unknown", folder_name: str = "MODEL_DIR") -> str:
    """The README.md of a model folder."""
    d, m, t, dc = cfg.data, cfg.model, cfg.train, cfg.decode
    meta = yaml.safe_dump(front_matter(cfg, facts, license), sort_keys=False, allow_unicode=True)
    src, tgt = _lang(d.src_lang), _lang(d.tgt_lang)
    enc = f"{'bidirectional ' if m.bidirectional else ''}{m.enc_cell.upper()} encoder ({m.enc_layers} x {m.enc_hidden})"
    att = "no attention" if m.attention == "none" else f"{m.attention} attention"
    lines = [
        "---",
        meta.rstrip("\n"),
        "---",
        "",
        f"# {cfg.name}: {src} → {tgt}",
        "",
        f"Translates {src} text into {tgt}, one sentence per line. A recurrent encoder-decoder trained with "
        f"seq2seq on {dataset_name(cfg)}.",
        "",
        "## Model",
        "",
        f"- {enc}, {m.dec_cell.upper()} decoder ({m.dec_layers} x {m.dec_hidden}) with {att}"
        f"{' and coverage' if m.coverage else ''}, embeddings {m.emb_dim}, input feeding {m.input_feeding}, "
        f"tied output embeddings {m.tie_embeddings}",
        f"- {facts['parameters']:,} parameters, fp32, in `weights.safetensors`",
        f"- SentencePiece {cfg.spm.model_type}, {'one joint model' if cfg.spm.joint else 'two models'}: "
        f"vocabulary source {facts['vocab'][0]}, target {facts['vocab'][1]}",
        f"- exported from checkpoint `{facts['checkpoint']}`",
    ]
    corpus = facts.get("corpus") or {}
    if corpus:
        lines += ["", "## Data", "", f"{dataset_name(cfg)}, sentence pairs per split:", ""]
        lines += ["| split | pairs |", "|---|---:|"] + [f"| {k} | {v:,} |" for k, v in corpus.items()]
        if t.max_len:
            lines += ["", f"Training pairs longer than {t.max_len} pieces were left out (train.max_len)."]
    tests = facts["results"].get("tests") or {}
    if tests:
        beam = (facts["results"].get("decode") or {}).get("beam_size", dc.beam_size)
        has_ter = any("ter" in s for s in tests.values())
        lines += ["", "## Test scores", "", f"sacreBLEU, beam {beam}:", ""]
        lines += ["| split | sentences | BLEU | chrF |" + (" TER |" if has_ter else "")]
        lines += ["|---|---:|---:|---:|" + ("---:|" if has_ter else "")]
        for split, s in tests.items():
            ter = f" {s['ter']:.2f} |" if "ter" in s else (" |" if has_ter else "")
            lines.append(f"| {split} | {s.get('sentences', '')} | {s['bleu']:.2f} | {s['chrf']:.2f} |{ter}")
        first = next(iter(tests.values()))
        lines += ["", "Signatures:", "", "```"]
        lines += [f"BLEU {first['bleu_signature']}", f"chrF {first['chrf_signature']}"]
        if "ter_signature" in first:
            lines.append(f"TER  {first['ter_signature']}")
        lines.append("```")
    lines += ["", "## Training", ""]
    p = facts.get("progress") or {}
    if p:
        lines.append(
            f"- {p.get('step', 0):,} steps (in epoch {p.get('epoch', 0) + 1}), best dev BLEU "
            f"{p.get('best_bleu', 0):.2f} at step {p.get('best_step', 0):,}"
            + (", stopped early" if p.get("stopped_early") else "")
        )
    lines.append(
        f"- batches of {t.batch_tokens:,} tokens, lr {t.lr} ({t.lr_schedule}), label smoothing "
        f"{t.label_smoothing}, dropout {m.dropout}, seed {t.seed}"
    )
    tr = facts.get("training") or {}
    if "seconds" in tr:
        lines.append(f"- training time: {_duration(tr['seconds'])} (wall clock, from train.log)")
    if "device" in tr:
        lines.append(f"- trained on: {tr['device']}")
    if tests:
        s = next(iter(tests.values()))
        if s.get("decode_seconds"):
            rate = s["sentences"] / s["decode_seconds"] if s["decode_seconds"] else 0
            lines.append(
                f"- translation speed: {rate:,.0f} sentences/s (beam {beam}, batch {dc.batch_size}, "
                f"device {facts['results'].get('device', '?')})"
            )
    lines += [
        "",
        "## Use",
        "",
        "```sh",
        f"seq2seq translate {folder_name} -i input.{d.src_lang} -o output.{d.tgt_lang}",
        f"seq2seq evaluate {folder_name} --src test.{d.src_lang} --ref test.{d.tgt_lang}",
        "```",
        "",
        "```python",
        "from seq2seq import Translator",
        f'Translator.load("{folder_name}").translate(["..."])',
        "```",
        "",
        "Loading reads JSON, YAML and safetensors only: no code runs, nothing is unpickled; every file is "
        "checked against the sha256 in `seq2seq.json`.",
        "",
        "## Reproduce",
        "",
        "`config.yaml` holds every setting of the run (local paths removed):",
        "",
        "```sh",
        "for stage in download spm train evaluate; do seq2seq $stage config.yaml; done",
        "```",
        "",
        "## Limits",
        "",
        f"- {src} → {tgt} only, and the domain of its training data ({dataset_name(cfg)}); expect "
        "much lower quality on other text.",
        f"- It was trained on sentences of at most {t.max_len} pieces; longer input lines are translated "
        f"in parts of at most {t.max_len} pieces (and pieces beyond {LONG_LINE_PARTS * t.max_len} are dropped).",
        f"- Outputs are at most {dc.max_len_ratio} x the source pieces + {dc.max_len_offset} long.",
        "",
    ]
    return "\n".join(lines)
