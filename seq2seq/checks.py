"""The recipe rules that tie several keys together (single keys are checked against config.CHOICES
and config.RANGES); :func:`seq2seq.config.validate` runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from seq2seq.coerce import check_name
from seq2seq.errors import UserError

if TYPE_CHECKING:
    from seq2seq.config import Config


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
