"""A CTC model exported by `asr-cli export`, run by onnxruntime on the CPU.

    model, tokenizer, meta = load_onnx(Path("model.onnx"))
    log_probs, out_lens = model.log_probs(feats [B, T, F], lengths [B])   # torch in, torch out

`OnnxCTCModel` has CTCModel's `kind` and `log_probs` signature, so asr/decoding.py's
`Decoder` (greedy, beam, beam + LM) decodes it unchanged, and asr/loading.py's `open_model`
hands one out for a path ending in `.onnx` (`asr-cli transcribe` and `asr-cli eval` take
either). The ONNX graph maps

    feats [batch, time, n_mels] float32 (CMVN applied)  lengths [batch] int64
    -> log_probs [batch, frames, vocab] float32         out_lengths [batch] int64

What decoding needs besides the graph (units / tokenizer state, CMVN, feature config,
normaliser, language, model config, training step and metrics) is JSON in the file's
metadata_props under METADATA_KEY, so the .onnx alone is enough; asr/export.py writes a
readable copy beside it (`model.onnx.json`), which loading does not read.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import torch

from asr.checkpoint import CheckpointError
from asr.tokenizer import tokenizer_from_state

FORMAT = "cv-asr-onnx-1"
METADATA_KEY = "cv-asr"
INPUTS = ("feats", "lengths")
OUTPUTS = ("log_probs", "out_lengths")
DECODING_KEYS = ("model", "tokenizer", "features", "cmvn", "lang")  # what the metadata must hold


def jsonable(value):
    """Checkpoint values -> plain JSON types: arrays and tensors to lists, tuples to lists,
    bytes (a unigram tokenizer's model proto) to {"base64": ...}."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return None  # no dev CER yet (inf): JSON has no infinity
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def from_jsonable(value):
    """Inverse of `jsonable` for what it changed that matters: {"base64": ...} back to bytes."""
    if isinstance(value, dict):
        if set(value) == {"base64"}:
            return base64.b64decode(value["base64"])
        return {k: from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    return value


class OnnxCTCModel:
    """onnxruntime session with CTCModel's decoding interface (CPU; inputs on any device)."""

    kind = "ctc"

    def __init__(self, path: Path, session, meta: dict):
        self.path, self.session, self.meta = Path(path), session, meta

    def log_probs(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> float32 log-probabilities [B, T', V], lengths [B]."""
        log_probs, out_lens = self.session.run(list(OUTPUTS), {
            "feats": np.ascontiguousarray(feats.detach().float().cpu().numpy()),
            "lengths": lengths.detach().long().cpu().numpy()})
        return torch.from_numpy(log_probs).to(feats.device), torch.from_numpy(out_lens).to(lengths.device)

    @property
    def time_reduction(self) -> int:
        """Feature frames per encoder frame (word timestamps need it)."""
        return int(self.meta["time_reduction"])

    @property
    def upsample(self) -> int:
        """Log-prob frames per encoder frame."""
        return int(self.meta.get("upsample", 1))

    # what code written for nn.Module calls on a loaded model
    def eval(self) -> "OnnxCTCModel":
        return self

    def to(self, *args, **kwargs) -> "OnnxCTCModel":
        return self

    def parameters(self):
        return iter(())


def session(path: Path | bytes, threads: int | None = None):
    """An onnxruntime CPU session of `path` (or a serialised model), with `threads` intra-op threads (default: torch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not the user's business
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=["CPUExecutionProvider"])


def load_onnx(path: Path, threads: int | None = None) -> tuple[OnnxCTCModel, object, dict]:
    """A model written by `asr-cli export` -> (OnnxCTCModel, tokenizer, metadata dict with the
    checkpoint's decoding keys: features, cmvn, lang, normalizer, model ...). Raises
    CheckpointError, naming the file, for a missing, unreadable or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX model {path} does not exist" if not path.exists()
                              else f"{path} is not a file")
    try:
        sess = session(path, threads)
    except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) all mean "not a model"
        reason = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(e).__name__}: {reason})") from None
    raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        meta = from_jsonable(json.loads(raw)) if raw is not None else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an ONNX model, but not one made by `asr-cli export` "
                              f"(no '{METADATA_KEY}' metadata of format {FORMAT})")
    missing = [k for k in DECODING_KEYS if k not in meta]
    names = ([i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])
    if missing or names != (list(INPUTS), list(OUTPUTS)):
        raise CheckpointError(f"{path}: damaged `asr-cli export` model "
                              f"({'lacks ' + ', '.join(missing) if missing else 'unexpected inputs / outputs'})")
    try:
        tokenizer = tokenizer_from_state(meta["tokenizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable tokenizer state in its metadata ({e})") from None
    return OnnxCTCModel(path, sess, meta), tokenizer, meta
