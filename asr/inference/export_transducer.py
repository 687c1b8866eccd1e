"""A transducer's export (asr/inference/export.py calls it): its three graphs, as sherpa-onnx
lays them out, and the check of the two small ones.

    model.onnx          the encoder and the joiner's encoder projection (`TransducerModel.frames`):
                        feats [batch, time, n_mels], lengths [batch] -> frames [batch, T', J],
                        out_lengths [batch]; with --streaming one chunk step instead (as a CTC
                        export's, its output `frames` [C, J]); the metadata, as every export's
    model.decoder.onnx  the prediction network's step and projection (`decoder_step`):
                        state [N, ...], units [N] int64 -> next_state, pred [N, J]
    model.joiner.onnx   `joint`: frames [N, J], pred [N, J] -> log_probs [N, V]

asr/inference/export.py traces and checks the encoder graph as it does a CTC model's (PyTorch
against onnxruntime on a batch, or a stream of chunks, within CHECK_ATOL); `check_steps`
checks these two on random states and frames. The search stays in Python
(asr/decoding/transducer.py), calling the graphs a frame at a time (asr/inference/onnx_model.py's
OnnxTransducer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.inference.onnx_graphs import CHECK_ATOL, ExportError, onnx_bytes
from asr.inference.onnx_model import (DECODER_INPUTS, DECODER_OUTPUTS, INPUTS, JOINER_INPUTS, JOINER_OUTPUTS,
                                      RNNT_OUTPUTS, RNNT_STREAM_OUTPUTS, session)

OUTPUT_AXES = {"frames": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}}
STEP_AXES = {name: {0: "n"} for name in DECODER_INPUTS + DECODER_OUTPUTS + JOINER_INPUTS + JOINER_OUTPUTS}


class _Frames(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats, lengths):
        return self.model.frames(feats, lengths)


class _FrameStep(_Frames):
    """One chunk: the encoder's `forward_chunk` and the joiner's encoder projection (batch 1)."""

    def forward(self, window, offset, total, att_cache, conv_cache):
        enc, valid, att_cache, conv_cache = self.model.encoder.forward_chunk(window, offset, total, att_cache,
                                                                             conv_cache)
        return self.model.joiner.enc_proj(enc[0]).float(), valid, att_cache, conv_cache


class _DecoderStep(_Frames):
    def forward(self, state, units):
        return self.model.decoder_step(state, units)


class _Joint(_Frames):
    def forward(self, frames, pred):
        return self.model.joint(frames, pred)


def side_files(out: Path) -> dict[str, Path]:
    """The decoder's and joiner's files beside `out` (model.onnx -> model.decoder.onnx, ...)."""
    stem = out.with_suffix("")
    return {"decoder": Path(f"{stem}.decoder.onnx"), "joiner": Path(f"{stem}.joiner.onnx")}


def metadata(model: nn.Module, out: Path, outputs: dict) -> dict:
    """What the encoder's metadata adds for a transducer: its two other files, the prediction
    network's state before anything, what the graphs take and give (`outputs`: the encoder's,
    as a CTC export describes them, its log-probs now the joiner's encoder side)."""
    files = side_files(out)
    outputs = {("frames" if k == "log_probs" else k): v for k, v in outputs.items()}
    outputs["frames"] = "float32 [batch, frames, joint_dim] (streaming: [chunk, joint_dim]): the joiner's encoder side"
    return {"decoder_file": files["decoder"].name, "joiner_file": files["joiner"].name,
            "decoder_start": model.decoder_start(1)[0].tolist(), "outputs": outputs,
            "decoder": {"inputs": "state [N, ...] (decoder_start at first), units int64 [N]",
                        "outputs": "next_state, pred float32 [N, joint_dim]"},
            "joiner": {"inputs": "frames [N, joint_dim], pred [N, joint_dim]", "outputs": "log_probs [N, vocab]"}}


def encoder_bytes(model: nn.Module, n_mels: int) -> bytes:
    feats, lengths = torch.zeros(2, 64, n_mels), torch.tensor([64, 48])
    return onnx_bytes(_Frames(model), (feats, lengths), INPUTS, RNNT_OUTPUTS,
                      {"feats": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, **OUTPUT_AXES})


def chunk_bytes(model: nn.Module, args: tuple, inputs, axes: dict) -> bytes:
    return onnx_bytes(_FrameStep(model), args, inputs, RNNT_STREAM_OUTPUTS, axes)


def step_bytes(model: nn.Module) -> dict[str, bytes]:
    """The decoder's and the joiner's graphs, traced on 3 hypotheses."""
    state = model.decoder_start(3)
    units = torch.tensor([0, 2, 3])
    _, pred = model.decoder_step(state, units)
    frames = torch.zeros(3, pred.shape[1])
    return {"decoder": onnx_bytes(_DecoderStep(model), (state, units), DECODER_INPUTS, DECODER_OUTPUTS, STEP_AXES),
            "joiner": onnx_bytes(_Joint(model), (frames, pred), JOINER_INPUTS, JOINER_OUTPUTS, STEP_AXES)}


def check_steps(model: nn.Module, graphs: dict[str, bytes], vocab: int) -> float:
    """Max |difference| between PyTorch and onnxruntime of the decoder (5 hypotheses two units
    along, from the start) and the joiner (on random frames). Raises ExportError."""
    gen = torch.Generator().manual_seed(0)
    units = torch.randint(2, vocab, (2, 5), generator=gen)
    decoder, joiner = session(graphs["decoder"]), session(graphs["joiner"])
    state = model.decoder_start(5)
    ort_state = state.numpy()
    diff = 0.0
    with torch.no_grad():
        for step in units:
            state, pred = model.decoder_step(state, step)
            ort_state, ort_pred = decoder.run(list(DECODER_OUTPUTS), {"state": ort_state, "units": step.numpy()})
            diff = max(diff, float(np.abs(ort_pred - pred.numpy()).max()), float(np.abs(ort_state - state.numpy()).max()))
        frames = torch.randn(5, pred.shape[1], generator=gen)
        (got,) = joiner.run(list(JOINER_OUTPUTS), {"frames": frames.numpy(), "pred": pred.numpy()})
        diff = max(diff, float(np.abs(got - model.joint(frames, pred).numpy()).max()))
    if not diff <= CHECK_ATOL:
        raise ExportError(f"the exported decoder / joiner differ from PyTorch's by up to {diff:.3g} (> {CHECK_ATOL:g}): "
                          "this model cannot be exported")
    return diff
