"""PNG figures of a run: learning curves from metrics.jsonl, and attention heatmaps of a few dev
sentences (drawn by :mod:`seq2seq.decode.heatmap`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from seq2seq.constants import CONFIG, METRICS
from seq2seq.decode.heatmap import plot_attention, pyplot, save_png
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.training.monitor import read_metrics


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [m for m in rows if key in m]
    return [m["step"] for m in rows], [m[key] for m in rows]


def plot_curves(run_dir: Path, out: Path) -> Path:
    """Four panels -> ``out`` (PNG): see :func:`curves_figure`."""
    plt = pyplot()
    fig = curves_figure(run_dir)
    save_png(fig, out)
    plt.close(fig)
    return out


def curves_figure(run_dir: Path):
    """The learning curves' matplotlib figure, four panels: train and dev NLL per target token
    (comparable: neither has label smoothing; the label-smoothed loss that training minimizes is drawn
    dashed), dev BLEU, the learning rate, and the gradient norm (before clipping: what train.log's
    "grad norm" says, the mean over each log window; train.clip_norm drawn dotted)."""
    metrics = read_metrics(run_dir)
    train = [m for m in metrics if m["kind"] == "train"]
    dev = [m for m in metrics if m["kind"] == "dev"]
    if not train and not dev:
        raise UserError(f"{run_dir} has no {run_dir / METRICS} entries: train it first")
    plt = pyplot()
    fig, (ax_loss, ax_bleu, ax_lr, ax_norm) = plt.subplots(1, 4, figsize=(19, 4.2))
    if any("nll" in m for m in train):
        ax_loss.plot(*_series(train, "nll"), color="tab:blue", label="train NLL (dropout on)")
        ax_loss.plot(
            *_series(train, "loss"), "--", color="tab:blue", alpha=0.5, label="train loss (label-smoothed)"
        )
    elif train:  # runs logged before the NLL was: only the label-smoothed loss
        ax_loss.plot(*_series(train, "loss"), "--", color="tab:blue", label="train loss (label-smoothed)")
    if dev:
        ax_loss.plot(*_series(dev, "loss"), "o-", color="tab:orange", label="dev NLL")
        ax_bleu.plot(*_series(dev, "bleu"), "o-", color="tab:green")
        best = max(dev, key=lambda m: m["bleu"])
        ax_bleu.annotate(
            f"best {best['bleu']:.2f}\nat step {best['step']}",
            (best["step"], best["bleu"]),
            textcoords="offset points",
            xytext=(0, -28),
            ha="center",
            fontsize=8,
        )
    lr_rows = train or dev
    ax_lr.plot(*_series(lr_rows, "lr"), color="tab:purple")
    ax_loss.set(xlabel="step", ylabel="nats per target token", title="loss")
    ax_loss.legend(fontsize=8)
    ax_bleu.set(xlabel="step", ylabel="BLEU", title="dev BLEU")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if any("grad_norm" in m for m in train):
        ax_norm.plot(*_series(train, "grad_norm"), color="tab:red", label="gradient norm")
        clip = _clip_norm(run_dir)
        if clip:
            ax_norm.axhline(clip, linestyle=":", color="gray", label=f"clip_norm {clip:g}")
        ax_norm.legend(fontsize=8)
    else:
        ax_norm.text(0.5, 0.5, "not logged", transform=ax_norm.transAxes, ha="center", color="gray")
    ax_norm.set(xlabel="step", ylabel="L2 norm (before clipping)", title="gradient norm")
    for ax in (ax_loss, ax_bleu, ax_lr, ax_norm):
        ax.grid(alpha=0.3)
    fig.suptitle(run_dir.name if run_dir.name != "run" else run_dir.parent.name)
    fig.tight_layout()
    return fig


def _clip_norm(run_dir: Path) -> float:
    """train.clip_norm of the run's config.yaml (0: none, or no readable config)."""
    import yaml

    try:
        value = yaml.safe_load((Path(run_dir) / CONFIG).read_text(encoding="utf-8"))["train"]["clip_norm"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return 0.0
    return float(value) if isinstance(value, (int, float)) else 0.0


def plot_run(run_dir: Path, out_dir: Optional[Path] = None, sentences: int = 3, log=print) -> list[Path]:
    """learning_curves.png plus attention-<i>.png for the first dev sentences, into ``out_dir``."""
    out_dir = out_dir or run_dir / "plots"
    paths = [plot_curves(run_dir, out_dir / "learning_curves.png")]
    if sentences:
        translator = Translator.from_run_dirs([run_dir], "best", "cpu")
        dev = translator.cfg.data_dir / f"dev.{translator.cfg.data.src_lang}"
        if not dev.is_file():
            log(f"warning: {dev} not found: no attention plots (use seq2seq translate --attention DIR)")
        else:
            lines = [x for x in dev.read_text(encoding="utf-8").splitlines() if x.strip()][:sentences]
            for i, line in enumerate(lines):
                paths.append(plot_attention(translator, line, out_dir / f"attention-{i}.png"))
    for p in paths:
        log(f"wrote {p}")
    return paths
