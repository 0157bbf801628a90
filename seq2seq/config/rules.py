"""The checks of a recipe: every key against CHOICES and RANGES (:mod:`seq2seq.config.schema`), then the
rules that tie several keys together. :func:`validate` runs them all; :func:`check_setting` is the one
check behind every numeric CLI flag."""

from __future__ import annotations

import dataclasses

from seq2seq.config.schema import CHOICES, RANGES, SECTIONS, Config
from seq2seq.config.values import check_name, coerce
from seq2seq.errors import UserError


def in_range(value: float, interval: str) -> bool:
    """Whether ``value`` lies in an interval written as in RANGES, e.g. "(0, 1]"."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def check_setting(key: str, raw, name: str = ""):
    """``raw`` (text or a number) as a value of the numeric config key ``key``, checked against RANGES:
    what CLI flags go through. Errors name ``name`` (a flag) or the key."""
    section, field_name = key.split(".")
    typ = next(f.type for f in dataclasses.fields(SECTIONS[section]) if f.name == field_name)
    typ = {"int": int, "float": float}.get(typ, typ)
    label = name or f"config key '{key}'"
    try:
        value = coerce(key, raw.strip() if isinstance(raw, str) else raw, typ)
    except UserError:
        kind = "an integer" if typ is int else "a finite number"
        raise UserError(f"{label}: expected {kind}, got {raw!r}") from None
    if not in_range(value, RANGES[key]):
        raise UserError(f"{label} must be in {RANGES[key]}, got {value!r}")
    return value


def _get(cfg: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def validate(cfg: Config) -> None:
    """Every choice and range above, then the rules that tie keys together."""
    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            raise UserError(f"config key '{key}': {_get(cfg, key)!r} is not one of {', '.join(allowed)}")
    for key, interval in RANGES.items():
        if not in_range(_get(cfg, key), interval):
            raise UserError(f"config key '{key}' must be in {interval}, got {_get(cfg, key)!r}")
    check_relations(cfg)
    check_data(cfg)
    check_clean(cfg)


def check_relations(cfg: Config) -> None:
    if cfg.train.lr_schedule == "cosine" and not cfg.train.max_steps:
        raise UserError("config key 'train.lr_schedule': cosine needs train.max_steps")
    if cfg.model.share_embeddings and not cfg.spm.joint:
        raise UserError("config key 'model.share_embeddings' needs spm.joint: true")
    check_name("config key 'decode.checkpoint'", cfg.decode.checkpoint)
    check_name("config key 'name'", cfg.name)
    if cfg.train.min_lr > cfg.train.lr:
        raise UserError(
            f"config key 'train.min_lr' must not exceed train.lr ({cfg.train.lr}), got {cfg.train.min_lr}"
        )
    if cfg.decode.n_best > cfg.decode.beam_size and not cfg.decode.sampling:
        raise UserError(
            f"config key 'decode.n_best' ({cfg.decode.n_best}) must not exceed decode.beam_size "
            f"({cfg.decode.beam_size})"
        )
    check_model(cfg)
    check_training_extras(cfg)


def check_training_extras(cfg: Config) -> None:
    """Subword sampling (spm.subword_sampling and its parameters) and checkpoint averaging (train.average_last)."""
    sc, tc = cfg.spm, cfg.train
    if sc.subword_sampling and sc.model_type == "bpe" and sc.alpha >= 1:
        raise UserError(
            f"config key 'spm.alpha': for bpe it is the dropout probability of a merge, below 1; got {sc.alpha}"
        )
    if sc.subword_sampling and sc.model_type == "unigram" and sc.nbest_size in (0, 1):
        raise UserError(
            f"config key 'spm.nbest_size': {sc.nbest_size} samples nothing; -1 (all segmentations) or 2 and more"
        )
    if tc.average_last > tc.keep_checkpoints:
        raise UserError(
            f"config key 'train.average_last' ({tc.average_last}) needs train.keep_checkpoints >= "
            f"{tc.average_last}, got {tc.keep_checkpoints}"
        )


def check_model(cfg: Config) -> None:
    """The architecture keys against each other, and the decode keys that need some architecture."""
    m = cfg.model
    if m.attention == "dot" and m.dec_hidden != m.memory_dim:
        need = "2 * enc_hidden" if m.bidirectional else "enc_hidden (encoder not bidirectional)"
        raise UserError(f"config key 'model.attention': dot attention needs dec_hidden == {need}")
    if m.coverage and m.attention != "additive":
        raise UserError(f"config key 'model.coverage' needs model.attention: additive, not {m.attention}")
    if cfg.decode.coverage_penalty > 0 and m.attention == "none":
        raise UserError(
            "config key 'decode.coverage_penalty' needs attention weights, and model.attention is none"
        )


def check_data(cfg: Config) -> None:
    d = cfg.data
    if d.src_lang == d.tgt_lang:  # the corpus is one file per split and language: both sides in train.<lang>
        raise UserError(
            f"config keys 'data.src_lang' and 'data.tgt_lang' are both {d.src_lang!r}: the corpus keeps one "
            f"file per language (train.{d.src_lang}), so a same-language task (grammar correction, "
            f"paraphrase) needs two names, e.g. data.src_lang: {d.src_lang}-src"
        )
    for split, source in cfg.data.splits.items():  # split names become file names: hyp.<split>.<lang>
        check_name("config key 'data.splits'", split)
        if not isinstance(source, str) or not source:
            raise UserError(
                f"config key 'data.splits': the source split of '{split}' must be a name (a string), got {source!r}"
            )
    if "train" not in cfg.data.splits or "dev" not in cfg.data.splits:
        raise UserError("config key 'data.splits' must name a 'train' and a 'dev' split")
    for split, size in cfg.data.embedded_sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UserError(
                f"config key 'data.embedded_sizes': size of '{split}' must be a whole number >= 0, "
                f"got {size!r}"
            )
    if cfg.data.source == "embedded" and set(cfg.data.embedded_sizes) != set(cfg.data.splits):
        raise UserError("config key 'data.embedded_sizes' must give a size for every split in data.splits")
    if cfg.data.source in ("hub",) and not cfg.data.dataset:
        raise UserError("config key 'data.dataset' is required when data.source is hub")
    if cfg.data.source in ("hub", "tsv", "jsonl") and not (cfg.data.src_field and cfg.data.tgt_field):
        raise UserError(
            f"config keys 'data.src_field' and 'data.tgt_field' are required when data.source is "
            f"{cfg.data.source}"
        )


def check_clean(cfg: Config) -> None:
    """The clean section's keys beyond their ranges."""
    if 0 < cfg.clean.length_ratio < 1:
        raise UserError(
            f"config key 'clean.length_ratio' must be 0 (off) or at least 1 (the longer side over the "
            f"shorter), got {cfg.clean.length_ratio}"
        )
