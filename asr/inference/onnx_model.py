"""A model exported by `asr-cli export` (CTC or transducer), run by onnxruntime on the CPU.

    model, tokenizer, meta = load_onnx(Path("model.onnx"))
    log_probs, out_lens = model.log_probs(feats [B, T, F], lengths [B])   # torch in, torch out

`OnnxCTCModel` has CTCModel's `kind` and `log_probs` signature, so asr/decoding/decoder.py's
`Decoder` (greedy, beam, beam + LM) decodes it unchanged, and asr/inference/loading.py's `open_model`
hands one out for a path ending in `.onnx` (`asr-cli transcribe` and `asr-cli eval` take
either). The ONNX graph maps

    feats [batch, time, n_mels] float32 (CMVN applied)  lengths [batch] int64
    -> log_probs [batch, frames, vocab] float32         out_lengths [batch] int64

What decoding needs besides the graph (units / tokenizer state, CMVN, feature config,
normaliser, language, model config, training step and metrics) is JSON in the file's
metadata_props under METADATA_KEY, so the .onnx alone is enough; asr/inference/export.py writes a
readable copy beside it (`model.onnx.json`), which loading does not read.

A streaming export (`asr-cli export --streaming`, metadata "streaming": true) is instead one
chunk step of a model trained with --streaming (asr/nets/encoders/conformer.py's `forward_chunk`
and the CTC head), its caches explicit inputs and outputs (as sherpa-onnx's streaming models):

    window [1, 4 C + 3, n_mels] float32 (CMVN applied)  offset [] int64  total [] int64
    att_cache [blocks, 2, 1, heads, left, head_dim]     conv_cache [blocks, 1, d_model, kernel - 1]
    -> log_probs [C x upsample, vocab] float32          valid [C x upsample] bool
       next_att_cache, next_conv_cache                  (the caches' shapes)

The chunk C and the cache's length `left` are dynamic axes: `OnnxStreamingCTCModel` streams
with any chunk (`chunk_runner`, what asr/inference/streaming.py's session runs, the twin of its
TorchChunkRunner), and decodes whole files through the same graph chunk by chunk, with the
chunk it was exported at (metadata "chunk"): the results of the chunk-masked PyTorch model.

A transducer (kind "rnnt", sherpa-onnx's layout) is three graphs: the encoder in `model.onnx`
(with the metadata; whole utterances, or with --streaming its chunk step) giving the joiner's
encoder side `frames` [batch, frames, J] (streaming: [C, J] and `valid`) instead of log-probs,
and beside it `model.decoder.onnx` (state, units [N] -> next_state, pred [N, J]: the prediction
network's step) and `model.joiner.onnx` (frames [N, J], pred [N, J] -> log_probs [N, V]).
`OnnxTransducer` has TransducerModel's decoding interface (`frames`, `decoder_start`,
`decoder_step`, `joint`), so asr/decoding/transducer.py's searches run it unchanged.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import torch

from asr.nets.encoders.conformer import FRONT_CONTEXT
from asr.store.checkpoint import CheckpointError, check_card
from asr.tokens.tokenizer import tokenizer_from_state

FORMAT = "cv-asr-onnx-1"
METADATA_KEY = "cv-asr"
INPUTS = ("feats", "lengths")
OUTPUTS = ("log_probs", "out_lengths")
DECODING_KEYS = ("model", "tokenizer", "features", "cmvn", "lang")  # what the metadata must hold
# a streaming export (`asr-cli export --streaming`): one chunk step, caches in and out
STREAM_INPUTS = ("window", "offset", "total", "att_cache", "conv_cache")
STREAM_OUTPUTS = ("log_probs", "valid", "next_att_cache", "next_conv_cache")
STREAM_KEYS = ("chunk_ms", "chunk", "left", "left_chunks", "time_reduction", "upsample")
# a transducer's encoder gives the joiner's encoder side; its decoder and joiner graphs lie beside it
RNNT_OUTPUTS, RNNT_STREAM_OUTPUTS = ("frames", "out_lengths"), ("frames", "valid", "next_att_cache", "next_conv_cache")
DECODER_INPUTS, DECODER_OUTPUTS = ("state", "units"), ("next_state", "pred")
JOINER_INPUTS, JOINER_OUTPUTS = ("frames", "pred"), ("log_probs",)
RNNT_KEYS = ("decoder_file", "joiner_file", "decoder_start", "time_reduction")
SUBSAMPLING = 4  # feature frames per encoder frame of a streaming model (the x4 front)


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
    streaming = False

    def __init__(self, path: Path, session, meta: dict):
        self.path, self.session, self.meta = Path(path), session, meta

    def log_probs(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> float32 log-probabilities [B, T', V], lengths [B]."""
        log_probs, out_lens = self.session.run(None, {  # (a transducer's: its frames)
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


def encoder_frames(total: int) -> int:
    """Encoder frames of `total` feature frames behind the x4 front (its output_lengths)."""
    return ((total - 1) // 2) // 2 + 1 if total > 0 else 0


class OnnxChunkRunner:
    """A streaming export's chunk graph, one chunk at a time, holding its caches: the twin of
    asr/inference/streaming.py's TorchChunkRunner (the session runs either).

    step(window float32 [4 C + 3, F] (CMVN applied), offset, total) -> the graph's first output
    (CTC log-probs [n x upsample, V], a transducer's frames [n, J]; torch, CPU) on the chunk's
    n valid frames (C, or fewer in the last chunk); the caches it returns are the next call's
    inputs."""

    def __init__(self, session, chunk: int, att_shape: tuple[int, ...], conv_shape: tuple[int, ...]):
        self.session, self.chunk = session, chunk
        self.att_shape, self.conv_shape = att_shape, conv_shape
        self.reset()

    def reset(self) -> None:
        self.att = np.zeros(self.att_shape, np.float32)
        self.conv = np.zeros(self.conv_shape, np.float32)

    def step(self, window: np.ndarray, offset: int, total: int) -> torch.Tensor:
        if window.shape[0] != SUBSAMPLING * self.chunk + FRONT_CONTEXT:
            raise ValueError(f"a window of {window.shape[0]} frames for a chunk of {self.chunk} encoder frames "
                             f"(it takes {SUBSAMPLING * self.chunk + FRONT_CONTEXT})")
        out, valid, self.att, self.conv = self.session.run(None, {  # the graph's outputs, in order
            "window": np.ascontiguousarray(window, np.float32)[None],
            "offset": np.array(offset, np.int64), "total": np.array(total, np.int64),
            "att_cache": self.att, "conv_cache": self.conv})
        return torch.from_numpy(out[valid])


class OnnxStreamingCTCModel(OnnxCTCModel):
    """A streaming export (`asr-cli export --streaming`): `chunk_runner(chunk)` for live
    streams (asr/inference/streaming.py), `log_probs` for whole files (the chunk graph run over each
    utterance with the exported chunk, so its results are the chunk-masked model's)."""

    streaming = True

    def __init__(self, path: Path, session, meta: dict):
        super().__init__(path, session, meta)
        shapes = {i.name: i.shape for i in session.get_inputs()}
        # the graph's own cache shapes; the one named (dynamic) axis is the cache's length
        self._att = [d if isinstance(d, int) else None for d in shapes["att_cache"]]
        self._conv = tuple(shapes["conv_cache"])
        self._vocab = int(meta["model"]["vocab_size"])  # log_probs [frames, vocab]

    @property
    def chunk(self) -> int:
        """The chunk (encoder frames) it was exported and checked at, which whole files use."""
        return int(self.meta["chunk"])

    def left_frames(self, chunk: int) -> int:
        """Encoder frames the attention cache holds at `chunk`: asr.inference.streaming.left_frames's rule
        (the trained left_chunks x chunk, or the fixed left context the export stored)."""
        left_chunks = int(self.meta["left_chunks"])
        return left_chunks * chunk if left_chunks >= 0 else int(self.meta["left"])

    def chunk_runner(self, chunk: int) -> OnnxChunkRunner:
        """A runner for one stream of `chunk` encoder frames per step (any chunk: it is a
        dynamic axis of the graph)."""
        if not (isinstance(chunk, (int, np.integer)) and chunk >= 1):
            raise ValueError(f"a chunk is at least one encoder frame, got {chunk!r}")
        att = tuple(self.left_frames(int(chunk)) if d is None else d for d in self._att)
        return OnnxChunkRunner(self.session, int(chunk), att, self._conv)

    def stream_log_probs(self, feats: np.ndarray) -> np.ndarray:
        """One utterance float32 [T, F] (CMVN applied) through the chunk graph with the
        exported chunk -> log-probs [T' x upsample, V]."""
        runner, c = self.chunk_runner(self.chunk), self.chunk
        t = len(feats)
        frames = encoder_frames(t)
        # the first window's FRONT_CONTEXT frames before the start are zeros (forward_chunk masks them)
        padded = np.concatenate([np.zeros((FRONT_CONTEXT, feats.shape[1]), np.float32), feats,
                                 np.zeros((SUBSAMPLING * c, feats.shape[1]), np.float32)])
        width = SUBSAMPLING * c + FRONT_CONTEXT
        outs = [runner.step(padded[SUBSAMPLING * o: SUBSAMPLING * o + width], o, t) for o in range(0, frames, c)]
        return torch.cat(outs).numpy() if outs else np.zeros((0, self._vocab), np.float32)

    def log_probs(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> float32 log-probabilities [B, T', V] (zeros past each
        length), lengths [B]: each utterance alone, chunk by chunk."""
        x = feats.detach().float().cpu().numpy()
        outs = [self.stream_log_probs(np.ascontiguousarray(x[b, :n])) for b, n in enumerate(lengths.tolist())]
        out_lens = torch.tensor([len(o) for o in outs], dtype=torch.long)
        log_probs = torch.zeros(len(outs), int(out_lens.max()) if outs else 0, self._vocab)
        for b, o in enumerate(outs):
            log_probs[b, : len(o)] = torch.from_numpy(o)
        return log_probs.to(feats.device), out_lens.to(lengths.device)


class OnnxTransducer(OnnxStreamingCTCModel):
    """A transducer export (kind "rnnt"; the module docstring): its encoder, whole or a chunk
    step (then `chunk_runner` for live streams and whole files chunk by chunk), and its
    decoder and joiner graphs, with asr/nets/transducer.py's decoding interface (torch in, out)."""

    kind = "rnnt"

    def __init__(self, path: Path, session, meta: dict, decoder, joiner):
        self.path, self.session, self.meta = Path(path), session, meta
        self.streaming = meta.get("streaming") is True
        self.decoder, self.joiner = decoder, joiner
        if self.streaming:
            super().__init__(path, session, meta)
            self._vocab = int(session.get_outputs()[0].shape[1])  # frames [C, J]: the stream's width
        start = np.asarray(meta["decoder_start"])
        dtype = np.int64 if decoder.get_inputs()[0].type == "tensor(int64)" else np.float32
        self._start = torch.from_numpy(start.astype(dtype))

    def frames(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B, T, F], lengths [B] -> e [B, T', J], lengths [B] (streaming: each utterance
        chunk by chunk at the exported chunk)."""
        if self.streaming:
            return OnnxStreamingCTCModel.log_probs(self, feats, lengths)
        return OnnxCTCModel.log_probs(self, feats, lengths)

    def decoder_start(self, n: int) -> torch.Tensor:
        return self._start[None].expand(n, *self._start.shape).clone()

    def decoder_step(self, state: torch.Tensor, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        next_state, pred = self.decoder.run(list(DECODER_OUTPUTS), {"state": state.cpu().numpy(),
                                                                    "units": units.long().cpu().numpy()})
        return torch.from_numpy(next_state), torch.from_numpy(pred)

    def joint(self, e: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        (log_probs,) = self.joiner.run(list(JOINER_OUTPUTS), {"frames": np.ascontiguousarray(e.float().cpu().numpy()),
                                                             "pred": np.ascontiguousarray(p.float().cpu().numpy())})
        return torch.from_numpy(log_probs)


def session(path: Path | bytes, threads: int | None = None):
    """An onnxruntime CPU session of `path` (or a serialised model), with `threads` intra-op threads (default: torch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not the user's business
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=["CPUExecutionProvider"])


# What an export's own metadata may say (a crafted `left` of 3e7 made a 7 GiB cache, a
# `time_reduction` of 1000 put word ends at 770 s in a 3 s clip): the ranges export writes.
_STREAM_RANGES = {"chunk": (1, 1500), "left": (0, 15000), "left_chunks": (-1, 1000)}
_TIME_REDUCTIONS, _UPSAMPLES = (4, 8), (1, 2)


def check_metadata(meta: dict, streaming: bool, path) -> None:
    """CheckpointError, one line naming the file and the field, unless an export's metadata is
    usable: the card a checkpoint's is checked with (asr/store/validate.py's `check_card`:
    features, CMVN, language, units against the model's output), then the export's own keys."""
    try:
        check_card(meta)
        for key, allowed in (("time_reduction", _TIME_REDUCTIONS), ("upsample", _UPSAMPLES)):
            if key in meta and not (type(meta[key]) is int and meta[key] in allowed):
                raise CheckpointError(f"field {key!r} is {str(meta[key])[:40]!r}: expected one of {allowed}")
        if streaming:
            for key, (lo, hi) in _STREAM_RANGES.items():
                if not (type(meta[key]) is int and lo <= meta[key] <= hi):
                    raise CheckpointError(f"field {key!r} is {str(meta[key])[:40]!r}: expected {lo} to {hi}")
            ms = meta["chunk_ms"]
            if not (isinstance(ms, (int, float)) and not isinstance(ms, bool) and 0 < ms <= 60000):
                raise CheckpointError(f"field 'chunk_ms' is {str(ms)[:40]!r}: expected 0 to 60000")
    except CheckpointError as e:
        raise CheckpointError(f"{path}: its `asr-cli export` metadata is not usable: {e}") from None


def load_onnx(path: Path, threads: int | None = None) -> tuple[OnnxCTCModel, object, dict]:
    """A model written by `asr-cli export` -> (OnnxCTCModel, or OnnxStreamingCTCModel for a
    streaming export, OnnxTransducer for a transducer's (its decoder and joiner read from beside
    it); tokenizer; metadata dict with the checkpoint's decoding keys: features,
    cmvn, lang, normalizer, model ...). Raises CheckpointError, naming the file, for a missing,
    unreadable or foreign file."""
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
    except (ValueError, RecursionError):  # not JSON, or nested deeper than any export writes
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an ONNX model, but not one made by `asr-cli export` "
                              f"(no '{METADATA_KEY}' metadata of format {FORMAT})")
    streaming = meta.get("streaming") is True
    rnnt = isinstance(meta.get("model"), dict) and meta["model"].get("kind") == "rnnt"
    needed = DECODING_KEYS + (STREAM_KEYS if streaming else ()) + (RNNT_KEYS if rnnt else ())
    missing = [k for k in needed if k not in meta]
    names = (tuple(i.name for i in sess.get_inputs()), tuple(o.name for o in sess.get_outputs()))
    outputs = (RNNT_STREAM_OUTPUTS if streaming else RNNT_OUTPUTS) if rnnt else \
        (STREAM_OUTPUTS if streaming else OUTPUTS)
    if missing or names != ((STREAM_INPUTS if streaming else INPUTS), outputs):
        raise CheckpointError(f"{path}: damaged `asr-cli export` model "
                              f"({'lacks ' + ', '.join(missing) if missing else 'unexpected inputs / outputs'})")
    check_metadata(meta, streaming, path)
    try:
        tokenizer = tokenizer_from_state(meta["tokenizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable tokenizer state in its metadata ({e})") from None
    if rnnt:
        graphs = [_beside(path, meta[key], names, threads) for key, names in
                  (("decoder_file", (DECODER_INPUTS, DECODER_OUTPUTS)), ("joiner_file", (JOINER_INPUTS, JOINER_OUTPUTS)))]
        return OnnxTransducer(path, sess, meta, *graphs), tokenizer, meta
    vocab = sess.get_outputs()[0].shape[-1]  # the graph's own unit axis (fixed at export)
    if isinstance(vocab, int) and vocab != len(tokenizer):
        raise CheckpointError(f"{path}: its metadata's units ({len(tokenizer)}) are not the graph's output "
                              f"({vocab}): damaged `asr-cli export` model")
    return (OnnxStreamingCTCModel if streaming else OnnxCTCModel)(path, sess, meta), tokenizer, meta


def _beside(path: Path, name, names: tuple, threads: int | None):
    """The session of a transducer's decoder or joiner graph, `name` in the folder of `path`."""
    other = path.parent / str(name)
    if Path(str(name)).name != str(name) or not other.is_file():
        raise CheckpointError(f"{path}: its {name} is missing (a transducer export is three files: keep them "
                              "together)")
    try:
        sess = session(other, threads)
    except Exception as e:
        raise CheckpointError(f"{other} is not a readable ONNX model ({type(e).__name__})") from None
    if (tuple(i.name for i in sess.get_inputs()), tuple(o.name for o in sess.get_outputs())) != names:
        raise CheckpointError(f"{other}: unexpected inputs / outputs for a transducer's graph")
    return sess
