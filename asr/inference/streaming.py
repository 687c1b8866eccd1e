"""Live recognition: audio given in blocks as it arrives -> partial text, segments, a transcript.

    rec = Recognizer.load("runs/demo-ctc-conformer-small-streaming/best.pt", chunk_ms=640)
    s = rec.stream()
    for block in microphone():                   # any block size, any sample rate
        p = s.accept(block, 48000)               # p.text: everything so far; p.closed: new segments
    t = s.finish()                               # a Transcript: text, words with times, duration

A model trained with `--streaming` (asr/nets/encoders/conformer.py, "Streaming"), CTC or
transducer, decodes so:

    samples --downmix, asr/inference/longform.py's FeatureStepper (soxr streamed, the whole-file log-Mel
            frames)--> float16 frames --checkpoint CMVN--> float32
            --every 4 C frames (a chunk of C encoder frames: chunk_ms / 40 ms), the encoder's
              `forward_chunk` on them and the 3 before, with its caches (`TorchChunkRunner`;
              an ONNX export's runner is the same)--> the chunk's output frames (the model's
              `chunk_output`: CTC log-probs, or a transducer's encoder frames)
            --the Decoder's live strategy (CTC greedy or flashlight's beam search with the word
              LM; the transducer's greedy or beam search), frame piece by piece: it says which
              frames held a unit--> the open segment's text
            --an endpoint: ENDPOINT_MS of frames without a unit after a word--> the segment
              closes: its text, and its words timed by the strategy (CTC: aligned on the
              segment's log-probs, asr/decoding/timestamps.py; a transducer: where it emitted
              their units), times from the start

The encoder never runs a frame twice; the attention cache holds the last `left` encoder frames
(the model's trained left context, or LEFT_CONTEXT_S), so memory and time per chunk stay flat
over a session of any length. The encoder's caches and positions go on across segments (a
segment is the decoder's unit, not the encoder's; a transducer's prediction network goes on too),
so the greedy text of a stream is that of the chunk-masked whole recording, and no word is cut
at a segment's end: a segment closes only after a run of blanks. A closed segment's text is
final: later audio never changes it.

Latency: a word can appear once the chunk holding its last frame is complete: the chunk's
length, plus the front's 3 frames and the STFT's half window (42.5 ms), plus the time to
compute the chunk (bench/bench_streaming.py measures it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.decoding.decoder import Decoder
from asr.decoding.options import LiveOptions
from asr.decoding.timestamps import Word, frame_shift
from asr.inference.loading import LoadedModel, can_stream  # noqa: F401  (re-exported)
from asr.inference.longform import FeatureStepper
from asr.inference.transcribe import Transcript
from asr.nets.encoders.conformer import FRONT_CONTEXT
from asr.tokens.units import BLANK, EOS
from pipeline.audio import MAX_ARRAY_CHANNELS, MIN_SAMPLE_RATE, SILENCE_PEAK, AudioError, as_samples, read_blocks

CHUNK_MS = 640  # the default decoding chunk: the latency bar at 0.9 s leaves room for it
ENDPOINT_MS = LiveOptions.endpoint_ms  # blanks after a word that close a segment (800 ms)
MAX_SEGMENT_S = 30.0  # an open segment is closed at its first blank past this (at 1.5x, blank or not)
MAX_AMPLITUDE = 1e4  # a float block beyond this is no audio (its log-Mel would overflow)
MAX_MS = 600_000.0  # chunk_ms, endpoint_ms: ten minutes at most
# A model trained with every chunk before its own (left_chunks -1) gets this much left context in a
# stream: training utterances are at most --max-frames (20 s), so no model saw more.
LEFT_CONTEXT_S = 20.0
SUBSAMPLING = 4  # feature frames per encoder frame (streaming models take the x4 front)
NOT_LAST = 2 ** 62  # `total` of a chunk that is not a stream's last


@dataclass
class Segment:
    """A closed stretch of speech: its text, words (times in seconds from the stream's start)
    and where it starts and ends (its first word's start, its last word's end)."""

    text: str
    start: float | None
    end: float | None
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"text": self.text, "start": self.start, "end": self.end, "words": [asdict(w) for w in self.words]}


@dataclass
class Partial:
    """What `accept` returns: `text`, the whole stream's so far (closed segments and the open
    one); `partial`, the open segment's; `closed`, the segments this call closed."""

    text: str
    partial: str
    closed: list[Segment]

    def __str__(self) -> str:
        return self.text


def _milliseconds(value, name: str, allow_none: bool = False) -> float | None:
    """A finite number of ms (ValueError, one line, for inf, NaN, a string, a bool)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or not 0 <= value <= MAX_MS:
        raise ValueError(f"{name} must be a number of milliseconds from 0 to {MAX_MS}, got {value!r}")
    return float(value)


def chunk_frames(chunk_ms: float, hop_ms: float = 10.0) -> int:
    """A decoding chunk in encoder frames (SUBSAMPLING x hop each: 40 ms), at least 1."""
    frame_ms = SUBSAMPLING * hop_ms
    chunk_ms = _milliseconds(chunk_ms, "chunk_ms")
    if not chunk_ms or chunk_ms < frame_ms:
        raise ValueError(f"chunk_ms must be at least {frame_ms:g} (one encoder frame), got {chunk_ms}")
    return max(1, round(chunk_ms / frame_ms))


def left_frames(model, chunk: int, hop_ms: float = 10.0) -> int:
    """Encoder frames a stream's attention cache holds: the trained left context (left_chunks x
    chunk) or LEFT_CONTEXT_S."""
    left_chunks = model.encoder.cfg.left_chunks
    if left_chunks >= 0:
        return left_chunks * chunk
    return round(LEFT_CONTEXT_S * 1000 / (SUBSAMPLING * hop_ms))


def mask_chunks(model, chunk_ms: float | None, hop_ms: float = 10.0) -> int | None:
    """Decode whole sequences as a stream of `chunk_ms` chunks would (the chunk attention mask:
    the same outputs, tests/test_streaming.py), or full context (None). Returns the chunk in
    encoder frames; ValueError for a model that cannot stream."""
    if chunk_ms is None:
        chunk = None
    elif not can_stream(model) or hasattr(model, "chunk_runner"):
        raise ValueError("--chunk-ms needs a model trained with --streaming (a PyTorch checkpoint)")
    else:
        chunk = chunk_frames(chunk_ms, hop_ms)
    if can_stream(model) and not hasattr(model, "chunk_runner"):
        model.encoder.decode_chunk = chunk
    return chunk


class TorchChunkRunner:
    """A torch model's streaming encoder, one chunk at a time, holding its caches.

    step(window float32 [4 C + 3, F] (CMVN applied), offset, total) -> the model's
    `chunk_output` of the chunk's n valid encoder frames (C, or fewer in the last chunk): a CTC
    model's log-probs [n x upsample, V], a transducer's encoder frames [n, J]."""

    def __init__(self, model, chunk: int, left: int):
        self.model, self.chunk, self.left = model, chunk, left
        self.device = next(model.parameters()).device
        self.reset()

    def reset(self) -> None:
        self.att, self.conv = self.model.encoder.stream_caches(self.left, device=self.device)

    @torch.no_grad()
    def step(self, window: np.ndarray, offset: int, total: int) -> torch.Tensor:
        x = torch.from_numpy(window)[None].to(self.device)
        enc, valid, self.att, self.conv = self.model.encoder.forward_chunk(
            x, torch.tensor(offset), torch.tensor(total), self.att, self.conv)
        return self.model.chunk_output(enc[:, valid]).cpu()


class StreamingSession:
    """One live stream (made by `Recognizer.stream()`): `accept` blocks of samples, then `finish`.

    loaded: the model (asr/inference/loading.py); decoder: its Decoder (asr/decoding/decoder.py),
    whose live strategy decodes the segments (greedy, or beam + LM: one per session, handed on
    to the Decoder's next session when this one finishes). Not thread-safe itself (one call at
    a time); sessions share their model's weights, so many may run at once in different threads."""

    def __init__(self, loaded: LoadedModel, decoder: Decoder, chunk_ms: float = CHUNK_MS,
                 endpoint_ms: float | None = ENDPOINT_MS, timestamps: bool = True):
        model = loaded.model
        if not can_stream(model):
            raise ValueError("this model cannot stream: train a Conformer CTC or transducer model with "
                             "--streaming (e.g. --preset conformer-small-streaming)")
        self.loaded, self.decoder, self.timestamps = loaded, decoder, timestamps
        self.features, self.tokenizer = loaded.features, loaded.tokenizer
        hop_ms = self.features.hop_ms
        self.shift = frame_shift(model, hop_ms / 1000)  # seconds per output frame
        self.chunk = chunk_frames(chunk_ms, hop_ms)
        self.chunk_ms = self.chunk * SUBSAMPLING * hop_ms
        if hasattr(model, "chunk_runner"):  # an ONNX export: its runner, its cache
            self.runner = model.chunk_runner(self.chunk)
        else:
            self.runner = TorchChunkRunner(model, self.chunk, left_frames(model, self.chunk, hop_ms))
        if isinstance(endpoint_ms, (int, float)) and not isinstance(endpoint_ms, bool) and endpoint_ms < 0:
            raise ValueError(f"endpoint_ms must be positive (None or 0: never end a segment), got {endpoint_ms}")
        endpoint_ms = _milliseconds(endpoint_ms, "endpoint_ms", allow_none=True)
        # with no endpoint (music, continuous speech, endpoint_ms 0) a segment still closes after
        # MAX_SEGMENT_S: a beam's partial cost and memory grow with its open segment (1.2 -> 36.5 ms
        # a partial from 1k to 16k frames, ~6 MB an audio minute)
        self.max_segment = max(1, round(MAX_SEGMENT_S / self.shift))
        self.endpoint = None if not endpoint_ms else max(1, round(endpoint_ms / 1000 / self.shift))
        self.live = decoder.stream()
        self.rate: int | None = None
        self.channels: int | None = None  # known from the first block long enough to tell
        self.stepper: FeatureStepper | None = None
        self.frames = np.zeros((FRONT_CONTEXT, self.features.n_mels), np.float32)  # from 4 offset - 3
        self.offset = 0  # encoder frames given out
        self.total = 0  # feature frames so far
        self.segments: list[Segment] = []
        self.seconds = 0.0  # audio accepted, at its own rate
        self.compute = 0.0  # seconds spent in the model and the search
        self.chunks = 0
        self.finished = False
        self._open_segment(0)

    # --- the decoder's segment ---

    def _open_segment(self, frame: int) -> None:
        self.seg_start = frame  # output frame of the stream where the open segment starts
        self.seg_frames: list[torch.Tensor] = []  # the chunk outputs fed to the segment's strategy
        self.has_units = False  # the segment's strategy has emitted a unit (a word is under way)
        self.blank_run = 0  # frames since the segment's last unit
        self.live.begin()

    def _text(self, final: bool) -> str:
        return self.decoder.text(self.live.end() if final else self.live.partial())

    def _close_segment(self, frame: int) -> Segment | None:
        """Close the open segment (ending at output frame `frame`); None when it holds no words."""
        text = self._text(final=True)
        segment = None
        if text:
            offset = self.seg_start * self.shift
            if self.timestamps:
                frames = torch.cat(self.seg_frames) if self.seg_frames else torch.zeros(0, len(self.tokenizer))
                words = self.live.words(text, frames, self.tokenizer, self.shift)
            else:
                words = [Word(w, None, None, None) for w in text.split()]
            words = [w if w.start is None else Word(w.word, round(w.start + offset, 3), round(w.end + offset, 3),
                                                    w.score) for w in words]
            placed = [w for w in words if w.start is not None]
            segment = Segment(text, placed[0].start if placed else None, placed[-1].end if placed else None, words)
            self.segments.append(segment)
        self._open_segment(frame)
        return segment

    def _decode(self, frames: torch.Tensor, closed: list[Segment]) -> None:
        """One chunk's output frames into the open segment's strategy; an endpoint closes it.

        The strategy says which frames held a unit; frames go to it in pieces no longer than
        the blanks still missing for an endpoint (or the frames left to MAX_SEGMENT_S), so a
        segment closes on the very frame its run of blanks reaches `endpoint`, and the frames
        after it open the next one. Past MAX_SEGMENT_S frames go one at a time: the segment is
        cut on its first blank (no word is split), or anyway half as late again."""
        i = 0
        length = sum(len(p) for p in self.seg_frames)
        while i < len(frames):
            n = len(frames) - i
            if self.endpoint is not None:
                n = min(n, self.endpoint - self.blank_run)
            n = min(n, self.max_segment - length) if length < self.max_segment else 1
            piece = frames[i: i + n]
            self.seg_frames.append(piece)
            blank = False
            for u in self.live.step(piece):
                blank = u in (BLANK, EOS)
                if blank:
                    self.blank_run += 1
                else:
                    self.blank_run, self.has_units = 0, True
            i += n
            length += n
            too_long = length >= self.max_segment and (blank or 2 * length >= 3 * self.max_segment)
            if not too_long and (self.endpoint is None or self.blank_run < self.endpoint):
                continue
            end = self.seg_start + sum(len(p) for p in self.seg_frames)
            if self.has_units:  # words, then a long run of blanks: the segment ends here
                segment = self._close_segment(end)
                if segment is not None:
                    closed.append(segment)
            else:  # silence only: forget it, so a long silence holds nothing
                self._open_segment(end)
            length = 0  # a new segment (closed, or silence forgotten)

    # --- audio in ---

    def _mono(self, samples, sample_rate) -> np.ndarray:
        """A block checked whole before the stream takes anything of it (its rate included): a
        refused block leaves the stream as it was, ready for the next."""
        if self.finished:
            raise ValueError("this stream is finished: start another with rec.stream()")
        if isinstance(sample_rate, bool) or not (isinstance(sample_rate, (int, np.integer))
                                                 and MIN_SAMPLE_RATE <= sample_rate <= 768000):
            raise ValueError(f"expected an integer sample rate from {MIN_SAMPLE_RATE} to 768000 Hz, got "
                             f"{sample_rate!r}")
        if self.rate is not None and sample_rate != self.rate:
            raise ValueError(f"this stream's sample rate is {self.rate} Hz, not {sample_rate}: one rate per stream")
        try:
            raw = np.asarray(samples)
            if raw.ndim == 2 and self.channels is not None and raw.shape[1] == self.channels != raw.shape[0]:
                # a short block [n, channels] (n <= 16 reads either way): the stream's channels decide
                data = as_samples(raw.reshape(-1)).reshape(-1, self.channels)
            else:
                data = as_samples(raw)
        except AudioError as e:
            raise ValueError(e.detail or e.reason) from None
        if not np.isfinite(data).all():
            raise ValueError("non-finite samples")
        if len(data) and float(np.abs(data).max()) > MAX_AMPLITUDE:  # its spectrum would overflow
            raise ValueError(f"samples up to {float(np.abs(data).max()):.3g}: not audio (float PCM is in [-1, 1])")
        if self.channels is None and len(data) > MAX_ARRAY_CHANNELS:
            self.channels = data.shape[1]
        if self.rate is None:
            self.rate = int(sample_rate)
            self.stepper = FeatureStepper(self.rate, self.features)
        self.seconds += len(data) / self.rate
        return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]

    def _run(self, feats: np.ndarray, final: bool, closed: list[Segment]) -> None:
        """New feature frames (float16) in; every chunk they complete through the model."""
        if len(feats):
            x = (feats.astype(np.float32) - self.loaded.mean) / self.loaded.std
            self.frames = np.concatenate([self.frames, x])
            self.total += len(x)
        need = SUBSAMPLING * self.chunk + FRONT_CONTEXT
        while True:
            if final:
                if self.offset >= (((self.total - 1) // 2) // 2 + 1 if self.total else 0):
                    break
                if len(self.frames) < need:
                    pad = np.zeros((need - len(self.frames), self.frames.shape[1]), np.float32)
                    self.frames = np.concatenate([self.frames, pad])
            elif len(self.frames) < need:
                break
            t0 = time.perf_counter()
            out = self.runner.step(np.ascontiguousarray(self.frames[:need]), self.offset,
                                   self.total if final else NOT_LAST)
            self._decode(out, closed)
            self.compute += time.perf_counter() - t0
            self.chunks += 1
            self.offset += self.chunk
            self.frames = self.frames[SUBSAMPLING * self.chunk:]

    def accept(self, samples, sample_rate: int) -> Partial:
        """The next block of samples (float or integer PCM [n] or [n, channels], any n, at
        `sample_rate`, the same for every block) -> the text so far. ValueError for a bad block."""
        mono = self._mono(samples, sample_rate)
        closed: list[Segment] = []
        t0 = time.perf_counter()
        feats = self.stepper.push(mono)
        self.compute += time.perf_counter() - t0
        self._run(feats, False, closed)
        return self._partial(closed)

    def _partial(self, closed: list[Segment]) -> Partial:
        t0 = time.perf_counter()
        partial = self._text(final=False)
        self.compute += time.perf_counter() - t0
        text = " ".join([s.text for s in self.segments] + ([partial] if partial else []))
        return Partial(text, partial, closed)

    def finish(self) -> Transcript:
        """The end of the stream: the last frames through the model, the open segment closed.
        Returns the whole stream's Transcript (text, words with times, duration)."""
        if self.finished:
            raise ValueError("this stream is already finished")
        closed: list[Segment] = []
        if self.stepper is not None:
            feats = self.stepper.push(np.zeros(0, np.float32), last=True)
            self._run(feats, True, closed)
        frame = self.seg_start + sum(len(p) for p in self.seg_frames)
        self._close_segment(frame)
        self.decoder.release(self.live)  # the next session of this Decoder takes it (a beam's LM loaded once)
        self.finished = True
        peak = self.stepper.peak if self.stepper is not None else 0.0
        segments = self.segments if peak >= SILENCE_PEAK else []
        words = [w for s in segments for w in s.words]
        return Transcript("stream", "<stream>", " ".join(s.text for s in segments), round(self.seconds, 3),
                          round(self.compute, 4), words)


BLOCK_S = 0.1  # a file streamed as a microphone gives it: 100 ms blocks


def stream_file(session: StreamingSession, path, on_partial=None, block_s: float = BLOCK_S) -> Transcript:
    """A file through a live `session` in `block_s` blocks at its own rate (what `asr-cli
    transcribe --stream` does): on_partial(Partial, seconds so far) after each block; returns the
    Transcript (its id and path the file's). Raises AudioError for a file that cannot be read."""
    rate, _, _, blocks = read_blocks(path, block_s)
    try:
        for block in blocks:
            p = session.accept(block, rate)
            if on_partial is not None:
                on_partial(p, session.seconds)
    except AudioError as e:
        if e.reason != "unreadable_after":
            raise
    t = session.finish()
    return dataclasses.replace(t, id=Path(path).stem, path=str(path))
