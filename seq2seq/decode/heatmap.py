"""Attention heatmaps of translations as PNG files (matplotlib, imported on first use)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from seq2seq.errors import UserError
from seq2seq.fileio import AtomicOutput

CHAR_INCHES = 0.085  # about the width of a character of the 9-point tick labels
SPACE_MARK = "␣"  # what SentencePiece's word-start marker "▁" is shown as (DejaVu Sans has the glyph)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, out: Path) -> None:
    """The figure as a PNG, written atomically (seq2seq.fileio): never a half-written image."""
    with AtomicOutput(out, binary=True) as f:
        fig.savefig(f, format="png", dpi=110)


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


def colour_top(weights) -> float:
    """The weight the brightest colour stands for: the largest one shown (at least 1e-6)."""
    return max(float(weights.max()), 1e-6) if weights.size else 1.0


def heatmap_png(h: Heatmap, out: Path) -> Path:
    """Attention weights as a colour map (0 to the largest weight shown, so a weak model's diffuse
    attention is not all dark) with a colour bar; source labels stay horizontal (each
    column as wide as its longest label needs) unless the figure would get too wide."""
    plt = pyplot()
    src, tgt = [piece_label(p) for p in h.src], [piece_label(p) for p in h.tgt]
    col, flat = label_layout(src)
    left = CHAR_INCHES * max(len(x) for x in tgt) + 0.6  # the output pieces' labels and the axis title
    fig, ax = plt.subplots(figsize=(max(5.0, col * len(src) + left + 1.6), max(3.0, 0.36 * len(tgt) + 1.8)))
    ax.tick_params(labelsize=9)
    shown = h.weights[:, : len(src)]
    image = ax.imshow(shown, cmap="viridis", aspect="auto", vmin=0, vmax=colour_top(shown))
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
    save_png(fig, out)
    plt.close(fig)
    return out


def plot_translation(translator, line: str, t, out: Path) -> Path:
    """Heatmap of a :class:`~seq2seq.decode.translator.Translation` ``t`` of ``line`` (decoded with attention)."""
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
