"""Recipes as validated configs: the schema with every key's range, loading YAML with ``key=value``
overrides, the rules between keys, per-stage stamps, and the recipes shipped in the package."""

from __future__ import annotations

from seq2seq.config.load import from_dict, load_config, parse_overrides, save_config, with_decode
from seq2seq.config.rules import check_setting, in_range, validate
from seq2seq.config.schema import (
    CHOICES,
    LIST_SECTIONS,
    RANGES,
    SECTIONS,
    CleanConfig,
    Config,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    SourceConfig,
    SpmConfig,
    TrainConfig,
)

__all__ = [
    "load_config",
    "from_dict",
    "parse_overrides",
    "with_decode",
    "save_config",
    "check_setting",
    "in_range",
    "validate",
    "Config",
    "DataConfig",
    "SourceConfig",
    "SpmConfig",
    "ModelConfig",
    "TrainConfig",
    "DecodeConfig",
    "CleanConfig",
    "SECTIONS",
    "CHOICES",
    "LIST_SECTIONS",
    "RANGES",
]
