"""The data stages: reading corpora (files, TSV, JSON lines, the Hugging Face hub or a mirror, the embedded
corpus) into normalized text, SentencePiece tokenizers, token-id files and length-bucketed batches."""

from __future__ import annotations

from seq2seq.data.corpus import download, read_split
from seq2seq.data.tokenizer import Tokenizer, load_tokenizers, train_tokenizers

__all__ = ["download", "read_split", "Tokenizer", "load_tokenizers", "train_tokenizers"]
