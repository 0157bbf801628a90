"""A run's settings are its own: once a run exists, its config.yaml is the source of truth for every
later stage. Settings given again (``key=value``) must agree with it, except the decode section
(decoding a trained model another way is always allowed); a disagreement names every differing key
at once."""

from __future__ import annotations

import sys
from pathlib import Path

from seq2seq.config.load import load_config, parse_overrides
from seq2seq.config.schema import Config
from seq2seq.config.stamps import OPTIONAL_SECTIONS
from seq2seq.errors import UserError
from seq2seq.runs.ownership import load_run_config, read_owner

FREE_SECTIONS = ("decode",)  # what may differ from the run's own settings
TOP_LEVEL_IGNORED = ("name", "run_dir")  # they choose the run: nothing to compare
# how a run trains, not what it trains: free for a finished run too (nothing is trained again)
HOW_NOT_WHAT = ("device", "precision", "threads", "compile", "tensorboard", "log_every", "samples")


def differences(theirs: dict, wanted: dict, prefix: str = "") -> list[str]:
    """``"key: A in the run, B given"`` for every key of ``wanted`` whose value differs in ``theirs``."""
    out = []
    for key, value in wanted.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(theirs.get(key), dict) and key != "splits":
            out += differences(theirs[key], value, f"{name}.")
        elif theirs.get(key) != value:
            out.append(f"{name}: {theirs.get(key)!r} in the run, {value!r} given")
    return out


def load_for_run(recipe: Path, overrides: tuple[str, ...] = (), warn=None) -> Config:
    """The recipe with ``overrides``, after the overrides its run was trained with (so ``train R
    max_len=12`` then ``evaluate R`` or a resumed ``train R`` keep max_len=12; those given now win)."""
    cfg = load_config(recipe, list(overrides))
    kept = [o for o in read_owner(cfg.run_path).get("overrides") or [] if isinstance(o, str)]
    if not kept:
        return cfg
    given = {o.split("=", 1)[0].strip() for o in overrides}
    kept = [o for o in kept if o.split("=", 1)[0].strip() not in given]
    if kept:
        (warn or _stderr)(f"note: {cfg.run_path} was trained with {' '.join(kept)} (kept)")
    return load_config(recipe, [*kept, *overrides])


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def settings_differences(run_values: dict, cfg: Config) -> list[str]:
    """The keys (outside decode) in which ``cfg`` differs from a run's saved settings."""
    wanted = {k: v for k, v in cfg.to_dict().items() if k not in FREE_SECTIONS and k not in TOP_LEVEL_IGNORED}
    wanted["train"] = {k: v for k, v in wanted["train"].items() if k not in HOW_NOT_WHAT}
    defaults = Config().to_dict()  # a section missing from an older run's config.yaml: its defaults then
    theirs = {**{s: defaults[s] for s in OPTIONAL_SECTIONS}, **run_values}
    return differences(theirs, wanted)


def refuse_differences(run_dir: Path, found: list[str], advice: str) -> None:
    if found:
        raise UserError(f"{run_dir} was trained with other settings ({'; '.join(found)}): {advice}")


def decode_overrides(run_dir: Path, overrides: tuple[str, ...]) -> dict:
    """The decode settings among ``overrides`` for a trained run; any other key must equal the run's."""
    nested = parse_overrides(list(overrides))
    for key in TOP_LEVEL_IGNORED:
        nested.pop(key, None)
    decode = nested.pop("decode", {})
    if nested:
        cfg = load_run_config(run_dir).to_dict()
        refuse_differences(
            run_dir,
            differences(cfg, nested),
            "only decode settings may change for a trained run (use run_dir=... to train another one)",
        )
    return decode
