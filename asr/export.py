"""`asr-cli export`: a CTC checkpoint -> an ONNX model that onnxruntime runs on the CPU.

    asr-cli export --checkpoint runs/fr-ctc/best.pt --out model.onnx
    asr-cli transcribe --checkpoint model.onnx clip.mp3          (eval takes it too)

The graph is CTCModel.log_probs (conv front, BiGRU / BiLSTM layers, head, log-softmax):
features [batch, time, n_mels] (CMVN applied) and lengths [batch] in, log-probabilities
[batch, frames, vocab] and frame counts [batch] out, batch and time dynamic. The graph is
traced in eval mode, where every RNN packs its sequences (`small`'s padded batches are for
training only), so they become the ONNX GRU / LSTM's sequence_lens: padding stays out of the
recurrence exactly as in PyTorch, and each utterance of a batch gets what it gets alone. It is made by torch's TorchScript-based exporter (`dynamo=False`): the
dynamo-based one fails on these RNNs in torch 2.14 (on `pack_padded_sequence` and on
`_VF.gru` with a dynamic time axis).

What decoding needs besides the graph (asr/onnx_model.py's metadata: units / tokenizer
state, CMVN, feature config, normaliser, language, model config, training step, dev CER)
is stored in the file's metadata_props, and a readable copy beside it in `<out>.json`.
Before anything is written the export is checked: onnxruntime and PyTorch run one batch
of utterances of different lengths, and the lengths must be equal and the log-probs agree
within CHECK_ATOL, or nothing is written and the export fails with one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.models import load_model
from asr.onnx_model import FORMAT, INPUTS, METADATA_KEY, OUTPUTS, jsonable, session
from pipeline.atomic import write_bytes, write_json

OPSET = 17
CHECK_ATOL = 1e-3  # log-probs; measured differences are ~1e-6


class ExportError(ValueError):
    pass


class _LogProbs(nn.Module):
    """The traced function: CTCModel.log_probs as a module's forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        return self.model.log_probs(feats, lengths)


def sidecar_path(out: Path) -> Path:
    return Path(str(out) + ".json")


def metadata(ckpt: dict, source: Path) -> dict:
    """What the ONNX model carries for decoding (JSON types only)."""
    position = ckpt.get("position") or {}
    metrics = ckpt.get("metrics") or {}
    return jsonable({
        "format": FORMAT,
        "source": str(source),
        "model": ckpt["model"],
        "tokenizer": ckpt["tokenizer"],
        "features": ckpt["features"],
        "normalizer": ckpt.get("normalizer"),
        "cmvn": ckpt["cmvn"],
        "lang": ckpt["lang"],
        "step": position.get("step", ckpt.get("step")),
        "dev_cer": metrics.get("cer"),
        "best_cer": ckpt.get("best_cer"),
        "metrics": metrics,
        "inputs": {"feats": "float32 [batch, time, n_mels], CMVN applied", "lengths": "int64 [batch]"},
        "outputs": {"log_probs": "float32 [batch, frames, vocab]", "out_lengths": "int64 [batch]"},
    })


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null: the exporter's C++ side prints notes there directly
    ("The shape inference of prim::PackPadded type is missing": the check below is what
    tells whether the graph is right)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def graph_bytes(model: nn.Module, n_mels: int) -> bytes:
    """The serialised ONNX graph of `model.log_probs` (no metadata yet)."""
    wrapper = _LogProbs(model).eval()  # eval, so the exporter restores eval mode afterwards
    feats = torch.zeros(2, 64, n_mels)
    lengths = torch.tensor([64, 48])
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), _quiet_stderr():
        warnings.simplefilter("ignore")  # the exporter's deprecation and RNN batch_first notes
        torch.onnx.export(
            wrapper, (feats, lengths), buf, dynamo=False, opset_version=OPSET,
            input_names=list(INPUTS), output_names=list(OUTPUTS),
            dynamic_axes={"feats": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                          "log_probs": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}})
    model.eval()
    return buf.getvalue()


def check(model: nn.Module, data: bytes, n_mels: int) -> float:
    """Max |log-prob difference| between PyTorch and onnxruntime on a batch of 3 utterances of
    different lengths (their valid frames). Raises ExportError when they disagree."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 157, n_mels, generator=gen)
    lengths = torch.tensor([157, 90, 23])
    with torch.no_grad():
        ref, ref_lens = model.log_probs(feats, lengths)
    got, got_lens = session(data).run(list(OUTPUTS), {"feats": feats.numpy(), "lengths": lengths.numpy()})
    if got.shape != tuple(ref.shape) or not np.array_equal(got_lens, ref_lens.numpy()):
        raise ExportError(f"the exported model's output shape {got.shape} / lengths {got_lens.tolist()} differ "
                          f"from PyTorch's {tuple(ref.shape)} / {ref_lens.tolist()}: this model cannot be exported")
    diff = max(float(np.abs(got[i, :n] - ref[i, :n].numpy()).max()) for i, n in enumerate(ref_lens.tolist()) if n)
    if not diff <= CHECK_ATOL:
        raise ExportError(f"the exported model's log-probs differ from PyTorch's by up to {diff:.3g} "
                          f"(> {CHECK_ATOL:g}): this model cannot be exported")
    return diff


def export_onnx(checkpoint: Path, out: Path) -> dict:
    """Write `out` (the ONNX model, metadata inside) and `<out>.json` (a readable copy of the
    metadata) from a CTC checkpoint; returns a summary. Raises ExportError (a LAS checkpoint,
    an --out without .onnx, a model the check refuses), CheckpointError (not a checkpoint),
    OSError (the write)."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"--out {out} must end in .onnx (transcribe and eval pick the runtime by it)")
    if checkpoint.suffix == ".onnx":
        raise ExportError(f"{checkpoint} is already an ONNX model: export takes a checkpoint made by `asr-cli train`")
    if checkpoint.resolve() == out.resolve():
        raise ExportError("--out must not be the checkpoint itself")
    model, _, ckpt = load_model(checkpoint, "cpu")
    kind = getattr(model, "kind", None)
    if kind != "ctc":
        raise ExportError(f"export supports CTC models; {checkpoint} holds a {kind.upper() if kind else 'non-CTC'} "
                          "model")
    n_mels = int(ckpt["model"]["n_mels"])
    meta = metadata(ckpt, checkpoint)
    # log-prob frames per feature frame, for word timestamps (asr/timestamps.py)
    meta.update(time_reduction=int(model.encoder.time_reduction), upsample=int(model.upsample))
    try:
        data = graph_bytes(model, n_mels)
    except Exception as e:  # the exporter's own errors: an operator or construct it cannot express
        reason = " ".join(str(e).split())[:200]
        raise ExportError(f"torch.onnx cannot export {checkpoint} ({type(e).__name__}: {reason})") from None
    import onnx

    proto = onnx.load_from_string(data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, ensure_ascii=False)
    proto.producer_name, proto.doc_string = "cv-asr", f"asr-cli export of {checkpoint.name}"
    data = proto.SerializeToString()
    max_diff = check(model, data, n_mels)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, data)
    write_json(sidecar_path(out), meta)
    return {"out": str(out), "sidecar": str(sidecar_path(out)), "bytes": len(data),
            "preset": f"{ckpt['model']['kind']}/{ckpt['model']['preset']}", "step": meta["step"],
            "dev_cer": meta["dev_cer"], "max_diff": max_diff}


def format_summary(summary: dict) -> str:
    cer = f", dev CER {summary['dev_cer']:.4f}" if isinstance(summary["dev_cer"], float) else ""
    return (f"wrote {summary['out']} ({summary['bytes'] / 1e6:.1f} MB, {summary['preset']}, step {summary['step']}"
            f"{cer}) and {summary['sidecar']}\n"
            f"  checked against PyTorch: log-probs within {summary['max_diff']:.1e} on a test batch\n"
            f"  use it: asr-cli transcribe --checkpoint {summary['out']} FILE...")
