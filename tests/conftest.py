"""Shared fixtures: tiny seeded models built in code, tiny recipes in a temp folder."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from seq2seq.config.schema import ModelConfig
from seq2seq.model.network import Seq2Seq, build_model

ROOT = Path(__file__).resolve().parents[1]
SHARED_MULTI30K = Path(os.environ.get("SEQ2SEQ_MULTI30K", ROOT.parent / "shared" / "corpora" / "multi30k"))

# tiny models run fastest on one thread, and the suite shares 2 cores with nothing else that way
torch.set_num_threads(1)


def tiny_model(seed: int = 0, vocab: int = 40, **overrides) -> Seq2Seq:
    """A small random-weight model in eval mode; overrides go to ModelConfig."""
    values = dict(
        emb_dim=16,
        enc_hidden=12,
        enc_layers=2,
        dec_hidden=20,
        dec_layers=1,
        attention="additive",
        attn_dim=10,
        input_feeding=True,
        tie_embeddings=True,
        dropout=0.0,
    )
    values.update(overrides)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(**values), vocab, vocab)
    return model.eval()


def random_ids(n: int, vocab: int = 40, min_len: int = 1, max_len: int = 9, seed: int = 0) -> list[list[int]]:
    """n id sequences of random length using ids 4..vocab-1 (no specials)."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(min_len, max_len + 1, (n,), generator=g).tolist()
    return [torch.randint(4, vocab, (k,), generator=g).tolist() for k in lens]


def rehash_manifest(corpus: Path) -> None:
    """Record the corpus files' current SHA-256 in its manifest.json (a test that edits a downloaded
    file by hand): the corpus as a download of the changed data would have written it."""
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    for name, entry in manifest["files"].items():
        entry["sha256"] = hashlib.sha256((corpus / name).read_bytes()).hexdigest()
    (corpus / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def tiny_recipe_dict(tmp_path: Path, **sections) -> dict:
    """An embedded-corpus recipe small enough to run all stages in seconds, everything under tmp_path."""
    recipe = {
        "name": "tiny",
        "run_dir": str(tmp_path / "run"),
        "data": {
            "source": "embedded",
            "splits": {"train": "train", "dev": "dev", "test": "test"},
            "embedded_sizes": {"train": 400, "dev": 20, "test": 20},
            "dir": str(tmp_path / "corpus"),
        },
        "spm": {"vocab_size": 120, "model_type": "unigram"},
        "model": {
            "emb_dim": 16,
            "enc_hidden": 16,
            "enc_layers": 1,
            "dec_hidden": 24,
            "attn_dim": 16,
            "dropout": 0.1,
        },
        "train": {
            # fp32 whatever the CPU: the tests compare numbers across processes and batchings in fp32
            # (precision auto would pick bf16 on a CPU with AVX512-BF16/AMX)
            "precision": "fp32",
            "batch_tokens": 400,
            "max_steps": 12,
            "valid_every": 6,
            "log_every": 3,
            "lr": 0.003,
            "samples": 1,
        },
        "decode": {"beam_size": 3, "batch_size": 8},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            recipe.setdefault(section, {}).update(values)
        else:
            recipe[section] = values
    return recipe


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """Path of a tiny embedded recipe YAML (see tiny_recipe_dict)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tmp_path)), encoding="utf-8")
    return path


@pytest.fixture
def multi30k_dir() -> Path:
    if not (SHARED_MULTI30K / "train.de.gz").is_file():
        pytest.skip(f"real Multi30k files not found at {SHARED_MULTI30K} (../shared is absent)")
    return SHARED_MULTI30K


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """(config, recipe path) of a tiny run trained for 12 steps, shared by the tests that only read it."""
    from seq2seq.config.load import load_config
    from seq2seq.data.corpus import download
    from seq2seq.data.tokenizer import train_tokenizers
    from seq2seq.training.setup import train

    tmp = tmp_path_factory.mktemp("trained")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_dict(tmp)), encoding="utf-8")
    cfg = load_config(recipe)
    quiet = lambda *_: None  # noqa: E731
    download(cfg, log=quiet)
    train_tokenizers(cfg, log=quiet)
    train(cfg, log=quiet)
    return cfg, recipe


def record_encoder_rnn(model, monkeypatch, seen: list, device_type: str = "cpu") -> None:
    """Append (autocast enabled, output dtype) to ``seen`` each time the encoder's recurrence runs:
    nn.GRU/LSTM/RNN's forward on other devices, seq2seq.model.encoder_gru's padded GRU on the CPU."""
    from seq2seq.model import encoder_gru

    def padded(*args):
        out, h = encoder_gru.padded_gru(*args)
        seen.append((torch.is_autocast_enabled(device_type), out.dtype))
        return out, h

    monkeypatch.setattr("seq2seq.model.network.padded_gru", padded)
    model.encoder.rnn.register_forward_hook(
        lambda m, args, out: seen.append((torch.is_autocast_enabled(device_type), out[0].data.dtype))
    )
