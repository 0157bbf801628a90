"""``seq2seq run``: the whole pipeline of a recipe, download -> spm -> train -> evaluate, rerunning only
the stages whose inputs or settings changed.

A stage is done when its output exists, the settings it last succeeded with (``<run_dir>/stamps/
<stage>.yaml``, written only after it succeeded) equal today's, and nothing upstream was redone after
it. The corpus keeps its own record: the data settings in its manifest.json. An interrupted or
failed stage writes no stamp, so the next run starts it again (training resumes from ``last.pt``);
no output of a stage is ever deleted here.

With ``nproc`` above 1 the train stage runs under torchrun (one process per GPU, or gloo on CPU).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import yaml

from seq2seq.config.schema import Config
from seq2seq.constants import MANIFEST, RESULTS_JSON, RESULTS_TXT, checkpoint_file, stamps_dir
from seq2seq.data.corpus import download, made_here
from seq2seq.data.tokenizer import spm_paths, train_tokenizers
from seq2seq.errors import UserError
from seq2seq.evaluation.stage import evaluate
from seq2seq.fileio import atomic_write_text
from seq2seq.runs.ownership import read_owner, stage_settings
from seq2seq.training.setup import train

STAGES = ("data", "spm", "train", "eval")


def settings_text(cfg: Config, stage: str) -> str:
    """A stage's settings as its stamp holds them (the same text ``seq2seq config --stamps`` writes)."""
    return yaml.safe_dump(stage_settings(cfg, stage), sort_keys=True, allow_unicode=True)


def stamp_path(cfg: Config, stage: str) -> Path:
    return stamps_dir(cfg.run_path) / f"{stage}.yaml"


def output_of(cfg: Config, stage: str) -> Path:
    """The file whose presence says a stage has produced something."""
    return {
        "data": cfg.data_dir / MANIFEST,
        "spm": spm_paths(cfg.run_path)[0],
        "train": checkpoint_file(cfg.run_path, "best"),
        "eval": cfg.run_path / RESULTS_JSON,
    }[stage]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def stale_reason(cfg: Config, stage: str) -> Optional[str]:
    """Why ``stage`` must run (None: it is up to date): no output, other settings, or the previous
    stage's output or stamp is newer than this stage's stamp (it was redone, also by hand)."""
    if not output_of(cfg, stage).is_file():
        return "no output yet"
    if stage == "data":
        recorded = read_owner(cfg.data_dir, in_manifest=True).get("stages", {}).get("data")
        if recorded != stage_settings(cfg, "data"):
            return "data settings changed"
        newer = [p for p in made_here(cfg) if _mtime(p) > _mtime(output_of(cfg, "data"))]
        return f"{newer[0]} is newer than the corpus" if newer else None
    stamp = stamp_path(cfg, stage)
    if not stamp.is_file():
        return "not finished before"
    if stamp.read_text(encoding="utf-8") != settings_text(cfg, stage):
        return f"{stage} settings changed"
    before = STAGES[STAGES.index(stage) - 1]
    if max(_mtime(output_of(cfg, before)), _mtime(stamp_path(cfg, before))) > _mtime(stamp):
        return "an earlier stage was redone"
    return None


def _train_under_torchrun(cfg: Config, overrides: tuple[str, ...], nproc: int) -> None:
    if cfg.recipe_path is None:
        raise UserError("training with several processes needs a recipe file")
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node", str(nproc), "-m", "seq2seq", "train"]
    status = subprocess.call([*command, str(cfg.recipe_path), *overrides], env=os.environ.copy())
    if status:
        sys.exit(status)  # the processes' own status: 130/143 after a signal, 1 after an error


def run_pipeline(
    cfg: Config,
    mirror: Optional[str | os.PathLike] = None,
    nproc: int = 1,
    overrides: tuple[str, ...] = (),
    until: str = "eval",
    log: Callable[[str], None] = print,
) -> str:
    """Bring the stages of ``cfg`` up to ``until`` up to date; returns results.txt (the test scores and
    signatures) when evaluate is among them, else "". ``overrides`` (the ``key=value`` strings ``cfg``
    was loaded with) reach torchrun's processes."""
    if until not in STAGES:
        raise UserError(f"no stage {until!r}: one of {', '.join(STAGES)}")
    redo = False
    for stage in STAGES[: STAGES.index(until) + 1]:
        reason = "an earlier stage was redone" if redo else stale_reason(cfg, stage)
        if reason is None:
            log(f"{stage}: up to date")
        else:
            log(f"{stage}: running ({reason})")
            if stage == "data":
                download(cfg, mirror, log)
            elif stage == "spm":
                train_tokenizers(cfg, log)
            elif stage == "train" and nproc > 1:
                _train_under_torchrun(cfg, overrides, nproc)
            elif stage == "train":
                train(cfg)
            else:
                evaluate(cfg, log=lambda _line: None)
            if stage != "data":  # the corpus records its settings in its manifest
                atomic_write_text(stamp_path(cfg, stage), settings_text(cfg, stage))
            redo = True
    return (cfg.run_path / RESULTS_TXT).read_text(encoding="utf-8") if until == "eval" else ""
