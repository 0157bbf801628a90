"""Sharing a model: export a run as a self-contained model folder (safetensors, SentencePiece, config,
model card) and push it to the Hugging Face Hub. Loading a folder (or ``hf://OWNER/NAME``) is
:mod:`seq2seq.decode.model_folder`'s, under every command that takes a run directory."""

from seq2seq.share.card import card_text, gather
from seq2seq.share.export import export
from seq2seq.share.hub import push

__all__ = ["export", "push", "card_text", "gather"]
