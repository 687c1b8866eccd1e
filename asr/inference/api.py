"""The Python API: a trained checkpoint as a speech recogniser.

    from asr import Recognizer
    rec = Recognizer.load("runs/fr-ctc/best.pt", lm="lm/fr-3gram.arpa", device="cpu")
    r = rec.transcribe("clip.mp3")                  # or samples: rec.transcribe(wave, sample_rate=44100)
    s = rec.stream()                                 # live (a --streaming model): asr/inference/streaming.py
    s.accept(block, 48000).text; s.finish()          # the text so far; the final Transcript
    r.text, r.words                                  # words: [Word(word, start_s, end_s, score), ...]
    rec.align("clip.mp3", "le chat dort")           # where a known text's words are
    for r in rec.transcribe_many(paths, batch_size=16): ...   # batched, in order

`Recognizer` is asr/inference/transcribe.py's `Transcriber` (the checkpoint loaded once, the shards'
feature function, the checkpoint's CMVN, asr/decoding/decoder.py's `Decoder`) behind three calls;
`asr-cli transcribe` is a thin user of it.

Word times come from the CTC alignment of the decoded text (asr/decoding/timestamps.py): for a CTC
model on its own log-probs (greedy, beam or beam + LM alike); for a LAS model on its CTC
head when it was trained with one (ctc_weight > 0), else its words have no times
(start, end and score None). A `Word` unpacks as a tuple: `word, start, end, score = w`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from asr.decoding.options import DecodeOptions
from asr.decoding.timestamps import Word
from asr.inference.longform import WINDOW_S
from asr.inference.streaming import CHUNK_MS, ENDPOINT_MS, StreamingSession, chunk_frames
from asr.inference.transcribe import FileFailure, Transcriber, Transcript

__all__ = ["FileFailure", "Recognizer", "Transcript", "TranscriptionError", "Word"]

LOADS = object()  # `stream()`'s endpoint_ms when not given: load's (None there means "never")
DECODE_FIELDS = tuple(f.name for f in dataclasses.fields(DecodeOptions))


class TranscriptionError(ValueError):
    """`Recognizer.transcribe` of a source that cannot be transcribed: "<path>: <reason>"."""

    def __init__(self, failure: FileFailure):
        super().__init__(str(failure))
        self.failure = failure


class Recognizer:
    """A checkpoint ready to transcribe; make one with `Recognizer.load`."""

    def __init__(self, transcriber: Transcriber, chunk_ms: float = CHUNK_MS, endpoint_ms: float | None = ENDPOINT_MS):
        self.transcriber = transcriber
        self.chunk_ms, self.endpoint_ms = chunk_ms, endpoint_ms

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, lm: str | os.PathLike | None = None, device: str = "auto",
             timestamps: bool = True, window_s: float | None = WINDOW_S, chunk_ms: float | None = None,
             endpoint_ms: float | None = ENDPOINT_MS, **options) -> "Recognizer":
        """Load `checkpoint` (made by `asr-cli train`) on `device` ("auto", "cpu", "cuda", ...).

        lm: a word n-gram LM (ARPA) for beam search; `options`: any other DecodeOptions field
        (beam, lm_weight, word_score, ctc_weight, ...), with asr/decoding/options.py's defaults.
        timestamps False skips the word alignment (words then have no times).
        window_s: a file longer than this is read and decoded in windows of this many seconds,
        in memory that does not grow with its length (asr/inference/longform.py); None: always whole.
        chunk_ms, endpoint_ms: what `stream()` decodes with (a model trained with --streaming):
        the chunk the encoder runs on (latency; None: a streaming ONNX export's own chunk, else
        asr/inference/streaming.py's CHUNK_MS), the blanks that close a segment (None: never).
        Raises asr.store.checkpoint.CheckpointError for a file that is not a checkpoint,
        FileNotFoundError for a missing LM, ValueError / TypeError for a bad option.
        """
        transcriber = Transcriber(Path(checkpoint), _decode_options(lm, options), device, timestamps=timestamps,
                                  window_s=window_s)
        if chunk_ms is None:
            chunk_ms = (transcriber.loaded.meta or {}).get("chunk_ms") or CHUNK_MS
        rec = cls(transcriber, chunk_ms, endpoint_ms)
        if rec.streaming:
            chunk_frames(chunk_ms, transcriber.features.hop_ms)  # a bad chunk_ms is said now, not at stream()
        return rec

    def with_options(self, **options) -> "Recognizer":
        """A Recognizer sharing this one's model (no second copy in memory) that decodes with
        other DecodeOptions fields, e.g. `rec.with_options(beam=50, lm="lm.arpa")`. Fields not
        given take asr/decoding/options.py's defaults, as in `load`."""
        return Recognizer(self.transcriber.with_options(_decode_options(options.pop("lm", None), options)),
                          self.chunk_ms, self.endpoint_ms)

    @property
    def streaming(self) -> bool:
        """Whether `stream()` works: a Conformer CTC or transducer model trained with --streaming."""
        return self.transcriber.loaded.streaming

    def stream(self, chunk_ms: float | None = None, endpoint_ms=LOADS) -> StreamingSession:
        """A live stream (asr/inference/streaming.py): `.accept(samples, sample_rate)` per block (any size,
        any rate) returns the text so far (a Partial: text, partial, closed segments);
        `.finish()` the whole Transcript with word times. chunk_ms, endpoint_ms: load's unless
        given (endpoint_ms None: never close a segment). ValueError for a model that cannot
        stream, or a bad chunk."""
        t = self.transcriber
        return StreamingSession(t.loaded, t.decoder, self.chunk_ms if chunk_ms is None else chunk_ms,
                                self.endpoint_ms if endpoint_ms is LOADS else endpoint_ms, t.timestamps)

    @property
    def sample_rate(self) -> int:
        """The rate the model's features are made at (any input rate is resampled to it)."""
        return self.transcriber.features.sample_rate

    def transcribe(self, audio: str | os.PathLike | np.ndarray, sample_rate: int | None = None) -> Transcript:
        """One file (MP3, WAV, FLAC ..., any rate, mono or stereo), or samples: a float numpy
        array [n] or [n, channels] at `sample_rate` Hz.

        Returns a Transcript: text, words, duration, time. Raises TranscriptionError (a
        ValueError) with a one-line reason for a source that cannot be read.
        """
        result = self.transcriber(audio, sample_rate)
        if isinstance(result, FileFailure):
            raise TranscriptionError(result)
        return result

    def align(self, audio: str | os.PathLike | np.ndarray, text: str, sample_rate: int | None = None) -> list[Word]:
        """Where the words of a known `text` are in `audio` (forced alignment on the CTC
        log-probs): one Word per word of the normalised text. Raises TranscriptionError as
        `transcribe` does."""
        result = self.transcriber.align(audio, text, sample_rate)
        if isinstance(result, FileFailure):
            raise TranscriptionError(result)
        return result

    def transcribe_many(self, sources: Iterable[str | os.PathLike | np.ndarray], batch_size: int = 16,
                        sample_rate: int | None = None) -> Iterator[Transcript | FileFailure]:
        """Transcripts of `sources` (paths, or arrays all at `sample_rate`), in order,
        `batch_size` files padded into one batch through the model at a time (only that many
        are held in memory). A source that cannot be read yields a FileFailure (ok False,
        text "", error: the reason) in its place and the others go on."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        pending = []
        for source in sources:
            pending.append(self.transcriber.prepare(source, sample_rate))
            if len(pending) == batch_size:
                yield from self.transcriber.batch(pending)
                pending = []
        if pending:
            yield from self.transcriber.batch(pending)


def _decode_options(lm, options: dict) -> DecodeOptions:
    """`load`'s and `with_options`' keywords -> DecodeOptions; TypeError naming an unknown one."""
    unknown = sorted(set(options) - set(DECODE_FIELDS))
    if unknown:
        raise TypeError(f"unknown decoding option(s) {', '.join(unknown)} (known: {', '.join(DECODE_FIELDS)})")
    return DecodeOptions(lm=None if lm is None else Path(lm), **options)
