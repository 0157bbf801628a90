"""The checks of a recipe: every key against CHOICES and RANGES (:mod:`seq2seq.config.schema`), then the
rules that tie several keys together. :func:`validate` runs them all; :func:`check_setting` is the one
check behind every numeric CLI flag."""

from __future__ import annotations

import dataclasses

from seq2seq.config.schema import CHOICES, LIST_SECTIONS, RANGES, SECTIONS, Config
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


def _values(cfg: Config, key: str) -> list[tuple[str, object]]:
    """(the name to report, value) of ``key``: one for "section.key", one per item for a key of a list
    section ("data.sources.weight": that of every source, reported as data.sources[2].weight)."""
    *path, name = key.split(".")
    items = getattr(getattr(cfg, path[0]), path[1]) if ".".join(path) in LIST_SECTIONS else None
    if items is None:
        return [(key, getattr(getattr(cfg, path[0]), name))]
    return [(f"{'.'.join(path)}[{i + 1}].{name}", getattr(item, name)) for i, item in enumerate(items)]


def validate(cfg: Config) -> None:
    """Every choice and range above, then the rules that tie keys together."""
    for key, allowed in CHOICES.items():
        for label, value in _values(cfg, key):
            if value not in allowed:
                raise UserError(f"config key '{label}': {value!r} is not one of {', '.join(allowed)}")
    for key, interval in RANGES.items():
        for label, value in _values(cfg, key):
            if not in_range(value, interval):
                raise UserError(f"config key '{label}' must be in {interval}, got {value!r}")
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
    if d.sources:
        check_sources(d.sources)
        return
    check_source(d.source_list()[0], "data.", need=("train", "dev"))


def check_source(source, prefix: str, need: tuple[str, ...] = ()) -> None:
    """The keys of one corpus (``prefix``: "data." or "data.sources[N]." in messages), whose splits must
    include ``need``."""
    kind = "source" if prefix == "data." else "kind"
    for split, name in source.splits.items():  # split names become file names: hyp.<split>.<lang>
        check_name(f"config key '{prefix}splits'", split)
        if not isinstance(name, str) or not name:
            raise UserError(
                f"config key '{prefix}splits': the source split of '{split}' must be a name (a string), got {name!r}"
            )
    if any(split not in source.splits for split in need):
        raise UserError(f"config key '{prefix}splits' must name a {' and a '.join(map(repr, need))} split")
    for split, size in source.embedded_sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UserError(
                f"config key '{prefix}embedded_sizes': size of '{split}' must be a whole number >= 0, "
                f"got {size!r}"
            )
    if source.kind == "embedded" and set(source.embedded_sizes) != set(source.splits):
        raise UserError(
            f"config key '{prefix}embedded_sizes' must give a size for every split in {prefix}splits"
        )
    if source.kind in ("hub",) and not source.dataset:
        raise UserError(f"config key '{prefix}dataset' is required when {prefix}{kind} is hub")
    if source.kind in ("hub", "tsv", "jsonl") and not (source.src_field and source.tgt_field):
        raise UserError(
            f"config keys '{prefix}src_field' and '{prefix}tgt_field' are required when {prefix}{kind} is "
            f"{source.kind}"
        )


def check_sources(sources: list) -> None:
    """``data.sources``: each corpus's keys, unique names, training pairs from at least one, and every
    held-out split (dev, tests) from exactly one."""
    owner: dict[str, str] = {}
    for i, source in enumerate(sources):
        prefix = f"data.sources[{i + 1}]."
        check_name(f"config key '{prefix}name'", source.name)
        if source.name in [s.name for s in sources[:i]]:
            raise UserError(f"config key '{prefix}name': '{source.name}' names two sources")
        check_source(source, prefix)
        if source.tag and (source.tag != source.tag.strip() or not source.tag.isprintable()):
            raise UserError(
                f"config key '{prefix}tag': {source.tag!r} must be printable, without outer spaces"
            )
        if (source.skip or source.take) and "train" not in source.splits:
            raise UserError(
                f"config keys '{prefix}skip'/'{prefix}take' select train pairs: splits has no train"
            )
        for split in source.splits:
            if split != "train" and split in owner:
                raise UserError(
                    f"config key '{prefix}splits': split '{split}' already comes from source '{owner[split]}' "
                    f"(a held-out split comes from one source)"
                )
            if split != "train":
                owner[split] = source.name
    if not any("train" in s.splits for s in sources):
        raise UserError("config key 'data.sources': no source gives a 'train' split")
    if "dev" not in owner:
        raise UserError("config key 'data.sources': no source gives a 'dev' split")


def check_clean(cfg: Config) -> None:
    """The clean section's keys beyond their ranges."""
    if 0 < cfg.clean.length_ratio < 1:
        raise UserError(
            f"config key 'clean.length_ratio' must be 0 (off) or at least 1 (the longer side over the "
            f"shorter), got {cfg.clean.length_ratio}"
        )
