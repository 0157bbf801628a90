"""PNG figures of a run: learning curves from metrics.jsonl and attention heatmaps."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput
from seq2seq.monitor import read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> None:
    """The figure as a PNG, written atomically (seq2seq.fileio): never a half-written image."""
    with AtomicOutput(out, binary=True) as f:
        fig.savefig(f, format="png", dpi=110)


def plot_curves(run_dir: Path, out: Path) -> Path:
    """Train/dev loss and dev BLEU over steps -> ``out`` (PNG)."""
    metrics = read_metrics(run_dir)
    train = [m for m in metrics if m["kind"] == "train"]
    dev = [m for m in metrics if m["kind"] == "dev"]
    if not train and not dev:
        raise UserError(f"{run_dir} has no {run_dir / 'metrics.jsonl'} entries: train it first")
    plt = _pyplot()
    fig, (ax_loss, ax_bleu) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot([m["step"] for m in train], [m["loss"] for m in train], label="train (label-smoothed)")
    if dev:
        ax_loss.plot([m["step"] for m in dev], [m["loss"] for m in dev], "o-", label="dev")
        ax_bleu.plot([m["step"] for m in dev], [m["bleu"] for m in dev], "o-", color="tab:green")
    ax_loss.set(xlabel="step", ylabel="cross-entropy per target token", title="loss")
    ax_loss.legend()
    ax_bleu.set(xlabel="step", ylabel="BLEU", title="dev BLEU")
    for ax in (ax_loss, ax_bleu):
        ax.grid(alpha=0.3)
    fig.suptitle(run_dir.name if run_dir.name != "run" else run_dir.parent.name)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return out


def plot_attention(translator, line: str, out: Path) -> Path:
    """Heatmap of the attention of the best hypothesis for ``line``: target pieces x source pieces."""
    dc = dataclasses.replace(translator.cfg.decode, n_best=1)
    hyps = translator.hypotheses([line], dc, return_attention=True)[0]
    if not hyps:
        raise UserError("cannot plot the attention of an empty line")
    h = hyps[0]
    src = translator.src_tok.pieces(line) + ["</s>"]
    tgt = translator.tgt_tok.id_to_piece(h.tokens)
    weights = h.attention.numpy()  # (T [+1 for EOS], S)
    if weights.shape[0] > len(tgt):
        tgt = tgt + ["</s>"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(src) + 2), max(3, 0.4 * len(tgt) + 1.5)))
    ax.imshow(weights[:, : len(src)], cmap="Greys", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(src)), src, rotation=90)
    ax.set_yticks(range(len(tgt)), tgt)
    ax.set(xlabel="source pieces", ylabel="output pieces")
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return out


def plot_run(run_dir: Path, out_dir: Optional[Path] = None, sentences: int = 3, log=print) -> list[Path]:
    """learning_curves.png plus attention-<i>.png for the first dev sentences, into ``out_dir``."""
    from seq2seq.translator import Translator

    out_dir = out_dir or run_dir / "plots"
    paths = [plot_curves(run_dir, out_dir / "learning_curves.png")]
    if sentences:
        translator = Translator.from_run_dirs([run_dir], "best", "cpu")
        dev = translator.cfg.data_dir / f"dev.{translator.cfg.data.src_lang}"
        if not dev.is_file():
            log(f"warning: {dev} not found: no attention plots (use seq2seq translate --attention)")
        else:
            lines = [x for x in dev.read_text(encoding="utf-8").splitlines() if x.strip()][:sentences]
            for i, line in enumerate(lines):
                paths.append(plot_attention(translator, line, out_dir / f"attention-{i}.png"))
    for p in paths:
        log(f"wrote {p}")
    return paths
