"""Recipe configuration: validated dataclasses loaded from YAML plus ``key=value`` overrides.

A recipe has the sections ``data``, ``spm``, ``model``, ``train`` and ``decode`` plus a few
top-level keys (``name``, ``run_dir``). An override names a key either fully
(``train.max_steps=200``) or by its bare name when that name is unique across sections
(``max_steps=200``). Unknown keys and values of the wrong type are a :class:`UserError`
that names the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from seq2seq.errors import UserError
from seq2seq.fileio import atomic_write_text


@dataclass
class DataConfig:
    # embedded | hub | text | tsv | jsonl
    source: str = "embedded"
    src_lang: str = "en"
    tgt_lang: str = "de"
    # our split name -> the source's split name (hub) or file stem (text/tsv/jsonl).
    # "train" and "dev" are required; every other entry is a test set.
    splits: dict = field(default_factory=lambda: {"train": "train", "dev": "dev", "test": "test"})
    # hub: dataset id and config; text/tsv/jsonl: where the files live (URL prefix or folder)
    dataset: str = ""
    dataset_config: Optional[str] = None
    url: str = ""
    # text: "{split}.{lang}.gz"; tsv/jsonl: "{split}.jsonl"; hub with a mirror: "{split}.jsonl"
    file_pattern: str = "{split}.{lang}"
    # hub/jsonl: column names of the two sides ("translation.de" reaches into a dict column);
    # tsv: column indices as strings ("0", "1")
    src_field: str = ""
    tgt_field: str = ""
    # embedded corpus sizes and seed
    embedded_sizes: dict = field(default_factory=lambda: {"train": 20000, "dev": 500, "test": 1000})
    embedded_seed: int = 1
    dir: str = ""  # default: data/<name>/corpus


@dataclass
class SpmConfig:
    joint: bool = True
    model_type: str = "unigram"  # unigram | bpe
    vocab_size: int = 8000
    character_coverage: float = 1.0
    input_sentence_size: int = 0  # 0 = all training sentences


@dataclass
class ModelConfig:
    emb_dim: int = 256
    enc_hidden: int = 256  # per direction
    enc_layers: int = 2
    dec_hidden: int = 512
    dec_layers: int = 1
    attention: str = "additive"  # additive | dot | general
    attn_dim: int = 256  # additive attention's hidden size
    input_feeding: bool = True
    tie_embeddings: bool = True  # target input embedding = output projection
    share_embeddings: bool = False  # source embedding = target embedding (needs a joint SPM)
    dropout: float = 0.3
    word_dropout: float = 0.0  # probability of replacing a source token by <unk> in training


@dataclass
class TrainConfig:
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: bf16 autocast on CUDA (fp16 + loss scaling where bf16 is missing), fp32 on CPU;
    # bf16 on CPU needs native support (AVX512-BF16/AMX) and about doubles training speed there
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    batch_tokens: int = 4096  # global batch in (padded) tokens, whatever the number of processes
    accum_steps: int = 1  # batches of batch_tokens accumulated into one optimizer step
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    max_steps: int = 0  # 0 = no step limit
    max_epochs: int = 50
    valid_every: int = 500
    log_every: int = 100
    patience: int = 10  # validations without dev BLEU improvement before stopping (0 = never stop early)
    lr_schedule: str = "plateau"  # plateau: x lr_factor after lr_patience bad validations; cosine: to min_lr
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    lr_patience: int = 3
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    valid_beam: int = 1  # beam size for dev BLEU (1 = greedy)
    samples: int = 3  # sample dev translations logged per validation
    max_len: int = 100  # drop training pairs longer than this (subword pieces)
    filter_ratio: float = 0.0  # drop pairs whose longer side exceeds this many times the shorter (0 = off)
    dedupe: bool = False  # drop repeated (source, target) training pairs
    threads: int = 0  # CPU threads, 0 = torch's default
    keep_checkpoints: int = 0  # keep the parameters of the last N validations (for seq2seq average)
    tensorboard: bool = True  # event files in <run_dir>/tensorboard
    # torch.compile of the decoder step on bucketed shapes (seq2seq/compiled.py); reduce-overhead
    # adds CUDA graphs. Compiling costs time once per shape bucket: for long GPU runs
    compile: str = "off"  # off | default | reduce-overhead | max-autotune


@dataclass
class DecodeConfig:
    beam_size: int = 5
    length_penalty: float = 1.0  # GNMT alpha: score / ((5 + len) / 6) ** alpha
    max_len_ratio: float = 2.0  # max output length = ratio * source length + offset
    max_len_offset: int = 10
    batch_size: int = 64  # sentences per decoding batch
    n_best: int = 1
    checkpoint: str = "best"  # best | last | average | step-NNNNNNNN (a file in <run_dir>/checkpoints)
    compile_search: str = "off"  # as train.compile, for the search step (greedy and beam)


@dataclass
class Config:
    name: str = "default"
    run_dir: str = ""  # default: data/<name>/run
    data: DataConfig = field(default_factory=DataConfig)
    spm: SpmConfig = field(default_factory=SpmConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir or f"data/{self.name}/corpus")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir or f"data/{self.name}/run")

    @property
    def test_sets(self) -> list[str]:
        return [s for s in self.data.splits if s not in ("train", "dev")]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "spm": SpmConfig, "model": ModelConfig, "train": TrainConfig, "decode": DecodeConfig}
CHOICES = {
    "data.source": ("embedded", "hub", "text", "tsv", "jsonl"),
    "spm.model_type": ("unigram", "bpe"),
    "model.attention": ("additive", "dot", "general"),
    "train.lr_schedule": ("plateau", "cosine"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.compile": ("off", "default", "reduce-overhead", "max-autotune"),
    "decode.compile_search": ("off", "default", "reduce-overhead", "max-autotune"),
}


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Convert ``value`` to ``typ`` or raise a UserError naming ``key``."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        (typ,) = [a for a in typing.get_args(typ) if a is not type(None)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise UserError(f"config key '{key}': expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise UserError(f"config key '{key}': expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value))
        except ValueError:
            raise UserError(f"config key '{key}': expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise UserError(f"config key '{key}': expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"config key '{key}': expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise UserError(f"config key '{key}': expected a finite number, got {value!r}")
        return number
    if typ is str:
        if value is None or isinstance(value, (dict, list)):
            raise UserError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    if typ is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}': expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    raise AssertionError(f"unsupported config type {typ} for {key}")


def _build(cls, values: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise UserError(f"unknown config key '{full}'")
        if key in SECTIONS and not prefix:
            if not isinstance(value, dict):
                raise UserError(f"config key '{key}': expected a section (mapping), got {value!r}")
            kwargs[key] = _build(SECTIONS[key], value, f"{key}.")
        else:
            kwargs[key] = _coerce(full, value, hints[key])
    return cls(**kwargs)


def _resolve_key(key: str) -> tuple[str, ...]:
    """``max_steps`` -> ("train", "max_steps"); ``train.max_steps`` stays; unknown raises."""
    parts = tuple(key.split("."))
    if len(parts) == 2 and parts[0] in SECTIONS:
        if parts[1] not in {f.name for f in dataclasses.fields(SECTIONS[parts[0]])}:
            raise UserError(f"unknown config key '{key}'")
        return parts
    if len(parts) == 1:
        if parts[0] in ("name", "run_dir"):
            return parts
        owners = [s for s, cls in SECTIONS.items() if parts[0] in {f.name for f in dataclasses.fields(cls)}]
        if len(owners) == 1:
            return (owners[0], parts[0])
        if len(owners) > 1:
            raise UserError(f"config key '{key}' is ambiguous: write one of " + ", ".join(f"{o}.{key}" for o in owners))
    raise UserError(f"unknown config key '{key}'")


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict:
    """Turn ``["max_steps=200", "model.dropout=0.1"]`` into a nested dict."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = _resolve_key(key.strip())
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw  # not YAML ("{split}.{lang}"): the text itself, checked by type below
        owner = SECTIONS[parts[0]] if len(parts) == 2 else Config
        if typing.get_type_hints(owner).get(parts[-1]) is str and not isinstance(value, (dict, list)):
            value = raw  # a string key keeps the text as written ("007", "1e3")
        target = nested
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k in SECTIONS:
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def from_dict(values: dict) -> Config:
    cfg = _build(Config, values, "")
    validate(cfg)
    return cfg


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a recipe YAML, apply overrides, validate. ``name`` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UserError(f"recipe {path} must be a mapping of sections")
    values.setdefault("name", path.stem)
    return from_dict(_merge(values, parse_overrides(overrides)))


def validate(cfg: Config) -> None:
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise UserError(f"config key '{key}': {value!r} is not one of {', '.join(allowed)}")
    positive = ["spm.vocab_size", "model.emb_dim", "model.enc_hidden", "model.enc_layers", "model.dec_hidden",
                "model.dec_layers", "model.attn_dim", "train.batch_tokens", "train.accum_steps", "train.valid_every", "train.log_every",
                "train.max_len", "decode.beam_size", "decode.batch_size", "decode.n_best"]
    for key in positive:
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) <= 0:
            raise UserError(f"config key '{key}' must be positive")
    if cfg.train.lr_schedule == "cosine" and not cfg.train.max_steps:
        raise UserError("config key 'train.lr_schedule': cosine needs train.max_steps")
    for key in ["train.max_steps", "train.max_epochs", "train.warmup_steps", "train.keep_checkpoints", "train.patience", "train.weight_decay", "train.threads",
                "decode.length_penalty", "decode.max_len_offset", "train.filter_ratio"]:
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) < 0:
            raise UserError(f"config key '{key}' must not be negative")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise UserError("config key 'model.dropout' must be in [0, 1)")
    if not 0.0 <= cfg.model.word_dropout < 1.0:
        raise UserError("config key 'model.word_dropout' must be in [0, 1)")
    if cfg.model.share_embeddings and not cfg.spm.joint:
        raise UserError("config key 'model.share_embeddings' needs spm.joint: true")
    if not 0.0 <= cfg.train.label_smoothing < 1.0:
        raise UserError("config key 'train.label_smoothing' must be in [0, 1)")
    if not 0.0 < cfg.spm.character_coverage <= 1.0:
        raise UserError("config key 'spm.character_coverage' must be in (0, 1]")
    if cfg.train.lr <= 0:
        raise UserError("config key 'train.lr' must be positive")
    if cfg.decode.max_len_ratio <= 0:
        raise UserError("config key 'decode.max_len_ratio' must be positive")
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", cfg.decode.checkpoint):
        raise UserError(f"config key 'decode.checkpoint': {cfg.decode.checkpoint!r} is not a checkpoint name")
    if cfg.decode.n_best > cfg.decode.beam_size:
        raise UserError("config key 'decode.n_best' must not exceed decode.beam_size")
    if "train" not in cfg.data.splits or "dev" not in cfg.data.splits:
        raise UserError("config key 'data.splits' must name a 'train' and a 'dev' split")
    if not cfg.test_sets:
        raise UserError("config key 'data.splits' must name at least one test split besides train and dev")
    if cfg.model.attention == "dot" and cfg.model.dec_hidden != 2 * cfg.model.enc_hidden:
        raise UserError("config key 'model.attention': dot attention needs dec_hidden == 2 * enc_hidden")
    for split, size in cfg.data.embedded_sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UserError(f"config key 'data.embedded_sizes': size of '{split}' must be a whole number >= 0, "
                            f"got {size!r}")
    if cfg.data.source == "embedded" and set(cfg.data.embedded_sizes) != set(cfg.data.splits):
        raise UserError("config key 'data.embedded_sizes' must give a size for every split in data.splits")
    if cfg.data.source in ("hub",) and not cfg.data.dataset:
        raise UserError("config key 'data.dataset' is required when data.source is hub")
    if cfg.data.source in ("hub", "tsv", "jsonl") and not (cfg.data.src_field and cfg.data.tgt_field):
        raise UserError(f"config keys 'data.src_field' and 'data.tgt_field' are required when data.source is {cfg.data.source}")


def save_config(cfg: Config, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))


# The settings each pipeline stage depends on; make reruns a stage when its stamp changes.
STAGE_KEYS = {
    "data": ["data"],
    "spm": ["data", "spm"],
    "train": ["data", "spm", "model", "train"],
    "eval": ["data", "spm", "model", "train", "decode"],
}


def write_stamps(cfg: Config, folder: Path) -> None:
    """``<folder>/<stage>.yaml`` with the settings of that stage, rewritten only when they changed."""
    values = cfg.to_dict()
    folder = Path(folder)
    for stage, sections in STAGE_KEYS.items():
        text = yaml.safe_dump({s: values[s] for s in sections}, sort_keys=True, allow_unicode=True)
        path = folder / f"{stage}.yaml"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
