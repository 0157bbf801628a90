"""``seq2seq quantize``: a run's checkpoint as an int8 checkpoint file (:mod:`seq2seq.model.quantized`).

The file is a checkpoint like the others (config, vocabulary sizes, tokenizer fingerprint, training
progress) whose ``model`` holds int8 weights with their fp32 row scales and the remaining fp32 tensors
(biases, attention's ``v``), and whose ``quantization`` says so. It stores plain tensors, not prepacked
weights: the layers are prepacked for the CPU that loads it. It loads with ``weights_only`` like every
checkpoint, and ``translate`` / ``evaluate`` / ``serve --checkpoint NAME`` decode it in int8.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import torch

from seq2seq.constants import CHECKPOINT_SUFFIX, checkpoints_dir
from seq2seq.decode.loading import load_run
from seq2seq.errors import UserError
from seq2seq.model.quantized import QUANTIZATION, int8_state
from seq2seq.runs import checkpoint as ckpt_io
from seq2seq.runs import ownership as rundir

SUFFIX = "-int8"  # best -> checkpoints/best-int8.pt


def int8_payload(ckpt: dict, model) -> dict:
    """The checkpoint dict of ``model`` (an fp32 model) in int8, with ``ckpt``'s metadata."""
    keep = ("config", "src_vocab", "tgt_vocab", "tokenizers", "progress", "averaged_from")
    payload = {k: v for k, v in ckpt.items() if k in keep}
    payload.update(model=int8_state(model), quantization=QUANTIZATION)
    return payload


def serialized_size(tensors: dict) -> int:
    """Bytes ``torch.save`` writes for a dict of tensors (shared tensors once)."""
    buf = io.BytesIO()
    torch.save(tensors, buf)
    return buf.tell()


def quantize_run(run_dir: Path, which: str = "best", out: Optional[Path] = None) -> tuple[Path, int, int]:
    """Write the int8 checkpoint of ``run_dir``'s checkpoint ``which`` to ``out`` (default:
    ``<run_dir>/checkpoints/<which>-int8.pt``), atomically, holding the run directory. Returns (the file,
    its size, the size of the fp32 parameters alone) in bytes."""
    run_dir = Path(run_dir)
    path = ckpt_io.resolve(run_dir, which, "--checkpoint")
    ckpt = ckpt_io.load(path)
    if ckpt.get("quantization") is not None:
        raise UserError(f"{path} is already an int8 checkpoint: quantize the fp32 checkpoint it came from")
    if out is None:
        out = ckpt_io.checkpoint_path(run_dir, path.stem + SUFFIX, "-o/--output")
    elif not str(out).endswith(CHECKPOINT_SUFFIX):
        raise UserError(f"-o {out}: a checkpoint file name ends in {CHECKPOINT_SUFFIX}")
    if Path(out).resolve() == path.resolve():
        raise UserError(f"-o {out} is the checkpoint being quantized: give another file")
    own = Path(out).resolve().parent == checkpoints_dir(run_dir).resolve()
    if own and ckpt_io.TRAINING_OWNS.fullmatch(Path(out).stem):
        raise UserError(
            f"-o {out}: {Path(out).name} belongs to training (best, last, step-N): choose another name"
        )
    with rundir.claim(run_dir, None, "quantize", create=False):
        _, model = load_run(run_dir, str(path))
        payload = int8_payload(ckpt, model)
        ckpt_io.save(out, payload)
    return Path(out), Path(out).stat().st_size, serialized_size(model.state_dict())
