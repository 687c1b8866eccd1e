"""`asr-cli export`: a CTC or transducer checkpoint -> an ONNX model that onnxruntime runs on the CPU.

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

What decoding needs besides the graph (asr/inference/onnx_model.py's metadata: units / tokenizer
state, CMVN, feature config, normaliser, language, model config, training step, dev CER)
is stored in the file's metadata_props, and a readable copy beside it in `<out>.json`.
Before anything is written the export is checked: onnxruntime and PyTorch run one batch
of utterances of different lengths, and the lengths must be equal and the log-probs agree
within CHECK_ATOL, or nothing is written and the export fails with one line.

Streaming (`--streaming --chunk-ms 640`, a model trained with --streaming): the graph is one
chunk step instead (`_ChunkStep`: the encoder's `forward_chunk` with its caches, the head,
log-softmax; inputs and outputs in asr/inference/onnx_model.py's docstring), the caches explicit inputs
and outputs. The chunk (encoder frames) and the cache's length are dynamic axes, so the file
streams with any chunk; --chunk-ms is the one it is checked at and decodes whole files with,
stored in the metadata (chunk_ms, chunk, left, left_chunks, streaming) beside the rest. The
TorchScript exporter traces it (a tensor `offset` reaches rotary_tables' `start`, the masks
and the first chunks' cache mask as ops, so one trace serves every chunk). The check runs one
stream of a few chunks, caches carried, through asr/inference/streaming.py's TorchChunkRunner and the
onnxruntime runner at the export's chunk and at another: each chunk's valid frames must
match in number and their log-probs within CHECK_ATOL.

A transducer (kind "rnnt") exports three graphs (asr/inference/export_transducer.py): its
encoder in `out` (whole utterances or, --streaming, the chunk step: checked as above, on its
frames), and its decoder and joiner beside it, each checked against PyTorch too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.inference import export_transducer
from asr.inference.loading import LoadedModel, open_model
from asr.inference.onnx_graphs import CHECK_ATOL, ExportError, onnx_bytes
from asr.inference.onnx_model import (FORMAT, INPUTS, METADATA_KEY, OUTPUTS, STREAM_INPUTS, STREAM_OUTPUTS, SUBSAMPLING,
                                      OnnxStreamingCTCModel, encoder_frames, jsonable, session)
from asr.inference.streaming import CHUNK_MS, NOT_LAST, TorchChunkRunner, can_stream, chunk_frames, left_frames
from asr.nets.encoders.conformer import FRONT_CONTEXT
from pipeline.atomic import write_bytes, write_json

__all__ = ["ExportError", "export_onnx", "format_summary"]


class _LogProbs(nn.Module):
    """The traced function: CTCModel.log_probs as a module's forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        return self.model.log_probs(feats, lengths)


class _ChunkStep(nn.Module):
    """The traced function of a streaming export: one chunk through the encoder's
    `forward_chunk` and the CTC head (batch 1).

    window [1, 4 C + 3, F], offset [], total [], att_cache, conv_cache -> log_probs
    [C x U, V] (log-softmax per frame, as TorchChunkRunner), valid [C x U] bool (frames inside
    the stream), next_att_cache, next_conv_cache."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, window, offset, total, att_cache, conv_cache):
        enc, valid, att_cache, conv_cache = self.model.encoder.forward_chunk(window, offset, total, att_cache,
                                                                             conv_cache)
        logits = self.model.head(enc[0]).float()  # [C, U V]
        u = self.model.upsample
        vocab = self.model.head.out_features // u  # a Python int: the graph's vocab axis stays fixed
        log_probs = torch.log_softmax(logits.reshape(-1, vocab), dim=-1)  # [C U, V]
        return log_probs, valid[:, None].expand(-1, u).reshape(-1), att_cache, conv_cache


def sidecar_path(out: Path) -> Path:
    return Path(str(out) + ".json")


def metadata(loaded: LoadedModel) -> dict:
    """What the ONNX model carries for decoding (JSON types only): the model card, then the
    training's step and figures."""
    return jsonable({
        "format": FORMAT,
        "source": str(loaded.path),
        **loaded.card.to_dict(),
        "step": loaded.step,
        "dev_cer": loaded.dev_cer,
        "best_cer": loaded.best_cer,
        "metrics": loaded.metrics,
        "inputs": {"feats": "float32 [batch, time, n_mels], CMVN applied", "lengths": "int64 [batch]"},
        "outputs": {"log_probs": "float32 [batch, frames, vocab]", "out_lengths": "int64 [batch]"},
    })


def graph_bytes(model: nn.Module, n_mels: int) -> bytes:
    """The serialised ONNX graph of `model.log_probs` (no metadata yet)."""
    feats, lengths = torch.zeros(2, 64, n_mels), torch.tensor([64, 48])
    return onnx_bytes(_LogProbs(model), (feats, lengths), INPUTS, OUTPUTS,
                      {"feats": {0: "batch", 1: "time"}, "lengths": {0: "batch"},
                       "log_probs": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}})


def chunk_graph_bytes(model: nn.Module, n_mels: int, chunk: int, left: int) -> bytes:
    """The serialised ONNX graph of one chunk step (`_ChunkStep`), traced at `chunk` encoder
    frames and a cache of `left`; both are dynamic axes of the graph."""
    att, conv = model.encoder.stream_caches(left)
    window = torch.zeros(1, SUBSAMPLING * chunk + FRONT_CONTEXT, n_mels)
    args = (window, torch.tensor(0), torch.tensor(NOT_LAST), att, conv)
    if model.kind == "rnnt":  # the transducer's encoder frames [C, J] (asr/inference/export_transducer.py)
        return declare_output_shapes(export_transducer.chunk_bytes(model, args, STREAM_INPUTS, STREAM_AXES),
                                     model.joiner.enc_proj.out_features)
    data = onnx_bytes(_ChunkStep(model), args, STREAM_INPUTS, STREAM_OUTPUTS, STREAM_AXES)
    return declare_output_shapes(data, model.head.out_features // model.upsample)


STREAM_AXES = {"window": {1: "window"}, "att_cache": {4: "left"}, "next_att_cache": {4: "left"},
               "log_probs": {0: "frames"}, "valid": {0: "frames"}, "frames": {0: "frames"}}


def declare_output_shapes(data: bytes, vocab: int) -> bytes:
    """The outputs' shapes as the graph computes them, where ONNX's shape inference loses them
    on the symbolic chunk: log_probs [frames, vocab] (a transducer's frames [frames, J]), each
    next cache its input's shape (what a runtime other than onnxruntime reads to allocate)."""
    import onnx

    proto = onnx.load_from_string(data)
    inputs = {i.name: i for i in proto.graph.input}
    for out in proto.graph.output:
        if out.name.startswith("next_"):
            out.type.tensor_type.shape.CopyFrom(inputs[out.name[len("next_"):]].type.tensor_type.shape)
        elif out.name in ("log_probs", "frames"):
            out.type.tensor_type.shape.dim[1].dim_value = vocab  # setting the value clears the symbolic name
    return proto.SerializeToString()


def check_chunks(model: nn.Module, data: bytes, meta: dict, n_mels: int) -> tuple[float, list[int]]:
    """Max |log-prob difference| between PyTorch (TorchChunkRunner) and onnxruntime on one
    random stream of 3.5 chunks of the export's chunk C (its last chunk partial), caches carried,
    and the same stream in chunks of another size (the chunk is a dynamic axis). Returns it and
    the chunk sizes checked; raises ExportError when they disagree."""
    exported = OnnxStreamingCTCModel(Path("<export check>"), session(data), meta)
    c = exported.chunk
    t = SUBSAMPLING * c * 3 + SUBSAMPLING * c // 2 + 3
    feats = torch.randn(t, n_mels, generator=torch.Generator().manual_seed(0)).numpy()
    padded = np.concatenate([np.zeros((FRONT_CONTEXT, n_mels), np.float32), feats,
                             np.zeros((SUBSAMPLING * c + FRONT_CONTEXT, n_mels), np.float32)])
    sizes = [c, 1 if c > 1 else 3]
    diff = 0.0
    for chunk in sizes:
        ref = TorchChunkRunner(model, chunk, left_frames(model, chunk))
        got = exported.chunk_runner(chunk)
        width = SUBSAMPLING * chunk + FRONT_CONTEXT
        for offset in range(0, encoder_frames(t), chunk):
            window = padded[SUBSAMPLING * offset: SUBSAMPLING * offset + width]
            last = SUBSAMPLING * (offset + chunk) >= t
            a = ref.step(window, offset, t if last else NOT_LAST).numpy()
            b = got.step(window, offset, t if last else NOT_LAST).numpy()
            if a.shape != b.shape:
                raise ExportError(f"the exported chunk step gives {b.shape[0]} frames where PyTorch gives "
                                  f"{a.shape[0]} (chunk {chunk}, offset {offset}): this model cannot be exported")
            diff = max(diff, float(np.abs(a - b).max()) if a.size else 0.0)
    if not diff <= CHECK_ATOL:
        raise ExportError(f"the exported model's log-probs differ from PyTorch's by up to {diff:.3g} "
                          f"(> {CHECK_ATOL:g}, a stream in chunks of {' and '.join(map(str, sizes))}): "
                          "this model cannot be exported")
    return diff, sizes


def check(model: nn.Module, data: bytes, n_mels: int) -> float:
    """Max |log-prob difference| between PyTorch and onnxruntime on a batch of 3 utterances of
    different lengths (their valid frames). Raises ExportError when they disagree."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 157, n_mels, generator=gen)
    lengths = torch.tensor([157, 90, 23])
    with torch.no_grad():  # a transducer's graph gives its frames
        ref, ref_lens = (model.frames if model.kind == "rnnt" else model.log_probs)(feats, lengths)
    got, got_lens = session(data).run(None, {"feats": feats.numpy(), "lengths": lengths.numpy()})
    if got.shape != tuple(ref.shape) or not np.array_equal(got_lens, ref_lens.numpy()):
        raise ExportError(f"the exported model's output shape {got.shape} / lengths {got_lens.tolist()} differ "
                          f"from PyTorch's {tuple(ref.shape)} / {ref_lens.tolist()}: this model cannot be exported")
    diff = max(float(np.abs(got[i, :n] - ref[i, :n].numpy()).max()) for i, n in enumerate(ref_lens.tolist()) if n)
    if not diff <= CHECK_ATOL:
        raise ExportError(f"the exported model's log-probs differ from PyTorch's by up to {diff:.3g} "
                          f"(> {CHECK_ATOL:g}): this model cannot be exported")
    return diff


def export_onnx(checkpoint: Path, out: Path, streaming: bool = False, chunk_ms: float | None = None) -> dict:
    """Write `out` (the ONNX model, metadata inside) and `<out>.json` (a readable copy of the
    metadata) from a CTC checkpoint; returns a summary. `streaming`: the chunk step of a model
    trained with --streaming, checked and decoding whole files at `chunk_ms` (default
    asr.inference.streaming.CHUNK_MS). Raises ExportError (a LAS checkpoint, an --out without .onnx,
    --chunk-ms without --streaming, --streaming of a model not trained so, a model the check
    refuses), CheckpointError (not a checkpoint), OSError (the write)."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"--out {out} must end in .onnx (transcribe and eval pick the runtime by it)")
    if checkpoint.suffix == ".onnx":
        raise ExportError(f"{checkpoint} is already an ONNX model: export takes a checkpoint made by `asr-cli train`")
    if checkpoint.resolve() == out.resolve():
        raise ExportError("--out must not be the checkpoint itself")
    if chunk_ms is not None and not streaming:
        raise ExportError("--chunk-ms is the chunk of a streaming export: give --streaming too")
    loaded = open_model(checkpoint, "cpu")
    model = loaded.model
    kind = loaded.kind
    if kind not in ("ctc", "rnnt"):
        raise ExportError(f"export supports CTC and transducer models; {checkpoint} holds a "
                          f"{kind.upper() if kind else 'different'} model")
    if streaming and not can_stream(model):
        raise ExportError(f"--streaming: {checkpoint} was not trained with --streaming (train a conformer-*-streaming "
                          "preset), or export it without --streaming")
    rnnt = kind == "rnnt"
    n_mels = loaded.features.n_mels
    meta = metadata(loaded)
    # output frames per feature frame, for word timestamps (asr/decoding/timestamps.py)
    meta.update(time_reduction=int(model.encoder.time_reduction), upsample=int(getattr(model, "upsample", 1)))
    if streaming:
        meta.update(stream_metadata(model, loaded.features.hop_ms, CHUNK_MS if chunk_ms is None else chunk_ms))
    steps = {}
    try:
        if rnnt:  # the transducer's three graphs (asr/inference/export_transducer.py)
            meta.update(export_transducer.metadata(model, out, meta["outputs"]))
            steps = export_transducer.step_bytes(model)
        data = (chunk_graph_bytes(model, n_mels, meta["chunk"], meta["left"]) if streaming
                else export_transducer.encoder_bytes(model, n_mels) if rnnt else graph_bytes(model, n_mels))
    except Exception as e:  # the exporter's own errors: an operator or construct it cannot express
        reason = " ".join(str(e).split())[:200]
        raise ExportError(f"torch.onnx cannot export {checkpoint} ({type(e).__name__}: {reason})") from None
    import onnx

    proto = onnx.load_from_string(data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, ensure_ascii=False)
    proto.producer_name, proto.doc_string = "cv-asr", f"asr-cli export of {checkpoint.name}"
    data = proto.SerializeToString()
    summary = {"out": str(out), "sidecar": str(sidecar_path(out)), "bytes": len(data),
               "preset": loaded.card.name, "step": meta["step"],
               "dev_cer": meta["dev_cer"], "streaming": streaming}
    if streaming:
        summary["max_diff"], summary["chunks_checked"] = check_chunks(model, data, meta, n_mels)
        summary.update(chunk_ms=meta["chunk_ms"], chunk=meta["chunk"], left=meta["left"])
    else:
        summary["max_diff"] = check(model, data, n_mels)
    if rnnt:
        summary["max_diff"] = max(summary["max_diff"], export_transducer.check_steps(model, steps, len(loaded.tokenizer)))
        summary["graphs"] = [str(p) for p in export_transducer.side_files(out).values()]
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, path in export_transducer.side_files(out).items() if rnnt else ():
        write_bytes(path, steps[name])
    write_bytes(out, data)
    write_json(sidecar_path(out), meta)
    return summary


def stream_metadata(model: nn.Module, hop_ms: float, chunk_ms: float) -> dict:
    """A streaming export's own metadata: its chunk (ms, encoder frames), the attention cache's
    length at that chunk and the rule for others (left_chunks), what its inputs and outputs are.
    Raises ExportError for a chunk_ms that is not a chunk."""
    try:
        chunk = chunk_frames(chunk_ms, hop_ms)
    except ValueError as e:
        raise ExportError(f"--chunk-ms: {e}") from None
    cfg = model.encoder.cfg
    return {
        "streaming": True, "chunk_ms": chunk * SUBSAMPLING * hop_ms, "chunk": chunk,
        "left": left_frames(model, chunk, hop_ms), "left_chunks": int(cfg.left_chunks),
        "inputs": {"window": "float32 [1, 4 chunk + 3, n_mels], CMVN applied: feature frames 4 offset - 3 .. "
                             "4 (offset + chunk) - 1 (zeros before the first)",
                   "offset": "int64 []: encoder frames of the stream before this chunk",
                   "total": "int64 []: the stream's feature frames in its last chunk, else more than the window's end",
                   "att_cache": "float32 [blocks, 2, 1, heads, left, head_dim]: zeros at the start, then the "
                                "previous step's next_att_cache",
                   "conv_cache": "float32 [blocks, 1, d_model, kernel - 1]: likewise"},
        "outputs": {"log_probs": "float32 [chunk x upsample, vocab]", "valid": "bool [chunk x upsample]: frames "
                    "inside the stream (keep these)", "next_att_cache": "as att_cache",
                    "next_conv_cache": "as conv_cache"},
    }


def format_summary(summary: dict) -> str:
    cer = f", dev CER {summary['dev_cer']:.4f}" if isinstance(summary["dev_cer"], float) else ""
    wrote = (f"wrote {summary['out']} ({summary['bytes'] / 1e6:.1f} MB, {summary['preset']}, step {summary['step']}"
             f"{cer}) and {summary['sidecar']}\n")
    if summary.get("graphs"):  # a transducer: its decoder and joiner beside it
        wrote += f"  and its decoder and joiner, {' and '.join(summary['graphs'])} (keep the three together)\n"
    if summary.get("streaming"):
        sizes = " and ".join(map(str, summary["chunks_checked"]))
        return (wrote + f"  streaming: one chunk step, caches in and out; chunk {summary['chunk_ms']:g} ms "
                f"({summary['chunk']} encoder frames, any other streams too), attention cache {summary['left']} "
                f"frames\n"
                f"  checked against PyTorch: log-probs within {summary['max_diff']:.1e} on a stream in chunks of "
                f"{sizes}, caches carried\n"
                f"  use it: asr-cli transcribe --stream --checkpoint {summary['out']} FILE...  "
                f"(or Recognizer.load(...).stream())")
    return (wrote + f"  checked against PyTorch: outputs within {summary['max_diff']:.1e} on a test batch\n"
            f"  use it: asr-cli transcribe --checkpoint {summary['out']} FILE...")
