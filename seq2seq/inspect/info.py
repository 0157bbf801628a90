"""A run directory's summary: recipe, parameters, vocabularies, training progress, best scores."""

from __future__ import annotations

import json
from pathlib import Path

from seq2seq.constants import AVERAGED, RESULTS_JSON, checkpoint_file
from seq2seq.decode.loading import checkpoint_model_config
from seq2seq.errors import UserError
from seq2seq.model.network import build_model, count_parameters
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs.ownership import load_run_config
from seq2seq.training.monitor import read_metrics


def read_results(path: Path) -> dict:
    """The test scores of a results.json, {split: {bleu, chrf, signature}}; damage is a one-line UserError."""
    try:
        tests = json.loads(path.read_text(encoding="utf-8"))["tests"]
        return {
            k: {"bleu": float(v["bleu"]), "chrf": float(v["chrf"]), "signature": str(v["bleu_signature"])}
            for k, v in tests.items()
        }
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except json.JSONDecodeError as e:
        reason = f"not JSON: {e.msg} at line {e.lineno}"
    except (ValueError, KeyError, TypeError, AttributeError):
        reason = "not the layout seq2seq evaluate writes"
    raise UserError(f"{path} is damaged ({reason}): run seq2seq evaluate again")


def run_info(run_dir: Path) -> dict:
    cfg = load_run_config(run_dir)
    info: dict = {"run_dir": str(run_dir), "name": cfg.name, "config": cfg.to_dict()}
    last = checkpoint_file(run_dir, "last")
    if last.is_file():
        ckpt = ckpt_io.load(last)
        model_cfg = checkpoint_model_config(ckpt, last)  # the checkpoint is the truth for the model
        info["parameters"] = count_parameters(build_model(model_cfg, ckpt["src_vocab"], ckpt["tgt_vocab"]))
        info["vocab"] = {"source": ckpt["src_vocab"], "target": ckpt["tgt_vocab"]}
        info["progress"] = ckpt["progress"]
    metrics = read_metrics(run_dir)
    dev = [m for m in metrics if m["kind"] == "dev"]
    if dev:
        info["dev_bleu_history"] = [(m["step"], m["bleu"]) for m in dev]
    averaged = [m for m in metrics if m["kind"] == AVERAGED]
    if averaged:  # train.average_last: the dev BLEU of checkpoints/averaged.pt
        info["averaged_dev_bleu"] = averaged[-1]["bleu"]
    results = run_dir / RESULTS_JSON
    if results.is_file():
        info["results"] = read_results(results)
    return info


def format_info(info: dict) -> str:
    c = info["config"]
    m, d, t = c["model"], c["data"], c["train"]
    lines = [
        f"run: {info['run_dir']} (recipe name {info['name']})",
        f"data: {d['source']} {d['src_lang']}->{d['tgt_lang']}, splits {', '.join(d['splits'])}",
        f"model: emb {m['emb_dim']}, {'bi-' if m.get('bidirectional', True) else ''}"
        f"{m.get('enc_cell', 'gru').upper()} {m['enc_layers']}x{m['enc_hidden']}, "
        f"{m.get('dec_cell', 'lstm').upper()} {m['dec_layers']}x{m['dec_hidden']}, {m['attention']} attention"
        f"{' with coverage' if m.get('coverage') else ''}, input feeding {m['input_feeding']}, "
        f"tied {m['tie_embeddings']}, dropout {m['dropout']}",
    ]
    if "parameters" in info:
        p = info["progress"]
        lines.append(
            f"parameters: {info['parameters']:,}; vocabulary: source {info['vocab']['source']}, "
            f"target {info['vocab']['target']}"
        )
        lines.append(
            f"training: step {p['step']} (epoch {p['epoch'] + 1}), best dev BLEU {p['best_bleu']:.2f} at "
            f"step {p['best_step']}{', stopped early' if p['stopped_early'] else ''}; "
            f"budget max_steps {t['max_steps']} max_epochs {t['max_epochs']}"
        )
    else:
        lines.append("training: no checkpoint yet")
    if "averaged_dev_bleu" in info:
        lines.append(
            f"averaged.pt (train.average_last {t.get('average_last')}): dev BLEU {info['averaged_dev_bleu']:.2f}"
        )
    for split, r in info.get("results", {}).items():
        lines.append(f"test {split}: BLEU {r['bleu']:.2f} chrF {r['chrf']:.2f} ({r['signature']})")
    return "\n".join(lines)
