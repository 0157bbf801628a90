"""PNG figures of a run: learning curves from metrics.jsonl and attention heatmaps."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput
from seq2seq.monitor import read_metrics

CHAR_INCHES = 0.085  # about the width of a character of the 9-point tick labels
SPACE_MARK = "␣"  # what SentencePiece's word-start marker "▁" is shown as (DejaVu Sans has the glyph)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> None:
    """The figure as a PNG, written atomically (seq2seq.fileio): never a half-written image."""
    with AtomicOutput(out, binary=True) as f:
        fig.savefig(f, format="png", dpi=110)


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [m for m in rows if key in m]
    return [m["step"] for m in rows], [m[key] for m in rows]


def plot_curves(run_dir: Path, out: Path) -> Path:
    """Four panels -> ``out`` (PNG): see :func:`curves_figure`."""
    plt = _pyplot()
    fig = curves_figure(run_dir)
    _save(fig, out)
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
        raise UserError(f"{run_dir} has no {run_dir / 'metrics.jsonl'} entries: train it first")
    plt = _pyplot()
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
        value = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))["train"][
            "clip_norm"
        ]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return 0.0
    return float(value) if isinstance(value, (int, float)) else 0.0


def piece_label(piece: str) -> str:
    """A SentencePiece piece as an axis label: the word-start marker "▁" as a visible space mark."""
    return piece.replace("▁", SPACE_MARK)


@dataclasses.dataclass
class Heatmap:
    src: list[str]  # source pieces (and </s>): the columns
    tgt: list[str]  # output pieces (and </s> when produced): the rows
    weights: object  # (len(tgt), >= len(src)) array of attention weights
    title: str = ""


def label_layout(labels: list[str]) -> tuple[float, bool]:
    """(inches per column, whether the labels stay horizontal): each column as wide as the longest
    label needs, unless pieces or lines are so long that the figure would get too wide (then 45°)."""
    col = max(0.42, CHAR_INCHES * max(len(x) for x in labels) + 0.12)
    flat = col <= 1.0 and col * len(labels) <= 18
    return (col if flat else 0.42), flat


def heatmap_png(h: Heatmap, out: Path) -> Path:
    """Attention weights as a colour map (0 to 1) with a colour bar; source labels stay horizontal (each
    column as wide as its longest label needs) unless the figure would get too wide."""
    plt = _pyplot()
    src, tgt = [piece_label(p) for p in h.src], [piece_label(p) for p in h.tgt]
    col, flat = label_layout(src)
    left = CHAR_INCHES * max(len(x) for x in tgt) + 0.6  # the output pieces' labels and the axis title
    fig, ax = plt.subplots(figsize=(max(5.0, col * len(src) + left + 1.6), max(3.0, 0.36 * len(tgt) + 1.8)))
    ax.tick_params(labelsize=9)
    image = ax.imshow(h.weights[:, : len(src)], cmap="viridis", aspect="auto", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    if flat:
        ax.set_xticks(range(len(src)), src)
    else:
        ax.set_xticks(range(len(src)), src, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(tgt)), tgt)
    ax.set(xlabel=f"source pieces ({SPACE_MARK} starts a word)", ylabel="output pieces")
    if h.title:
        ax.set_title(h.title, fontsize=9, loc="left")
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return out


def plot_translation(translator, line: str, t, out: Path) -> Path:
    """Heatmap of a :class:`~seq2seq.translator.Translation` ``t`` of ``line`` (decoded with attention)."""
    src = translator.src_tok.pieces(line) + ["</s>"]
    weights = t.attention.float().numpy()  # (T [+1 for EOS], S)
    tgt = t.tokens + ["</s>"] if weights.shape[0] > len(t.tokens) else list(t.tokens)
    title = _shorten(line) + "\n→ " + _shorten(t.text)
    return heatmap_png(Heatmap(src, tgt, weights, title), out)


def _shorten(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def plot_attention(translator, line: str, out: Path) -> Path:
    """Heatmap of the attention of the best hypothesis for ``line``: output pieces x source pieces."""
    dc = dataclasses.replace(translator.cfg.decode, n_best=1)
    found = translator.translations(translator.src_tok.encode([line]), dc, attention=True)[0]
    if not found:
        raise UserError("cannot plot the attention of an empty line")
    return plot_translation(translator, line, found[0], out)


def plot_run(run_dir: Path, out_dir: Optional[Path] = None, sentences: int = 3, log=print) -> list[Path]:
    """learning_curves.png plus attention-<i>.png for the first dev sentences, into ``out_dir``."""
    from seq2seq.translator import Translator

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
