"""Training on the tiny embedded recipe: outputs, exact resume, no-op reruns, config guards, learning."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import random_ids, tiny_model, tiny_recipe_dict

from seq2seq.config.load import from_dict, load_config
from seq2seq.config.schema import Config
from seq2seq.data.batches import collate, make_batches
from seq2seq.data.corpus import download
from seq2seq.data.tokenizer import train_tokenizers
from seq2seq.decode.loading import load_run
from seq2seq.errors import UserError
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.training.loop import Progress, is_improvement
from seq2seq.training.setup import build_trainer, train
from seq2seq.training.step import loss_fn


def quiet(msg: str) -> None:
    pass


def prepare(recipe: Path, overrides=(), spm_from: Path | None = None) -> Config:
    """Config with the corpus downloaded and tokenizers in its run_dir (copied from ``spm_from`` if given)."""
    cfg = load_config(recipe, list(overrides))
    if not (cfg.data_dir / "manifest.json").is_file():
        download(cfg, log=quiet)
    if spm_from is not None:
        shutil.copytree(spm_from / "spm", cfg.run_path / "spm", dirs_exist_ok=True)
    else:
        train_tokenizers(cfg, log=quiet)
    return cfg


def ckpt(run: Path, name: str = "last") -> dict:
    return ckpt_io.load(run / "checkpoints" / f"{name}.pt")


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_same_optimizer(a: dict, b: dict):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        assert_same_tensors(a["state"][i], b["state"][i])


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def log_messages(run: Path) -> str:
    """train.log without its timestamps; every line must have one (the wall time of the message)."""
    lines = (run / "train.log").read_text(encoding="utf-8").splitlines()
    assert lines and all(TIMESTAMP.match(x) for x in lines), lines[:3]
    return "".join(TIMESTAMP.sub("", x, count=1) + "\n" for x in lines)


def logged_losses(run: Path) -> list[float]:
    text = log_messages(run)
    return [float(x) for x in re.findall(r"^step \d+ epoch \d+: loss ([0-9.]+)", text, re.M)]


def logged_nlls(run: Path) -> list[float]:
    text = log_messages(run)
    return [float(x) for x in re.findall(r"^step \d+ epoch \d+: loss [0-9.]+ nll ([0-9.]+)", text, re.M)]


def dev_losses(run: Path) -> list[float]:
    text = log_messages(run)
    return [float(x) for x in re.findall(r"validation step \d+: dev loss ([0-9.]+)", text)]


def batches_per_epoch(cfg: Config) -> int:
    trainer = build_trainer(cfg, log=quiet)
    sizes = {
        len(
            make_batches(
                [len(x) for x in trainer.data.train_src],
                [len(y) for y in trainer.data.train_tgt],
                cfg.train.batch_tokens,
                cfg.train.seed,
                epoch,
            )
        )
        for epoch in range(3)
    }
    assert len(sizes) == 1
    return sizes.pop()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, run_dir) of one uninterrupted 12-step run of the tiny recipe; treat as read-only."""
    tmp = tmp_path_factory.mktemp("reference")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp)), encoding="utf-8")
    cfg = prepare(recipe)
    progress = train(cfg)
    assert progress.step == 12
    return recipe, cfg.run_path


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


# ---- a short run ---------------------------------------------------------------------------------


def test_short_run_writes_checkpoints_config_and_log(tiny_recipe):
    cfg = prepare(tiny_recipe)
    run = cfg.run_path
    progress = train(cfg)
    assert isinstance(progress, Progress) and progress.step == 12
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "config.yaml", "train.log"):
        assert (run / name).is_file(), name
    assert from_dict(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))) == cfg
    log = log_messages(run)
    assert log.startswith("training: ")
    assert "finished at step 12 (budget reached)" in log
    assert len(dev_losses(run)) == 2  # valid_every = 6
    assert len(logged_losses(run)) == 4  # log_every = 3

    last, best = ckpt(run, "last"), ckpt(run, "best")
    assert last["progress"]["step"] == 12
    assert {"optimizer", "rng_cpu", "scaler"} <= last.keys()
    assert "optimizer" not in best, "best.pt holds the parameters only"
    assert best["progress"]["step"] == best["progress"]["best_step"] == last["progress"]["best_step"]
    assert last["config"] == cfg.to_dict()
    assert len(list((run / "checkpoints").iterdir())) == 2, "no temporary files left"

    # the run directory is enough to rebuild the model
    loaded_cfg, model = load_run(run, "last")
    assert loaded_cfg == cfg and not model.training
    assert_same_tensors(model.state_dict(), last["model"])


# ---- exact resume --------------------------------------------------------------------------------


def test_resume_is_exact(reference_run, tmp_path):
    """Run B stops at step 6 and is continued to 12: bit-identical to the uninterrupted run A."""
    recipe, run_a = reference_run
    cfg_b = prepare(recipe, [f"run_dir={tmp_path / 'B'}", "max_steps=6"], spm_from=run_a)
    assert train(cfg_b).step == 6
    half = ckpt(cfg_b.run_path)
    assert half["progress"]["step"] == 6

    cfg_b12 = load_config(recipe, [f"run_dir={tmp_path / 'B'}", "max_steps=12"])
    assert train(cfg_b12).step == 12
    assert "resuming at step 6" in log_messages(cfg_b.run_path)

    a, b = ckpt(run_a), ckpt(cfg_b.run_path)
    assert_same_tensors(a["model"], b["model"])
    assert_same_optimizer(a["optimizer"], b["optimizer"])
    assert torch.equal(a["rng_cpu"], b["rng_cpu"])
    assert a["progress"] == b["progress"]
    assert (a["progress"]["step"], a["progress"]["epoch"], a["progress"]["batch"]) == (12, 0, 12)
    assert_same_tensors(ckpt(run_a, "best")["model"], ckpt(cfg_b.run_path, "best")["model"])


@pytest.mark.parametrize(
    "batch_tokens,stop,valid_every",
    [
        (2000, 6, 6),  # 6 batches per epoch: B stops exactly at the end of the first epoch
        (1500, 4, 4),  # 8 batches per epoch: B stops mid-epoch, A crosses the epoch boundary later
    ],
)
def test_resume_is_exact_across_epoch_boundaries(tiny_recipe, tmp_path, batch_tokens, stop, valid_every):
    common = [f"batch_tokens={batch_tokens}", f"valid_every={valid_every}", "log_every=5"]
    cfg_a = prepare(tiny_recipe, common + [f"run_dir={tmp_path / 'A'}"])
    progress_a = train(cfg_a, log=quiet)
    cfg_b = prepare(
        tiny_recipe, common + [f"run_dir={tmp_path / 'B'}", f"max_steps={stop}"], spm_from=cfg_a.run_path
    )
    train(cfg_b, log=quiet)
    progress_b = train(load_config(tiny_recipe, common + [f"run_dir={tmp_path / 'B'}"]), log=quiet)
    assert progress_a == progress_b and progress_a.step == 12
    a, b = ckpt(cfg_a.run_path), ckpt(cfg_b.run_path)
    assert_same_tensors(a["model"], b["model"])
    assert_same_optimizer(a["optimizer"], b["optimizer"])
    assert a["progress"] == b["progress"]
    # every epoch goes through all of its batches: 12 steps with n batches per epoch end in
    # epoch (12 - 1) // n at batch 12 - epoch * n (last.pt is written before the epoch rolls over)
    n = batches_per_epoch(cfg_a)
    epoch = (12 - 1) // n
    assert epoch >= 1, "the run crosses an epoch boundary"
    assert (a["progress"]["epoch"], a["progress"]["batch"]) == (epoch, 12 - epoch * n)


@pytest.mark.parametrize(
    "arch",
    [
        ["enc_cell=lstm", "dec_cell=gru", "dec_layers=2", "coverage=true", "coverage_penalty=0.3"],
        ["enc_cell=rnn", "dec_cell=rnn", "bidirectional=false", "attention=none", "input_feeding=false"],
    ],
    ids=["lstm-gru-coverage", "rnn-rnn-unidirectional-none"],
)
def test_resume_is_exact_for_other_architectures(reference_run, tmp_path, arch):
    """The architecture keys' runs resume exactly too, load from their run directory, and translate with
    attention output (attention none: weights 0); validation's beam search uses the coverage penalty."""
    from seq2seq.decode.heatmap import plot_attention
    from seq2seq.decode.translator import Translator

    recipe, run_a = reference_run
    common = arch + ["valid_every=3", "log_every=2", "valid_beam=2"]
    cfg_a = prepare(recipe, common + [f"run_dir={tmp_path / 'A'}", "max_steps=6"], spm_from=run_a)
    train(cfg_a)  # (a log function of its own would leave no train.log)
    cfg_b = prepare(recipe, common + [f"run_dir={tmp_path / 'B'}", "max_steps=3"], spm_from=run_a)
    train(cfg_b, log=quiet)
    train(load_config(recipe, common + [f"run_dir={tmp_path / 'B'}", "max_steps=6"]), log=quiet)
    a, b = ckpt(cfg_a.run_path), ckpt(cfg_b.run_path)
    assert_same_tensors(a["model"], b["model"])
    assert_same_optimizer(a["optimizer"], b["optimizer"])
    assert a["progress"] == b["progress"] and a["progress"]["step"] == 6
    assert all(0 < x < 20 for x in logged_losses(cfg_a.run_path))

    loaded_cfg, model = load_run(cfg_a.run_path, "last")
    assert loaded_cfg.model == cfg_a.model
    assert_same_tensors(model.state_dict(), a["model"])
    translator = Translator.from_run_dirs([cfg_a.run_path], "last", "cpu")
    dc = translator.decode_config(beam_size=2, n_best=2)
    (found,) = translator.translations(translator.src_tok.encode(["two plus three"]), dc, attention=True)
    assert (
        len(found) == 2 and found[0].attention.size(1) == len(translator.src_tok.pieces("two plus three")) + 1
    )
    if cfg_a.model.attention == "none":
        assert (found[0].attention == 0).all()
    assert plot_attention(translator, "two plus three", tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_validation_does_not_change_training(reference_run, tmp_path):
    """Validating more often (with no LR plateau reductions possible) leaves the parameters unchanged."""
    recipe, run_a = reference_run
    cfg = prepare(recipe, [f"run_dir={tmp_path / 'V'}", "valid_every=4", "lr_patience=100"], spm_from=run_a)
    progress = train(cfg, log=quiet)
    assert progress.step == 12 and ckpt(cfg.run_path)["schedule"]["scale"] == 1.0
    assert len(dev_losses(run_a)) == 2
    assert_same_tensors(ckpt(run_a)["model"], ckpt(cfg.run_path)["model"])


# ---- reruns and guards ---------------------------------------------------------------------------


def test_rerun_with_the_same_budget_does_nothing(reference_run, tmp_path):
    recipe, run_a = reference_run
    run = copy_run(run_a, tmp_path / "again")
    before = (run / "checkpoints" / "last.pt").read_bytes()
    best_before = (run / "checkpoints" / "best.pt").read_bytes()
    messages: list[str] = []
    progress = train(load_config(recipe, [f"run_dir={run}"]), log=messages.append)
    assert progress.step == 12
    assert any(m.startswith("nothing to do") for m in messages), messages
    assert not any(m.startswith("step ") for m in messages), "no training step was taken"
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert (run / "checkpoints" / "best.pt").read_bytes() == best_before


@pytest.mark.parametrize("override", ["model.dropout=0.2", "emb_dim=24", "attention=general"])
def test_resuming_with_another_model_config_is_refused(reference_run, tmp_path, override):
    recipe, run_a = reference_run
    run = copy_run(run_a, tmp_path / "other")
    before = (run / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(UserError, match=r"was trained with other settings \(model\.") as e:
        train(load_config(recipe, [f"run_dir={run}", "max_steps=20", override]), log=quiet)
    assert "last.pt" in str(e.value)
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_resuming_with_other_tokenizers_is_refused(reference_run, tmp_path):
    recipe, run_a = reference_run
    run = copy_run(run_a, tmp_path / "retok")
    cfg = load_config(recipe, [f"run_dir={run}", "max_steps=20", "spm.vocab_size=100"])
    with pytest.raises(UserError, match="checkpoints"):  # spm itself refuses: checkpoints depend on spm/
        train_tokenizers(cfg, log=quiet)
    other = load_config(recipe, [f"run_dir={tmp_path / 'other'}", "spm.vocab_size=100"])
    train_tokenizers(other, log=quiet)  # so other tokenizers are put there by hand
    for name in ("joint.model", "joint.vocab"):
        shutil.copyfile(other.run_path / "spm" / name, run / "spm" / name)
    with pytest.raises(UserError, match="tokenizer"):
        train(load_config(recipe, [f"run_dir={run}", "max_steps=20"]), log=quiet)


def test_training_can_extend_a_finished_run(reference_run, tmp_path):
    recipe, run_a = reference_run
    run = copy_run(run_a, tmp_path / "longer")
    progress = train(load_config(recipe, [f"run_dir={run}", "max_steps=15", "valid_every=3"]), log=quiet)
    assert progress.step == 15
    assert ckpt(run)["progress"]["step"] == 15


# ---- learning ------------------------------------------------------------------------------------


def test_loss_decreases(tiny_recipe):
    cfg = prepare(tiny_recipe, ["max_steps=36", "valid_every=36", "log_every=6", "dropout=0.0"])
    trainer = build_trainer(cfg, log=quiet)
    dev_before, _ = trainer.validate()
    trainer.train()
    dev_after, _ = trainer.validate()
    assert dev_after < dev_before - 0.5, (dev_before, dev_after)
    progress = ckpt(cfg.run_path)["progress"]
    assert progress["step"] == 36


def test_logged_training_loss_decreases(reference_run):
    _, run_a = reference_run
    losses = logged_losses(run_a)
    assert len(losses) == 4
    assert losses[-1] < losses[0]
    dev = dev_losses(run_a)
    assert dev[-1] < dev[0]


# ---- the GPU path, emulated on the CPU -----------------------------------------------------------


def test_resuming_with_fp16_skips_the_empty_state_of_a_disabled_scaler(reference_run, tmp_path, monkeypatch):
    """An fp32 (or bf16) run saves its disabled scaler as {}; resuming it with an enabled scaler (fp16)
    keeps the fresh scaler instead of raising."""
    import seq2seq.training.setup as training

    recipe, run_a = reference_run
    run = copy_run(run_a, tmp_path / "fp16")
    assert ckpt(run)["scaler"] == {}
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=512.0)  # CPU stand-in for CUDA's
    monkeypatch.setattr(training, "grad_scaler", lambda dtype: enabled)
    trainer = build_trainer(load_config(recipe, [f"run_dir={run}", "max_steps=14"]), log=quiet)
    assert trainer.resumed and trainer.progress.step == 12
    assert trainer.parts.scaler is enabled and enabled.get_scale() == 512.0


def test_resume_keeps_adams_step_counters_where_a_fresh_optimizer_keeps_them(
    reference_run, tmp_path, monkeypatch
):
    """last.pt is loaded to the CPU (map_location=device put Adam's `step` counters on the GPU: two host
    syncs per parameter per step); load_state_dict then places every state tensor."""
    import seq2seq.training.loop as loop

    recipe, run_a = reference_run
    run = copy_run(run_a, tmp_path / "placed")
    locations = []
    real_load = loop.ckpt_io.load
    monkeypatch.setattr(
        loop.ckpt_io, "load", lambda path, *a, **k: locations.append((a, k)) or real_load(path, *a, **k)
    )
    trainer = build_trainer(load_config(recipe, [f"run_dir={run}"]), log=quiet)
    assert trainer.resumed and locations == [((), {})], "loaded to the CPU (checkpoint.load's default)"
    fresh = build_trainer(prepare(recipe, [f"run_dir={tmp_path / 'fresh'}"], spm_from=run_a), log=quiet)
    for p in fresh.model.parameters():
        p.grad = torch.zeros_like(p)
    fresh.optimizer.step()
    resumed, new = trainer.optimizer.state, fresh.optimizer.state
    for p, q in zip(trainer.model.parameters(), fresh.model.parameters()):
        for name, value in resumed[p].items():
            assert (value.device, value.dtype) == (new[q][name].device, new[q][name].dtype), name
        assert resumed[p]["exp_avg"].device == p.device


def test_next_batches_are_collated_in_a_background_thread(reference_run, tmp_path, monkeypatch):
    """Every step but an epoch's first takes batches prepared while the previous step ran; the run is
    bit-identical to the reference run (which ran with the same mechanism: the resume tests compare
    it with interrupted runs)."""
    import threading

    import seq2seq.training.loop as loop

    recipe, run_a = reference_run
    threads = []
    real = loop.rank_shares
    monkeypatch.setattr(
        loop, "rank_shares", lambda *a, **k: threads.append(threading.current_thread().name) or real(*a, **k)
    )
    cfg = prepare(recipe, [f"run_dir={tmp_path / 'T'}"], spm_from=run_a)
    assert train(cfg, log=quiet).step == 12
    assert threads[0] == threading.main_thread().name
    assert len(threads) == 12 and all(t.startswith("next-batch") for t in threads[1:]), threads
    assert_same_tensors(ckpt(run_a)["model"], ckpt(cfg.run_path)["model"])


def test_ahead_computes_synchronously_when_the_key_is_not_the_prepared_one():
    import threading

    from seq2seq.training.prefetch import Ahead

    calls = {}
    ahead = Ahead(lambda x: calls.setdefault(x, threading.current_thread().name) and x * 10)
    assert ahead.get("a", (1,), "b", (2,)) == 10
    assert ahead.get("b", (2,), "c", (3,)) == 20  # prepared in the background
    assert ahead.get("x", (5,)) == 50  # not what was prepared ("c" is dropped): computed now
    ahead.close()
    main = threading.main_thread().name
    assert calls[1] == main and calls[2].startswith("next-batch") and calls[5] == main
    failing = Ahead(lambda x: 1 // x)
    failing.get("a", (1,), "b", (0,))
    with pytest.raises(ZeroDivisionError):  # the thread's error surfaces in the loop
        failing.get("b", (0,))
    failing.close()


@pytest.mark.parametrize("native", [False, True])
def test_the_log_says_which_precision_auto_chose_and_why(reference_run, tmp_path, monkeypatch, native):
    recipe, run_a = reference_run
    run = copy_run(run_a, tmp_path / f"auto-{native}")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    messages: list[str] = []
    train(load_config(recipe, [f"run_dir={run}", "precision=auto"]), log=messages.append)
    lines = [m for m in messages if m.startswith("precision: ")]
    if native:
        assert lines == ["precision: bf16 autocast (auto: this CPU has native bf16, AVX512-BF16 or AMX)"]
    else:
        assert lines == ["precision: fp32 (auto: this CPU has no native bf16, AVX512-BF16 or AMX)"]
    assert messages[0].startswith("resuming at step 12") and ("amp bfloat16" in messages[0]) == native


def test_train_nll_is_the_unsmoothed_loss_of_the_step(tiny_recipe):
    """What the learning curves compare with the dev loss: the step's NLL without label smoothing."""
    from seq2seq.training.step import loss_fn, rank_shares

    cfg = prepare(tiny_recipe, ["dropout=0.0", "label_smoothing=0.2"])
    trainer = build_trainer(cfg, log=quiet)
    d, tc = trainer.data, cfg.train
    micro = make_batches(d.train_src.lengths, d.train_tgt.lengths, tc.batch_tokens, tc.seed, 0)[:1]
    ((batch, _),), _ = rank_shares(micro, d, trainer.dist)
    with torch.no_grad():  # dropout 0: the step's own forward gives these logits
        logits = trainer.model(batch.src, batch.lengths, batch.tgt_in)
        nll, smoothed = loss_fn(logits, batch.tgt_out, 0.0), loss_fn(logits, batch.tgt_out, 0.2)
    got = torch.zeros(())
    loss, _, _ = trainer._train_step(micro, nll=got)
    assert got.item() == pytest.approx(nll.item(), rel=1e-5)
    assert loss.item() == pytest.approx(smoothed.item(), rel=1e-5) and abs(loss.item() - got.item()) > 0.1


def test_logged_nll_beside_the_loss(reference_run):
    _, run_a = reference_run
    nlls, losses = logged_nlls(run_a), logged_losses(run_a)
    assert len(nlls) == len(losses) == 4 and nlls != losses


def test_fused_adam_on_the_cpu_equals_the_foreach_implementation():
    """setup_parts uses fused Adam on every device; on the CPU it must match the default (foreach)."""
    models = [tiny_model(seed=4).train() for _ in range(2)]
    optims = [
        torch.optim.Adam(models[0].parameters(), lr=1e-2, fused=True),
        torch.optim.Adam(models[1].parameters(), lr=1e-2, foreach=True),
    ]
    b = collate(random_ids(5, seed=1), random_ids(5, seed=2))
    for _ in range(3):
        for model, opt in zip(models, optims):
            opt.zero_grad()
            loss_fn(model(b.src, b.lengths, b.tgt_in), b.tgt_out, 0.1).backward()
            opt.step()
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_log_window_reports_the_mean_and_the_largest_step_gradient_norm(monkeypatch):
    """The log line's "grad norm" is the window's mean; grad_norm_max its largest single step (what
    a run without clipping wants to know), restarting with each window."""
    from seq2seq.training.distributed import Dist
    from seq2seq.training.step import Window

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = Dist(torch.device("cpu"))
    w = Window(torch.zeros(()), torch.zeros(()))
    for norm in (1.0, 7.5, 1.5):
        w.add(torch.tensor(1.0), torch.tensor(norm), tokens=10)
    stats = w.stats(dist, lr=0.1)
    assert stats["grad_norm"] == pytest.approx(10 / 3) and stats["grad_norm_max"] == 7.5
    w.reset()
    w.add(torch.tensor(1.0), torch.tensor(0.5), tokens=10)
    assert w.stats(dist, lr=0.1)["grad_norm_max"] == 0.5


@pytest.mark.parametrize(
    "metric, bleu, loss, improved",
    [
        ("bleu", 30.0, 2.5, True),  # higher BLEU, worse loss: BLEU decides
        ("bleu", 20.0, 1.0, False),
        ("loss", 20.0, 1.0, True),  # lower loss, worse BLEU: loss decides
        ("loss", 30.0, 2.5, False),
        ("ppl", 20.0, 1.0, True),
        ("ppl", 30.0, 2.0, False),  # equal is no improvement
    ],
)
def test_early_stopping_metric_decides_what_improves(metric, bleu, loss, improved):
    best = Progress(best_bleu=25.0, best_loss=2.0)
    assert is_improvement(metric, bleu, loss, best) is improved


def test_early_stopping_metric_is_a_checked_choice(tmp_path):
    assert (
        from_dict(tiny_recipe_dict(tmp_path, train={"early_stopping": "ppl"})).train.early_stopping == "ppl"
    )
    with pytest.raises(UserError, match="early_stopping"):
        from_dict(tiny_recipe_dict(tmp_path, train={"early_stopping": "chrf"}))
