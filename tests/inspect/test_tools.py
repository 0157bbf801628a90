"""Run-directory tools: checkpoint averaging, plots, info, decode tuning, metrics/TensorBoard."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import tiny_recipe_dict

from seq2seq.config.load import load_config
from seq2seq.data.corpus import download
from seq2seq.data.tokenizer import train_tokenizers
from seq2seq.errors import UserError
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.training.setup import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple:
    tmp = tmp_path_factory.mktemp("tools")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp, train={"keep_checkpoints": 2})))
    cfg = load_config(recipe)
    quiet = lambda *_: None  # noqa: E731
    download(cfg, log=quiet)
    train_tokenizers(cfg, log=quiet)
    train(cfg, log=quiet)
    return cfg, recipe


def test_average_of_identical_checkpoints_is_that_checkpoint(trained, tmp_path):
    cfg, _ = trained
    best = cfg.run_path / "checkpoints" / "best.pt"
    out = tmp_path / "avg.pt"
    ckpt_io.average([best, best, best], out)
    a, b = ckpt_io.load(best)["model"], ckpt_io.load(out)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_average_is_the_mean_and_keeps_only_n_step_checkpoints(trained, tmp_path):
    cfg, _ = trained
    steps = sorted((cfg.run_path / "checkpoints").glob("step-*.pt"))
    assert [p.name for p in steps] == ["step-00000006.pt", "step-00000012.pt"]  # keep_checkpoints=2
    out = tmp_path / "avg.pt"
    payload = ckpt_io.average(steps, out)
    assert payload["averaged_from"] == [p.name for p in steps]
    x, y, avg = (ckpt_io.load(p)["model"] for p in (*steps, out))
    key = "decoder.combine.weight"
    assert torch.allclose(avg[key], (x[key] + y[key]) / 2, atol=1e-7)
    assert not torch.equal(x[key], y[key])


def test_average_refuses_different_models(trained, tmp_path):
    cfg, _ = trained
    best = cfg.run_path / "checkpoints" / "best.pt"
    other = ckpt_io.load(best)
    other["model"] = {k: v[:1] if v.dim() else v for k, v in other["model"].items()}
    ckpt_io.save(tmp_path / "other.pt", other)
    with pytest.raises(UserError, match="different model"):
        ckpt_io.average([best, tmp_path / "other.pt"], tmp_path / "avg.pt")


def test_metrics_and_tensorboard_events_are_written(trained):
    cfg, _ = trained
    metrics = [json.loads(x) for x in (cfg.run_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["kind"] == "dev"] == [6, 12]
    train = [m for m in metrics if m["kind"] == "train"]
    assert train and all(
        {"loss", "tokens_per_s", "lr", "grad_norm", "grad_norm_max"} <= set(m) for m in train
    )
    assert all(m["grad_norm_max"] >= m["grad_norm"] > 0 for m in train)  # the largest step >= the mean
    assert list((cfg.run_path / "tensorboard").glob("events.out.tfevents.*"))


def test_plot_writes_curves_and_attention_pngs(trained, tmp_path):
    from seq2seq.inspect.plots import plot_run

    cfg, _ = trained
    paths = plot_run(cfg.run_path, tmp_path / "plots", sentences=2, log=lambda *_: None)
    assert [p.name for p in paths] == ["learning_curves.png", "attention-0.png", "attention-1.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_info_reports_the_run(trained):
    from seq2seq.inspect.info import format_info, run_info

    cfg, _ = trained
    info = run_info(cfg.run_path)
    assert info["progress"]["step"] == 12 and info["vocab"]["source"] == info["vocab"]["target"]
    assert info["parameters"] > 1000
    text = format_info(info)
    assert "step 12" in text and "bi-GRU 1x16" in text


def test_tune_decode_table_matches_real_decoding(trained):
    """Re-scoring a beam's n-best list for another alpha gives what decoding with that alpha gives."""
    import dataclasses

    from seq2seq.data.corpus import read_split
    from seq2seq.decode.translator import Translator
    from seq2seq.evaluation.metrics import score
    from seq2seq.evaluation.tune import tune_decode

    cfg, _ = trained
    best = tune_decode(cfg, [1, 3], [0.0, 1.0], log=lambda *_: None)
    table = (cfg.run_path / "tune-decode.dev.tsv").read_text().splitlines()
    assert table[0] == "beam_size\tlength_penalty\tbleu\tchrf" and len(table) == 5
    assert best["beam_size"] in (1, 3)
    translator = Translator.from_run_dirs([cfg.run_path])
    src, ref = read_split(cfg, "dev")
    for row in table[1:]:
        beam, alpha, bleu, _ = row.split("\t")
        dc = dataclasses.replace(cfg.decode, beam_size=int(beam), length_penalty=float(alpha), n_best=1)
        assert score(translator.translate(src, dc), ref)["bleu"] == float(bleu)


def test_tune_decode_breaks_a_bleu_tie_by_chrf_then_the_smaller_beam():
    from seq2seq.evaluation.tune import best_setting

    def row(beam, alpha, bleu, chrf):
        return {"beam_size": beam, "length_penalty": alpha, "bleu": bleu, "chrf": chrf}

    rows = [row(5, 1.0, 52.38, 68.89), row(5, 1.5, 52.38, 68.94), row(8, 1.0, 52.34, 69.5)]
    assert best_setting(rows) == rows[1]  # same BLEU: the higher chrF; a lower BLEU never wins
    rows = [row(8, 1.0, 30.0, 50.0), row(5, 1.0, 30.0, 50.0), row(5, 2.0, 30.0, 50.0)]
    assert best_setting(rows) == rows[1]  # all tied: the smaller beam, then the first alpha


def test_translate_attention_png(trained, tmp_path):
    cfg, _ = trained
    out = tmp_path / "attn" / "line-000002.png"  # --attention DIR: a PNG per non-empty line
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", str(cfg.run_path), "--attention", str(out.parent)],
        input="\ntwo plus two is four\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split("\n")) == 3
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_learning_curves_compare_nlls_and_read_older_metrics(trained, tmp_path):
    from seq2seq.inspect.plots import plot_curves

    cfg, _ = trained
    metrics = [json.loads(x) for x in (cfg.run_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [m for m in metrics if m["kind"] == "train"]
    assert train_rows and all(0 < m["nll"] and m["nll"] != m["loss"] for m in train_rows)
    assert plot_curves(cfg.run_path, tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    old = tmp_path / "old"  # a run logged before the train NLL was
    old.mkdir()
    (old / "metrics.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in m.items() if k != "nll"}) + "\n" for m in metrics)
    )
    assert plot_curves(old, tmp_path / "b.png").stat().st_size > 5000


def test_learning_curves_plot_the_logged_gradient_norm_and_the_clip(trained, tmp_path):
    from seq2seq.inspect.plots import curves_figure

    cfg, _ = trained
    train_rows = [m for m in map(json.loads, (cfg.run_path / "metrics.jsonl").read_text().splitlines())]
    train_rows = [m for m in train_rows if m["kind"] == "train"]
    fig = curves_figure(cfg.run_path)
    (ax,) = [a for a in fig.axes if a.get_title() == "gradient norm"]
    norm, clip = ax.lines
    assert list(norm.get_xdata()) == [m["step"] for m in train_rows]  # every log line's "grad norm"
    assert list(norm.get_ydata()) == [m["grad_norm"] for m in train_rows] and train_rows
    assert list(clip.get_ydata()) == [cfg.train.clip_norm] * 2  # train.clip_norm, dotted
    old = tmp_path / "old"  # no grad_norm logged, no config: the panel says so
    old.mkdir()
    (old / "metrics.jsonl").write_text(
        json.dumps({"kind": "train", "step": 3, "loss": 2.0, "lr": 1e-3}) + "\n"
    )
    (ax,) = [a for a in curves_figure(old).axes if a.get_title() == "gradient norm"]
    assert not ax.lines and [t.get_text() for t in ax.texts] == ["not logged"]


def test_clip_norm_zero_turns_clipping_off():
    import contextlib

    from conftest import random_ids, tiny_model

    from seq2seq.config.schema import TrainConfig
    from seq2seq.data.batches import collate
    from seq2seq.model.precision import grad_scaler
    from seq2seq.training.loss import TrainingLoss
    from seq2seq.training.schedule import Schedule
    from seq2seq.training.step import Parts, train_step

    batch = collate(random_ids(4, seed=2), random_ids(4, seed=3))
    grads = {}
    for clip in (0.0, 1e-3):
        model = tiny_model(seed=1).train()
        tc = TrainConfig(clip_norm=clip)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        parts = Parts(
            model,
            TrainingLoss(model, tc.label_smoothing),
            contextlib.nullcontext,
            opt,
            Schedule(tc),
            grad_scaler(None),
            None,
            torch.device("cpu"),
        )
        _, norm = train_step(parts, [(batch, 1.0)], 1.0 / batch.ntokens, 1.0, tc)
        grads[clip] = (norm.item(), torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item())
    assert grads[0.0][0] == pytest.approx(grads[1e-3][0])  # the norm before clipping is what is logged
    assert grads[0.0][1] == pytest.approx(grads[0.0][0], rel=1e-5) and grads[0.0][1] > 1e-2  # unclipped
    assert grads[1e-3][1] == pytest.approx(1e-3, rel=1e-3)


def test_attention_labels_are_readable():
    from seq2seq.decode.heatmap import label_layout, piece_label

    assert piece_label("▁the") == "␣the" and piece_label("s") == "s"
    assert label_layout(["␣on", "␣F", "eb", "ru", "ary", "</s>"])[1]  # short pieces: horizontal
    assert label_layout(["␣nineteen"] * 12) == (0.12 + 0.085 * 9, True)  # wider columns, still horizontal
    assert not label_layout(["␣" + "x" * 30] * 3)[1]  # very long pieces: slanted, never 90 degrees


def test_average_last_n_with_fewer_checkpoints_says_so(trained, tmp_path):
    cfg = trained[0]
    run = shutil.copytree(cfg.run_path, tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", "average", str(run), "--last", "5", "-o", "avg"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: --last 5, but the run keeps only 2 step checkpoints" in proc.stderr
    assert "averaged 2 checkpoints" in proc.stdout


def test_a_missing_checkpoint_lists_the_ones_that_exist(trained):
    cfg = trained[0]
    with pytest.raises(UserError, match=r"has no checkpoint nope.pt \(it has: best, last, step-00000006"):
        ckpt_io.resolve(cfg.run_path, "nope")


def test_heatmap_colours_span_the_weights_shown():
    """A weak model's diffuse attention (all weights below 0.3) still uses the whole colour range."""
    import numpy as np

    from seq2seq.decode.heatmap import colour_top

    assert colour_top(np.array([[0.1, 0.25], [0.2, 0.05]])) == 0.25
    assert colour_top(np.zeros((2, 2))) == 1e-6 and colour_top(np.zeros((0, 3))) == 1.0
