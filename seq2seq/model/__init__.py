"""The network: bi-directional encoder, attention decoder with input feeding (``encode`` /
``decode_step``), its cells, attention and dropout, the CPU fast paths, compiled steps, device and
precision."""

from __future__ import annotations

from seq2seq.model.device import pick_device
from seq2seq.model.network import DecoderState, Seq2Seq, build_model, count_parameters

__all__ = ["Seq2Seq", "DecoderState", "build_model", "count_parameters", "pick_device"]
