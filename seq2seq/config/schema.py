"""Recipe configuration: the dataclasses of a recipe's sections, and the one table of every key's allowed
choices (CHOICES) and numeric range (RANGES).

A recipe has the sections ``data``, ``spm``, ``model``, ``train``, ``decode`` and ``clean`` (cleaning
the training pairs in the download stage) plus a few top-level keys (``name``, ``run_dir``).
:mod:`seq2seq.config.load` reads it from YAML with ``key=value`` overrides;
:mod:`seq2seq.config.rules` checks it against these tables.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from seq2seq.constants import corpus_dir, run_dir


@dataclass
class SourceConfig:
    """One corpus of ``data.sources`` (docs/data.md#several-corpora): the keys of a single-source data
    section (``kind`` for ``source``), plus its share of training and how its train pairs are taken."""

    name: str = ""  # a plain name, unique among the sources (the manifest and logs count pairs by it)
    kind: str = "text"  # embedded | hub | text | tsv | jsonl
    # each epoch takes round(weight x its pairs) of this source's training pairs: 2 = every pair twice,
    # 0.5 = a random half (without replacement, drawn from train.seed and the epoch)
    weight: float = 1.0
    # prepended with a space to every training source line of this corpus ("<BT>": tagged back-translation)
    tag: str = ""
    mirror: bool = True  # false: read where url says even with --mirror (files made here: back-translations)
    skip: int = 0  # drop this many train pairs at the start of this corpus (held apart: monolingual text)
    take: int = 0  # then keep at most this many train pairs (0 = all)
    # our split name -> this corpus's split name or file stem; "train" adds to the training pairs, every
    # other split (dev, tests) must come from exactly one source
    splits: dict = field(default_factory=lambda: {"train": "train"})
    # as the keys of the same name in data
    url: str = ""
    file_pattern: str = "{split}.{lang}"
    dataset: str = ""
    dataset_config: Optional[str] = None
    src_field: str = ""
    tgt_field: str = ""
    embedded_sizes: dict = field(default_factory=lambda: {"train": 20000})
    embedded_seed: int = 1


# the keys of data that a corpus of data.sources holds for itself (source: its kind)
SINGLE_SOURCE_KEYS = ("source", "splits", "url", "file_pattern", "dataset", "dataset_config")
SINGLE_SOURCE_KEYS += ("src_field", "tgt_field", "embedded_sizes", "embedded_seed")


@dataclass
class DataConfig:
    # embedded | hub | text | tsv | jsonl
    source: str = "embedded"
    src_lang: str = "en"
    tgt_lang: str = "de"
    # our split name -> the source's split name (hub) or file stem (text/tsv/jsonl).
    # "train" and "dev" are required; every other entry is a test set (none: nothing to score).
    splits: dict = field(default_factory=lambda: {"train": "train", "dev": "dev", "test": "test"})
    # hub: dataset id and config
    dataset: str = ""
    dataset_config: Optional[str] = None
    # text/tsv/jsonl: where the files live (a folder or a URL prefix; "": file_pattern/splits hold the paths)
    url: str = ""
    # text: "{split}.{lang}" or "{split}.{lang}.gz"; tsv: "{split}.tsv"; jsonl: "{split}.jsonl";
    # hub with a mirror: not needed (the Hub's file layouts are found), or a glob such as "{split}-*.parquet"
    file_pattern: str = "{split}.{lang}"
    # hub/jsonl: field names of the two sides ("translation.de" reaches into a dict column);
    # tsv: column numbers ("0", "1") for a file without a header row, or the header row's names
    src_field: str = ""
    tgt_field: str = ""
    # embedded corpus sizes and seed
    embedded_sizes: dict = field(default_factory=lambda: {"train": 20000, "dev": 500, "test": 1000})
    embedded_seed: int = 1
    dir: str = ""  # default: data/<name>/corpus
    # several corpora, each with its own kind, files and weight (docs/data.md#several-corpora); with
    # them, source/splits/url/file_pattern/dataset/fields/embedded_* belong in each corpus, not here
    sources: list[SourceConfig] = field(default_factory=list)

    def source_list(self) -> list[SourceConfig]:
        """The corpora to read: ``sources``, or the single-source keys as one corpus named ``main``."""
        if self.sources:
            return list(self.sources)
        keys = [k for k in SINGLE_SOURCE_KEYS if k != "source"]
        return [SourceConfig(name="main", kind=self.source, **{k: getattr(self, k) for k in keys})]

    @property
    def split_names(self) -> list[str]:
        """Our split names (train, dev, tests), over every source, in order of first appearance."""
        return list(dict.fromkeys(s for source in self.source_list() for s in source.splits))


@dataclass
class SpmConfig:
    joint: bool = True
    model_type: str = "unigram"  # unigram | bpe
    vocab_size: int = 8000
    character_coverage: float = 1.0
    input_sentence_size: int = 0  # 0 = all training sentences
    # subword regularization of the training pairs (never dev, test or decoding): each epoch segments
    # them afresh by sampling (unigram: Kudo 2018; bpe: BPE-dropout, Provilkov et al. 2020). These three
    # keys shape training, not the tokenizer: changing them never retrains it
    subword_sampling: bool = False
    alpha: float = 0.1  # unigram: smoothing of the sampling distribution; bpe: the merge dropout probability
    nbest_size: int = 64  # unigram: sample among the n best segmentations, -1: among all; bpe: unused


@dataclass
class ModelConfig:
    emb_dim: int = 256
    enc_hidden: int = 256  # per direction
    enc_layers: int = 2
    enc_cell: str = "gru"  # gru | lstm | rnn (tanh): the encoder's recurrence
    bidirectional: bool = True  # encoder in both directions (memory 2 * enc_hidden wide), else forward only
    dec_hidden: int = 512
    dec_layers: int = 1
    dec_cell: str = "lstm"  # lstm | gru | rnn (tanh): the decoder's recurrence
    # none: the plain encoder-decoder (Cho et al. 2014), the encoder's final state is every step's context
    attention: str = "additive"  # additive | dot | general | none
    attn_dim: int = 256  # additive attention's hidden size
    coverage: bool = False  # additive attention also scores the attention summed so far (Tu et al. 2016)
    input_feeding: bool = True
    tie_embeddings: bool = True  # target input embedding = output projection
    share_embeddings: bool = False  # source embedding = target embedding (needs a joint SPM)
    dropout: float = 0.3
    word_dropout: float = 0.0  # probability of replacing a source token by <unk> in training

    @property
    def memory_dim(self) -> int:
        """Width of the encoder outputs the decoder attends to: enc_hidden per direction."""
        return self.enc_hidden * (2 if self.bidirectional else 1)


@dataclass
class TrainConfig:
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: bf16 autocast where the hardware has it natively (CUDA compute capability 8.0+; CPUs with
    # AVX512-BF16/AMX, about twice as fast there), else fp16 + loss scaling on CUDA and fp32 on CPU
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    # per device: an optimizer step sees batch_tokens x devices x accum_steps (padded) tokens (logged)
    batch_tokens: int = 4096  # one batch of one device (process), in (padded) tokens
    accum_steps: int = 1  # batches of batch_tokens each device accumulates into one optimizer step
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    max_steps: int = 0  # 0 = no step limit
    max_epochs: int = 50
    valid_every: int = 500
    log_every: int = 100
    patience: int = 10  # validations without improvement before stopping (0 = never stop early)
    # what "improvement" means for best.pt, patience and the plateau schedule: bleu (dev BLEU higher),
    # loss or ppl (dev loss lower; ppl = exp(loss), the same order: JoeyNMT's early_stopping_metric)
    early_stopping: str = "bleu"
    lr_schedule: str = "plateau"  # plateau: x lr_factor after lr_patience bad validations; cosine: to min_lr
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    lr_patience: int = 3
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    valid_beam: int = 1  # beam size for dev BLEU (1 = greedy)
    samples: int = 3  # sample dev translations logged per validation
    max_len: int = 100  # drop longer training pairs (subword pieces); cut longer source lines in decoding
    filter_ratio: float = 0.0  # drop pairs whose longer side exceeds this many times the shorter (0 = off)
    dedupe: bool = False  # drop repeated (source, target) training pairs
    threads: int = 0  # CPU threads, 0 = torch's default
    keep_checkpoints: int = 0  # keep the parameters of the last N validations (for seq2seq average)
    # at the end of training, average the last N kept step checkpoints into checkpoints/averaged.pt, log its dev
    # BLEU (0 = off; needs keep_checkpoints >= N); decode it with decode.checkpoint: averaged
    average_last: int = 0
    tensorboard: bool = True  # event files in <run_dir>/tensorboard
    # torch.compile of the decoder step on bucketed shapes (seq2seq/model/compiled.py). Training never
    # records CUDA graphs (a graph per target position per bucket, with memory/keys/weights copied
    # into static inputs at every position): reduce-overhead trains as default, max-autotune without
    # its graphs; decode.compile_search gets the graphs. Compiling costs time once per shape bucket
    compile: str = "off"  # off | default | reduce-overhead | max-autotune
    # fine-tuning: start from another run's weights (RUN_DIR: its best.pt, or a checkpoint file) with a
    # fresh optimizer and schedule; the run then uses that run's SentencePiece models
    init_from: str = ""


@dataclass
class DecodeConfig:
    beam_size: int = 5
    length_penalty: float = 1.0  # GNMT alpha: score / ((5 + len) / 6) ** alpha
    # GNMT beta (beam search only; 0 = off): + beta * sum over source pieces of log(min(attention sum, 1))
    coverage_penalty: float = 0.0
    max_len_ratio: float = 2.0  # max output length = ratio * source length + offset
    max_len_offset: int = 10
    batch_size: int = 64  # sentences per decoding batch
    n_best: int = 1
    # best | last | averaged (train.average_last) | average | step-NNNNNNNN: a file in <run_dir>/checkpoints
    checkpoint: str = "best"
    # sacreBLEU tokenizer of BLEU (test scores and the dev BLEU of training): auto picks it from
    # data.tgt_lang as sacreBLEU's -l/trg_lang does (zh -> zh, ja -> ja-mecab, ko -> ko-mecab, else 13a)
    bleu_tokenize: str = "auto"  # auto | 13a | intl | zh | char | none | ja-mecab | ko-mecab | spm | ...
    # as train.compile, for the search step (greedy and beam); reduce-overhead and max-autotune
    # replay it as CUDA graphs
    compile_search: str = "off"
    # the arithmetic of decoding: auto = the checkpoint's own (int8 for a file `seq2seq quantize` wrote,
    # else fp32); int8 quantizes an fp32 checkpoint on load (CPU only); bf16 autocasts the matmuls (CPUs
    # with AVX512-BF16/AMX, GPUs of compute capability 8.0+), the recurrences' states stay fp32
    search_precision: str = "auto"  # auto | fp32 | bf16 | int8
    min_len: int = 0  # no EOS before this many output pieces (the length limit still applies)
    no_repeat_ngram: int = 0  # no n-gram of this many pieces twice in one output (0 = off)
    # sampling (back-translation): draw each piece from the model's distribution instead of searching;
    # n_best independent samples per line, beam_size unused
    sampling: bool = False
    temperature: float = 1.0  # sampling: log-probabilities divided by this (above 1: more diverse)
    topk: int = 0  # sampling: only among the k most likely pieces (0 = all)
    sampling_seed: int = 1  # sampling: the same seed, input and settings give the same samples


@dataclass
class CleanConfig:
    # every rule is off by default and cleans the train split only (dev and test are never cleaned);
    # drop a pair whose source and target both repeat those of an earlier kept pair
    duplicates: bool = False
    # drop a pair equal to an earlier kept one once case, punctuation, digits and spacing are ignored
    near_duplicates: bool = False
    # drop a pair whose target is its source (ignoring case, punctuation, digits and spacing)
    copies: bool = False
    length_unit: str = "words"  # words | chars: what max_length and length_ratio count
    max_length: int = 0  # drop a pair with a side longer than this many length_units (0 = off)
    # drop a pair whose longer side has over this many times the length_units of the shorter (0 = off)
    length_ratio: float = 0.0
    brackets: bool = False  # drop a pair with a side whose brackets or double quotes do not pair up
    numbers: bool = False  # drop a pair whose two sides do not hold the same numbers (digits)
    # drop a pair with a side whose letters are less than this share in its language's script (0 = off)
    script: float = 0.0
    # drop a pair with a side that py3langid names another language with at least this probability
    # (0 = off); data.src_lang / tgt_lang (before any "-") must be one it knows
    language: float = 0.0


@dataclass
class Config:
    name: str = "default"
    run_dir: str = ""  # default: data/<name>/run
    data: DataConfig = field(default_factory=DataConfig)
    spm: SpmConfig = field(default_factory=SpmConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    # not a setting: the recipe file load_config read (None for a config built in code); a run directory
    # records it to tell its own recipe from another one of the same name (seq2seq/runs/ownership.py)
    recipe_path = None
    # not a setting either: the key=value overrides it was loaded with (a run remembers those of train)
    overrides = ()
    # nor this: the "section.key" names the recipe file or an override set (None: all, a config built in
    # code); fine-tuning takes the model keys not set from the parent (seq2seq/training/finetune.py)
    given_keys = None

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir) if self.data.dir else corpus_dir(self.name)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else run_dir(self.name)

    @property
    def test_sets(self) -> list[str]:
        return [s for s in self.data.split_names if s not in ("train", "dev")]

    def to_dict(self) -> dict:
        """Every setting; ``data.sources`` only when given, so a single-source recipe's settings (its
        config.yaml, stage stamps and the corpus manifest's record) read as they always have, and then
        without the single-source keys it does not use."""
        values = dataclasses.asdict(self)
        unused = SINGLE_SOURCE_KEYS if values["data"]["sources"] else ("sources",)
        for key in unused:
            del values["data"][key]
        return values


SPM_SAMPLING_KEYS = ("subword_sampling", "alpha", "nbest_size")  # spm keys of training, not of the models
OUTPUT_FORMATS = ("text", "json")  # seq2seq translate --format
LIST_SECTIONS = {"data.sources": SourceConfig}  # keys holding a list of these, checked item by item
SECTIONS = {
    "data": DataConfig,
    "spm": SpmConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
    "clean": CleanConfig,
}
CHOICES = {
    "data.source": ("embedded", "hub", "text", "tsv", "jsonl"),
    "data.sources.kind": ("embedded", "hub", "text", "tsv", "jsonl"),  # of every source in the list
    "spm.model_type": ("unigram", "bpe"),
    "model.enc_cell": ("gru", "lstm", "rnn"),
    "model.dec_cell": ("lstm", "gru", "rnn"),
    "model.attention": ("additive", "dot", "general", "none"),
    "train.lr_schedule": ("plateau", "cosine"),
    "train.early_stopping": ("bleu", "loss", "ppl"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.compile": ("off", "default", "reduce-overhead", "max-autotune"),
    "decode.compile_search": ("off", "default", "reduce-overhead", "max-autotune"),
    "decode.search_precision": ("auto", "fp32", "bf16", "int8"),
    # sacreBLEU's BLEU tokenizers (tests/evaluation/test_evaluate.py checks them against sacrebleu's list)
    "decode.bleu_tokenize": ("auto", "13a", "intl", "zh", "char", "none", "ja-mecab", "ko-mecab")
    + ("spm", "flores101", "flores200"),
    "clean.length_unit": ("words", "chars"),
}


# The allowed range of every number in a recipe, as an interval: "[" / "]" include the bound,
# "(" / ")" exclude it. tests/config/test_config.py checks that every int and float field is listed.
RANGES = {
    "data.embedded_seed": "[0, inf)",
    "data.sources.weight": "(0, 1000]",  # of every source in the list (data.sources.KEY)
    "data.sources.skip": "[0, inf)",
    "data.sources.take": "[0, inf)",
    "data.sources.embedded_seed": "[0, inf)",
    "spm.vocab_size": "[8, inf)",  # 4 special pieces + a few; the corpus's characters may need more
    "spm.character_coverage": "(0, 1]",
    "spm.input_sentence_size": "[0, inf)",
    "spm.alpha": "[0, inf)",  # bpe: a probability, below 1 (seq2seq/config/rules.py)
    "spm.nbest_size": "[-1, inf)",  # unigram sampling: -1 (all) or 2 and more (rules.py)
    "model.emb_dim": "[1, inf)",
    "model.enc_hidden": "[1, inf)",
    "model.enc_layers": "[1, inf)",
    "model.dec_hidden": "[1, inf)",
    "model.dec_layers": "[1, inf)",
    "model.attn_dim": "[1, inf)",
    "model.dropout": "[0, 1)",
    "model.word_dropout": "[0, 1)",
    "train.seed": "[0, inf)",
    "train.batch_tokens": "[1, inf)",
    "train.accum_steps": "[1, inf)",
    "train.lr": "(0, inf)",
    "train.weight_decay": "[0, inf)",
    "train.clip_norm": "[0, inf)",
    "train.label_smoothing": "[0, 1)",
    "train.max_steps": "[0, inf)",
    "train.max_epochs": "[0, inf)",
    "train.valid_every": "[1, inf)",
    "train.log_every": "[1, inf)",
    "train.patience": "[0, inf)",
    "train.warmup_steps": "[0, inf)",
    "train.lr_patience": "[1, inf)",
    "train.lr_factor": "(0, 1]",
    "train.min_lr": "[0, inf)",
    "train.valid_beam": "[1, 256]",
    "train.samples": "[0, inf)",
    "train.max_len": "[1, inf)",
    "train.filter_ratio": "[0, inf)",
    "train.threads": "[0, inf)",
    "train.keep_checkpoints": "[0, inf)",
    "train.average_last": "[0, inf)",  # at most train.keep_checkpoints (rules.py)
    "decode.beam_size": "[1, 256]",  # search memory grows with beam x batch x vocabulary
    "decode.length_penalty": "[0, 10]",
    "decode.coverage_penalty": "[0, 10]",
    "decode.max_len_ratio": "(0, 10]",
    "decode.max_len_offset": "[0, 1000]",
    "decode.batch_size": "[1, inf)",
    "decode.n_best": "[1, 256]",
    "decode.min_len": "[0, inf)",
    "decode.no_repeat_ngram": "[0, inf)",
    "decode.temperature": "[0.01, 100]",  # beyond: overflowing or flat distributions
    "decode.topk": "[0, inf)",
    "decode.sampling_seed": "[0, inf)",
    "clean.max_length": "[0, inf)",
    "clean.length_ratio": "[0, inf)",  # 0 (off) or at least 1 (rules.check_clean)
    "clean.script": "[0, 1]",
    "clean.language": "[0, 1]",
}
