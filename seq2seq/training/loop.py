"""The training loop: it only trains, validates and saves; :mod:`seq2seq.training` builds its parts
and :mod:`seq2seq.training.step` holds the step itself.

``last.pt`` holds everything needed to continue exactly where a run stopped (model, optimizer,
schedule, epoch and batch position, every rank's RNG state, early-stopping state); re-running
``train`` on the same run directory continues from it. ``best.pt`` holds the parameters with the
best dev BLEU. SIGINT and SIGTERM stop every rank after the same step (:mod:`seq2seq.training.signals`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional

import torch

from seq2seq.config.load import save_config
from seq2seq.config.schema import Config, TrainConfig
from seq2seq.config.values import read_yaml
from seq2seq.constants import AVERAGED, CONFIG, checkpoint_file, checkpoints_dir
from seq2seq.data.batches import epoch_batches, epoch_size
from seq2seq.data.tokenizer import fingerprint_matches, tokenizers_fingerprint
from seq2seq.decode.translator import Translator
from seq2seq.errors import UserError
from seq2seq.evaluation.metrics import score
from seq2seq.model.network import count_parameters
from seq2seq.model.precision import load_scaler_state
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs.ownership import remember_overrides
from seq2seq.runs.settings import differences, refuse_differences, settings_differences
from seq2seq.training import rng
from seq2seq.training import signals as stopping
from seq2seq.training.distributed import Dist
from seq2seq.training.monitor import Monitor
from seq2seq.training.prefetch import Ahead
from seq2seq.training.signals import stop_flag as _interrupt_flag
from seq2seq.training.step import Parts, TrainData, Window, dev_loss, rank_shares, train_step


@dataclasses.dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch: int = 0  # next batch of this epoch
    best_bleu: float = -1.0  # the dev BLEU of best.pt
    best_loss: float = math.inf  # the dev loss of best.pt
    best_step: int = 0
    bad_validations: int = 0
    stopped_early: bool = False


def budget_spent(p: Progress, tc: TrainConfig) -> bool:
    """Whether a run at progress ``p`` has nothing left to train under ``tc`` (its steps, epochs or
    early stopping)."""
    spent = (tc.max_steps and p.step >= tc.max_steps) or (tc.max_epochs and p.epoch >= tc.max_epochs)
    return bool(p.stopped_early or spent)


def refuse_other_settings_if_finished(cfg: Config) -> None:
    """A finished run given other settings: name every differing key before anything is built or
    written (token ids, logs), so its files stay as they are; a run with budget left resumes."""
    last, path = checkpoint_file(cfg.run_path, "last"), cfg.run_path / CONFIG
    if not (last.is_file() and path.is_file()):
        return
    found = settings_differences(read_yaml(path, "run config"), cfg)
    if not found:  # the run's own settings: last.pt is read once, by the resume
        return
    saved = ckpt_io.load(last).get("progress") or {}
    progress = Progress(**{f.name: saved[f.name] for f in dataclasses.fields(Progress) if f.name in saved})
    if not budget_spent(progress, cfg.train):
        return
    refuse_differences(
        cfg.run_path,
        found,
        f"it ended at step {progress.step}, so nothing was trained and {path} is unchanged; give "
        f"run_dir=... to train a new run with these settings (or raise max_steps/max_epochs to continue)",
    )


def is_improvement(metric: str, bleu: float, loss: float, best: Progress) -> bool:
    """Whether a validation beats best.pt's: higher dev BLEU (``bleu``), or lower dev loss (``loss`` and
    ``ppl``: perplexity is exp(loss), the same order)."""
    return bleu > best.best_bleu if metric == "bleu" else loss < best.best_loss


class Trainer:
    """The loop over parts built elsewhere: train steps, periodic validation, checkpoints, resume."""

    def __init__(
        self,
        cfg: Config,
        parts: Parts,
        data: TrainData,
        dist: Dist,
        translator: Translator,
        log: Optional[Callable[[str], None]] = None,
    ):
        """Continues from ``last.pt`` when the run has one; rank 0 opens the run's logs (and writes its
        config.yaml once there is something to train), the other ranks log nothing."""
        self.cfg, self.parts, self.data, self.dist = cfg, parts, data, dist
        self.model, self.device = parts.model, parts.device
        self.translator = translator  # the validation's decoding path (the model under training)
        self.fingerprint = tokenizers_fingerprint(translator.src_tok, translator.tgt_tok)
        self.run = cfg.run_path
        self.ckpt_dir = checkpoints_dir(self.run)
        self.progress = Progress()
        self.resumed = self.try_resume()
        self.last_saved = -1  # the step last.pt was last written at (rank 0)
        self.monitor: Optional[Monitor] = None
        self.log: Callable[[str], None] = lambda *_: None
        if dist.main:  # only rank 0 logs, validates and writes
            tc = cfg.train
            self.monitor = Monitor(
                self.run, self.progress.step, tc.max_steps or None, tensorboard=tc.tensorboard
            )
            self.log = log or self.monitor.log

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.parts.optimizer

    # ---- checkpoints -------------------------------------------------------------------------
    def _payload(self, full: bool, rng_states: Optional[list]) -> dict:
        p = {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "src_vocab": len(self.translator.src_tok),
            "tgt_vocab": len(self.translator.tgt_tok),
            "tokenizers": self.fingerprint,
            "progress": dataclasses.asdict(self.progress),
            "schedule": self.parts.schedule.state_dict(),
        }
        if full:
            p.update(
                optimizer=self.optimizer.state_dict(),
                scaler=self.parts.scaler.state_dict(),
                rng=rng_states,  # one entry per rank (seq2seq.training.rng)
                rng_cpu=rng_states[0]["cpu"],  # rank 0's, as before per-rank states
            )
        return p

    def rng_states(self) -> list[dict]:
        """Every rank's generator states, in rank order (collective: all ranks call it)."""
        return self.dist.gather(rng.capture(self.device))

    def save(self, name: str, full: bool = True, rng_states: Optional[list] = None) -> None:
        """Rank 0 writes ``name``.pt; a full one needs ``rng_states`` (:meth:`rng_states`)."""
        if self.dist.main:
            ckpt_io.save(self.ckpt_dir / f"{name}.pt", self._payload(full, rng_states))

    def try_resume(self) -> bool:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            return False
        # to the CPU: load_state_dict copies onto the parameters' device, and Adam then keeps its
        # `step` counters where a fresh optimizer keeps them (on the CPU unless fused/capturable)
        ckpt = ckpt_io.load(path)
        if not fingerprint_matches(ckpt.get("tokenizers"), self.translator.src_tok, self.translator.tgt_tok):
            raise UserError(
                f"{path} was trained with another tokenizer; delete {self.ckpt_dir} or choose another run_dir"
            )
        found = differences(ckpt["config"]["model"], self.cfg.to_dict()["model"], "model.")
        refuse_differences(
            path,
            found,
            f"the model keys must match to resume; delete {self.ckpt_dir} or choose another run_dir",
        )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        load_scaler_state(self.parts.scaler, ckpt["scaler"])
        progress = dict(ckpt["progress"])
        legacy = {"scale": progress.pop("lr_scale", 1.0), "bad": progress.pop("lr_bad", 0)}  # before schedule
        self.parts.schedule.load_state_dict(ckpt.get("schedule", legacy))
        self.progress = Progress(**progress)
        rng.restore(ckpt, self.dist.rank, self.device, self.cfg.train.seed, self.progress.step)
        return True

    # ---- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """(dev loss per token, dev BLEU) with the model in eval mode; logs a few samples."""
        d = self.data
        self.model.eval()
        loss = dev_loss(self.parts, d, self.cfg.train.batch_tokens)
        dc = dataclasses.replace(self.cfg.decode, beam_size=self.cfg.train.valid_beam, n_best=1)
        hyps = self.translator.translate(d.dev_lines, dc)  # in full precision, as evaluate and translate do
        bleu = score(hyps, d.dev_refs, self.cfg.data.tgt_lang, self.cfg.decode.bleu_tokenize)["bleu"]
        for i in range(min(self.cfg.train.samples, len(hyps))):
            self.log(f"  sample {i}: {d.dev_lines[i]!r} -> {hyps[i]!r} (ref {d.dev_refs[i]!r})")
        self.model.train()
        return loss, bleu

    def _check(self) -> None:
        """Validate (rank 0), update the schedule and early stopping, save best/last; all ranks then
        continue with rank 0's progress and schedule."""
        rng_states = self.rng_states()  # before validation, which draws no random numbers
        if self.dist.main:
            self._validate_and_save(rng_states)
        self.progress, schedule = self.dist.broadcast((self.progress, self.parts.schedule.state_dict()))
        self.parts.schedule.load_state_dict(schedule)
        self.dist.barrier()

    def _validate_and_save(self, rng_states: list) -> None:
        p, tc = self.progress, self.cfg.train
        dev_loss, bleu = self.validate()
        improved = is_improvement(tc.early_stopping, bleu, dev_loss, p)
        if improved:
            p.best_bleu, p.best_loss, p.best_step, p.bad_validations = bleu, dev_loss, p.step, 0
        else:
            p.bad_validations += 1
        self.parts.schedule.observe(improved)
        if tc.patience and p.bad_validations >= tc.patience:
            p.stopped_early = True
        lr = self.parts.schedule.lr(p.step + 1)
        self.monitor.scalars("dev", p.step, {"loss": dev_loss, "bleu": bleu, "lr": lr})
        self.log(
            f"validation step {p.step}: dev loss {dev_loss:.4f} ppl {math.exp(min(dev_loss, 50)):.2f} "
            f"BLEU {bleu:.2f} (best {p.best_bleu:.2f} at step {p.best_step}) lr {lr:.2e}"
        )
        self.save("last", rng_states=rng_states)  # first: what a resume needs
        self.last_saved = p.step
        if improved:
            self.save("best", full=False)
        if tc.keep_checkpoints:  # parameters only, for seq2seq average
            self.save(f"step-{p.step:08d}", full=False)
            for old in ckpt_io.step_checkpoints(self.ckpt_dir)[: -tc.keep_checkpoints]:
                old.unlink()

    # ---- the loop ----------------------------------------------------------------------------
    def budget_left(self) -> bool:
        return not budget_spent(self.progress, self.cfg.train)

    def _prepare(self, micro: list[list[int]], epoch: int = 0) -> tuple[list, int]:
        """This rank's collated shares of ``micro`` (batches of ``epoch``) and the global target tokens
        (see rank_shares)."""
        return rank_shares(micro, self.data, self.dist, pin=self.device.type == "cuda", epoch=epoch)

    def _train_step(
        self, micro: list[list[int]], prepared=None, nll: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step over ``micro`` (devices x accum_steps batches of sentence indices), whose
        shares may already be ``prepared`` (:meth:`_prepare`): (this rank's summed loss, gradient norm,
        global target tokens); adds the unsmoothed NLL to ``nll``."""
        shares, total = prepared or self._prepare(micro, self.progress.epoch)
        lr = self.parts.schedule.lr(self.progress.step + 1)
        loss, norm = train_step(self.parts, shares, self.dist.world / total, lr, self.cfg.train, nll)
        return loss, norm, total

    def train(self) -> Progress:
        """Train until the budget is spent or early stopping; returns the final progress."""
        try:
            return self._loop(self.resumed)
        finally:
            if self.monitor is not None:
                self.monitor.close()
            self.dist.close()

    def _log_window(self, w: Window) -> None:
        """One log line (and metrics) for the steps since the last one: the only host syncs."""
        p, stats = self.progress, w.stats(self.dist, self.optimizer.param_groups[0]["lr"])
        self.log(
            f"step {p.step} epoch {p.epoch + 1}: loss {stats['loss']:.4f} nll {stats['nll']:.4f} "
            f"{stats['tokens_per_s']:,.0f} tgt tok/s lr {stats['lr']:.2e} grad norm {stats['grad_norm']:.2f} "
            f"(max {stats['grad_norm_max']:.2f})"
        )
        if self.monitor is not None:
            self.monitor.scalars("train", p.step, stats)
            self.monitor.advance(
                loss=f"{stats['loss']:.3f}", tok_s=f"{stats['tokens_per_s']:,.0f}", lr=f"{stats['lr']:.1e}"
            )
        w.reset()

    def _loop(self, resumed: bool) -> Progress:
        p = self.progress
        self.log(
            f"{'resuming at step ' + str(p.step) if resumed else 'training'}: {count_parameters(self.model):,} "
            f"parameters, {len(self.data.train_src)} training pairs{self._epoch_note()}, device {self.device}"
            f"{f' x {self.dist.world} processes' if self.dist.world > 1 else ''}"
            f"{', amp ' + str(self.parts.amp_dtype).replace('torch.', '') if self.parts.amp_dtype else ''}, "
            f"{torch.get_num_threads()} threads"
        )
        self.log(global_batch(self.cfg.train.batch_tokens, self.dist.world, self.cfg.train.accum_steps))
        if self.parts.precision:
            self.log(f"precision: {self.parts.precision}")
        if not self.budget_left():
            self.log(
                f"nothing to do: the run already ended at step {p.step} (best dev BLEU {p.best_bleu:.2f})"
            )
            self.average_last(only_if_stale=True)  # a run stopped between its last validation and this
            return p
        if self.dist.main:
            save_config(self.cfg, self.run / CONFIG)
            remember_overrides(self.run, self.cfg)
        self.model.train()
        window = Window(torch.zeros((), device=self.device), torch.zeros((), device=self.device))
        validated_at = -1
        ahead = Ahead(self._prepare)  # the next step's batches, collated while this one runs
        try:
            with _interrupt_flag() as flag:
                while self.budget_left():
                    batches = epoch_batches(
                        self.data.train_src.lengths,
                        self.data.train_tgt.lengths,
                        self.cfg.train.batch_tokens,
                        self.cfg.train.seed,
                        self.progress.epoch,
                        self.data.shares,
                    )
                    while self.progress.batch < len(batches) and self.budget_left():
                        due = self._step(batches, window, ahead)
                        signum = stopping.agreed(flag, self.dist)  # every rank stops after the same step
                        if signum:  # save first: torchrun kills the workers ~30 s after the signal
                            self._stop(signum, skipped=due)
                        if due:
                            self._check()  # replaces self.progress with rank 0's
                            window.start = time.perf_counter()
                            validated_at = self.progress.step
                    if self.progress.batch >= len(batches):
                        self.progress.epoch, self.progress.batch = self.progress.epoch + 1, 0
        finally:
            ahead.close()
        p = self.progress
        if validated_at != p.step and not p.stopped_early:
            self._check()
            p = self.progress
        why = "early stopping" if p.stopped_early else "budget reached"
        self.log(f"finished at step {p.step} ({why}): best dev BLEU {p.best_bleu:.2f} at step {p.best_step}")
        self.average_last()
        return p

    def average_last(self, only_if_stale: bool = False) -> None:
        """train.average_last = N (rank 0): ``checkpoints/averaged.pt`` from the newest N step checkpoints,
        with the function of ``seq2seq average``; its dev loss and BLEU are logged and recorded in
        metrics.jsonl (kind "averaged"). ``only_if_stale``: not when averaged.pt already averages them."""
        n = self.cfg.train.average_last
        if not n or not self.dist.main:
            return
        paths = ckpt_io.step_checkpoints(self.ckpt_dir)[-n:]
        out = checkpoint_file(self.run, AVERAGED)
        if not paths:
            self.log(f"no step checkpoints to average (train.average_last {n}): {out.name} not written")
            return
        names = [p.name for p in paths]
        if only_if_stale and out.is_file() and ckpt_io.load(out).get("averaged_from") == names:
            return
        averaged = ckpt_io.average(paths, out)["model"]
        trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(averaged)
        try:
            dev_loss, bleu = self.validate()
        finally:
            self.model.load_state_dict(trained)
        self.monitor.scalars(
            AVERAGED, self.progress.step, {"loss": dev_loss, "bleu": bleu, "checkpoints": len(paths)}
        )
        fewer = f" (train.average_last {n}, but only {len(paths)} kept)" if len(paths) < n else ""
        self.log(
            f"averaged {len(paths)} checkpoints ({', '.join(names)}) -> {out}{fewer}: dev loss {dev_loss:.4f} "
            f"BLEU {bleu:.2f} (best.pt {self.progress.best_bleu:.2f})"
        )

    def _epoch_note(self) -> str:
        """With weighted corpora (data.sources): how many pairs an epoch draws."""
        shares = self.data.shares
        return f" ({epoch_size(shares)} an epoch by the sources' weights)" if shares else ""

    def _step(self, batches: list[list[int]], window: Window, ahead: Ahead) -> bool:
        """One training step at the current position of this epoch's ``batches`` and its log line; True
        when validation is due (every valid_every steps: the loop validates after the stop check)."""
        p, tc = self.progress, self.cfg.train
        per_step = tc.accum_steps * self.dist.world  # per-device batches: accum_steps on every device
        micro = batches[p.batch : p.batch + per_step]
        after = p.batch + len(micro)
        last = tc.max_steps and p.step + 1 >= tc.max_steps
        upcoming = [] if last else batches[after : after + per_step]  # this epoch's next step
        prepared = ahead.get(
            (p.epoch, p.batch), (micro, p.epoch), (p.epoch, after) if upcoming else None, (upcoming, p.epoch)
        )
        window.add(*self._train_step(micro, prepared, window.nll))
        p.step, p.batch = p.step + 1, after
        if p.step % tc.log_every == 0:
            self._log_window(window)
        elif self.monitor is not None:
            self.monitor.advance()
        return p.step % tc.valid_every == 0

    def _stop(self, signum: int, skipped: bool = False) -> None:
        """After a signal (agreed by every rank): save last.pt once, before anything else (a validation
        due at this step is ``skipped``: torchrun kills the workers ~30 s after forwarding a signal),
        then leave (seq2seq.training.signals)."""
        rng_states = self.rng_states()
        if self.last_saved != self.progress.step:  # not already written at this step
            self.save("last", rng_states=rng_states)
        self.dist.barrier()  # no rank exits before rank 0 has saved
        self.log(
            f"{stopping.describe(signum)} at step {self.progress.step}: saved {self.ckpt_dir / 'last.pt'}"
            f"{' (before its validation)' if skipped else ''}; run train again to resume"
        )
        stopping.exit_for(signum)


def global_batch(per_device: int, devices: int, accum_steps: int) -> str:
    """The log line saying how large an optimizer step's batch is: ``train.batch_tokens`` is per device."""
    return (
        f"global batch {per_device * devices * accum_steps:,} tokens = {per_device:,} per device x "
        f"{devices} device{'s' if devices > 1 else ''} x {accum_steps} accumulation "
        f"step{'s' if accum_steps > 1 else ''}"
    )
