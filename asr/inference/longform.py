"""Long recordings in bounded memory: block features, windowed decoding, stitched words.

    file --pipeline.audio.read_blocks (BLOCK_S at its own rate)--> float32 [n, C]
         --mean over channels--> [n] --soxr.ResampleStream (the whole-file path's soxr
           recipe, streamed: the same samples as soxr.resample of the whole file)--> 16 kHz
         --pipeline.audio.log_mel on each new stretch plus the samples its first frames'
           windows reach back to--> float16 [t, F], the very frames of the whole-file path
           (`FeatureStream`)
         --`windows`: WINDOW_S of frames at a time; each window is cut at the lowest-energy
           point of the SEARCH_S before its last CONTEXT_S, and the next starts CONTEXT_S
           before that cut--> (start, frames, own_from, own_to)
         --decode + CTC alignment of each window (asr/inference/transcribe.py)--> words, their times
           shifted by the window's start
         --`keep`: a window keeps the words whose centre falls in the part it owns
           [own_from, own_to) (the cuts partition the recording)--> text and words

Memory holds one audio block, one window of frames and the words: it does not grow with
the length. A file no longer than one window is decoded whole, exactly as before.

Feature frames: frame i is centred on sample i x hop (centred STFT, n_fft wide), so it
needs samples [i x hop - n_fft/2, i x hop + n_fft/2). A stretch is featurised from
k = ceil(n_fft/2 / hop) frames before its first new frame, and only frames whose window
ends inside the samples read so far are given out: the frames equal the whole file's; the
last stretch ends at the end of the file and pads (reflect) exactly as the whole file does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import soxr

from asr.decoding.timestamps import Word
from pipeline.audio import SILENCE_PEAK, AudioError, FeatureConfig, log_mel, read_blocks

WINDOW_S = 30.0  # seconds of audio decoded at a time (files up to this long are decoded whole)
CONTEXT_S = 2.0  # audio kept beyond each cut, so the words near it are heard in context
SEARCH_S = 3.0  # the cut is the quietest point of this stretch before a window's right context
BLOCK_S = 10.0  # seconds of the file read at a time
SMOOTH_FRAMES = 15  # energy smoothed over this many feature frames before looking for its minimum


class FeatureStream:
    """A file's log-Mel frames in order, read block by block: iterate for float16 [t, F] arrays.

    Opening raises AudioError (missing_file, empty_file, decode_error) as the whole-file path
    does. After iterating: `duration` (s at 16 kHz), `peak`, and `warning` (None, or why the
    end of the file could not be read: what was read is kept).
    """

    def __init__(self, path, cfg: FeatureConfig = FeatureConfig(), block_s: float = BLOCK_S):
        self.path, self.cfg = path, cfg
        self.rate, self.channels, self.announced, self._blocks = read_blocks(path, block_s)
        self.samples = 0  # at cfg.sample_rate
        self.read = 0  # at the file's rate
        self.peak = 0.0
        self.warning: str | None = None

    @property
    def duration(self) -> float:
        return self.samples / self.cfg.sample_rate

    def _next_block(self) -> np.ndarray | None:
        try:
            block = next(self._blocks, None)
        except AudioError as e:
            if e.reason != "unreadable_after":
                raise
            self.warning = (f"audio unreadable after {float(e.detail):.2f}s of {self.announced / self.rate:.2f}s: "
                            f"transcribed up to there")
            return None
        if block is None:
            missing = self.announced - self.read
            if self.announced > 0 and missing > 0.02 * self.announced + 0.1 * self.rate:
                self.warning = (f"truncated: decoded {self.read / self.rate:.2f}s of "
                                f"{self.announced / self.rate:.2f}s announced")
            return None
        if not np.isfinite(block).all():
            raise AudioError("decode_error", "non-finite samples")
        self.read += len(block)
        return block

    def __iter__(self) -> Iterator[np.ndarray]:
        stepper = FeatureStepper(self.rate, self.cfg)
        while True:
            block = self._next_block()
            last = block is None
            if last:
                mono = np.zeros(0, np.float32)
            else:
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            feats = stepper.push(mono, last=last)
            self.peak, self.samples = stepper.peak, stepper.samples
            if len(feats):
                yield feats
            if last:
                return


class FeatureStepper:
    """Mono samples at `rate` in, pushed in blocks of any size -> the log-Mel frames they complete
    (float16 [t, F]), the very frames of the whole-file path (the module docstring): what a
    `FeatureStream` reads from a file and a live stream (asr/inference/streaming.py) is given.

    push(mono float32 [n], last) -> frames; `last` flushes the end (the reflect-padded last
    frames). `samples`: at cfg.sample_rate so far; `peak`: the largest |sample| so far."""

    def __init__(self, rate: int, cfg: FeatureConfig = FeatureConfig()):
        self.cfg = cfg
        self.resampler = None
        if rate != cfg.sample_rate:
            self.resampler = soxr.ResampleStream(rate, cfg.sample_rate, 1, dtype="float32",
                                                 quality=cfg.resample_quality)
        self.buf, self.buf_start, self.next = np.zeros(0, np.float32), 0, 0  # samples from buf_start; next frame
        self.samples, self.peak = 0, 0.0

    def push(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        cfg = self.cfg
        hop, half = cfg.hop_length, cfg.n_fft // 2
        back = -(-half // hop)  # frames whose windows reach before a frame's centre
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self.resampler is not None:
            mono = np.asarray(self.resampler.resample_chunk(mono, last=last), dtype=np.float32)
        if mono.size:
            self.peak = max(self.peak, float(np.abs(mono).max()))
        self.buf = np.concatenate([self.buf, mono])
        self.samples += len(mono)
        end = self.buf_start + len(self.buf)
        stop = cfg.num_frames(end) if last else max(self.next, (end - half) // hop + 1)
        feats = np.zeros((0, cfg.n_mels), np.float16)
        if stop > self.next and len(self.buf) > half:
            s = max(0, (self.next - back) * hop)
            frames = log_mel(self.buf[s - self.buf_start:], cfg)  # frame j centred on sample s + j x hop
            j0 = self.next - s // hop
            feats = frames[j0: j0 + stop - self.next]
            self.next = stop
        keep_from = max(0, (self.next - back) * hop)
        self.buf, self.buf_start = self.buf[keep_from - self.buf_start:], keep_from
        return feats


@dataclass
class Window:
    start: int  # first frame (of the whole recording)
    feats: np.ndarray  # float16 [T, F]
    own_from: int  # the frames [own_from, own_to) whose words this window keeps
    own_to: int | None  # None: to the end


def windows(frames: Iterator[np.ndarray], window: int, context: int, search: int,
            align: int = 1) -> Iterator[Window]:
    """Windows of at most `window` frames over the stream `frames`; the cut between two is the
    quietest point (smoothed mean log-Mel) of the `search` frames before a window's last
    `context` frames, and the next window starts `context` frames before the cut. Window starts
    and cuts are multiples of `align` (the model's time reduction)."""
    if window < 2 * context + search + align:
        raise ValueError(f"a window of {window} frames is too short for {context} frames of context "
                         f"and {search} of search")
    buf, buf_start, start, own_from = None, 0, 0, 0
    for chunk in frames:
        buf = chunk if buf is None else np.concatenate([buf, chunk])
        while buf_start + len(buf) >= start + window:
            feats = buf[start - buf_start: start + window - buf_start]
            lo, hi = window - context - search, window - context
            energy = feats[lo:hi].astype(np.float32).mean(axis=1)
            width = min(SMOOTH_FRAMES, len(energy))
            energy = np.convolve(energy, np.ones(width) / width, mode="same")
            cut = start + lo + int(np.argmin(energy))
            cut = max(own_from + align, cut - cut % align)
            yield Window(start, feats, own_from, cut)
            own_from = cut
            start = max(0, cut - context)
            start -= start % align
            buf, buf_start = buf[start - buf_start:], start
    if buf is not None and buf_start + len(buf) > start:
        yield Window(start, buf[start - buf_start:], own_from, None)


def keep(words: list[Word], offset: float, own_from: float, own_to: float | None, length: float) -> list[Word]:
    """`words` (times in the window) shifted by `offset` seconds, those whose centre is in
    [own_from, own_to) seconds. A word without times goes with the nearest placed word
    before it (after it, for the first ones); in a window of `length` seconds without any
    placed word (its alignment failed), word i of n is taken to be centred at (i + 1/2) / n
    of the window."""
    to = float("inf") if own_to is None else own_to
    shifted = [w if w.start is None else Word(w.word, round(w.start + offset, 3), round(w.end + offset, 3), w.score)
               for w in words]
    mine = [None if w.start is None else own_from <= (w.start + w.end) / 2 < to for w in shifted]
    placed = [m for m in mine if m is not None]
    if not placed:
        n = len(words)
        return [w for i, w in enumerate(shifted) if own_from <= offset + (i + 0.5) / n * length < to]
    prev = next(m for m in mine if m is not None)
    for i, m in enumerate(mine):
        if m is None:
            mine[i] = prev
        else:
            prev = m
    return [w for w, m in zip(shifted, mine) if m]


@dataclass
class LongResult:
    words: list[Word]
    duration: float
    seconds: float  # decoding time
    warning: str | None


def transcribe_stream(stream: FeatureStream, decode: Callable[[np.ndarray], tuple[list[Word], float]],
                      frame_s: float, window_s: float = WINDOW_S, context_s: float = CONTEXT_S,
                      search_s: float = SEARCH_S, align: int = 1) -> LongResult:
    """Decode `stream` window by window and stitch the words. decode(feats float16 [T, F]) ->
    (words with times in seconds from the window's start, decoding seconds); frame_s: seconds
    per feature frame. A recording without audible signal gives no words."""
    if 2 * context_s + search_s > 0.8 * window_s:  # a short window: context and search in proportion
        scale = 0.8 * window_s / (2 * context_s + search_s)
        context_s, search_s = context_s * scale, search_s * scale
    frames = lambda s: int(round(s / frame_s))  # noqa: E731
    words: list[Word] = []
    seconds = 0.0
    for w in windows(iter(stream), frames(window_s), frames(context_s), frames(search_s), align):
        found, took = decode(w.feats)
        seconds += took
        words += keep(found, w.start * frame_s, w.own_from * frame_s, None if w.own_to is None else w.own_to * frame_s,
                      len(w.feats) * frame_s)
    if stream.peak < SILENCE_PEAK:
        words = []
    return LongResult(words, stream.duration, seconds, stream.warning)
