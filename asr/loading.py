"""Opening a trained model for use (eval, transcribe, the API, serve): a checkpoint made by
`asr-cli train` (asr/models.py's `load_model`) or a CTC model made by `asr-cli export`
(asr/onnx_model.py's `load_onnx`, onnxruntime on the CPU), told apart by the file's suffix.

    model, tokenizer, ckpt = open_model(Path("runs/fr-ctc/best.pt"), device)   # or model.onnx

Either way `model` has `kind` and the decoding interface asr/decoding.py's `Decoder` needs,
and `ckpt` the decoding keys (features, cmvn, lang, normalizer, model).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from asr.models import load_model
from asr.onnx_model import OnnxCTCModel, load_onnx
from asr.tokenizer import Tokenizer

ONNX_SUFFIX = ".onnx"


def open_model(path: Path, device="cpu") -> tuple[nn.Module | OnnxCTCModel, Tokenizer, dict]:
    """(model in eval mode, tokenizer, checkpoint or ONNX metadata dict) of `path`. Raises
    asr.checkpoint.CheckpointError when it is neither (naming the file and why)."""
    if Path(path).suffix == ONNX_SUFFIX:
        return load_onnx(Path(path))
    return load_model(Path(path), device)
