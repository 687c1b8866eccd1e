"""Transcription: any audio file (or samples in memory) -> text and word times, with a checkpoint.

    asr-cli transcribe --checkpoint runs/fr-ctc/best.pt a.mp3 b.wav c.flac
    asr-cli transcribe --checkpoint X.pt --lm lm/fr-3gram.arpa --format json *.mp3
    from asr import Recognizer      (asr/inference/api.py: the Python API over `Transcriber`)

Per file (MP3 / WAV / FLAC, any sample rate, mono or stereo):

    file --pipeline.audio.compute_features (the checkpoint's FeatureConfig: the very function
         that made the training shards)--> float16 [T, F]
         (samples in memory: pipeline.audio.waveform_features, the same downmix, resampling
         and log-Mel)
         --checkpoint CMVN--> float32, padded into a batch [B, T, F] --asr.decoding.decoder.Decoder's
         strategy (same modes and options as `asr-cli eval`)--> text, normalised like eval's
         hypotheses
         --asr.decoding.timestamps.align_words on the CTC log-probs (a transducer: the frames
           its units were emitted at)--> words with start / end / score

Every source gives exactly one result, in the order given. A file that cannot be read
(missing, a directory, empty, not audio, truncated) gives a `FileFailure` with a one-line
reason and the others go on; a file without audible signal transcribes as "".
`Transcript.time` is the decoding time (model, search and alignment, not file decoding) in
seconds, a batch's time shared evenly among its files.

Batches: files are padded to the longest of their batch, as `asr-cli eval` batches shards,
and every file gets the text it gets alone: at inference every encoder keeps padding out
of each utterance's frames (the RNNs pack, even those trained on padded batches, asr/nets/encoders/;
tests/test_batch_invariance.py).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch

from asr.decoding.decoder import DecodeOptions, Decoder, normalize_hypothesis
from asr.decoding.strategy import Decoded, timed_words
from asr.decoding.timestamps import Word, align_words, frame_shift, time_reduction
from asr.inference.loading import LoadedModel, open_model
from asr.inference.longform import WINDOW_S, FeatureStream, transcribe_stream
from asr.runtime.distributed import Dist, pick_device
from pipeline.audio import AudioError, as_samples, compute_features, load_audio, waveform_features

# AudioError reasons -> what the user is told
AUDIO_PROBLEMS = {
    "missing_file": "file not found",
    "empty_file": "empty file (0 bytes)",
    "decode_error": "not a readable audio file (MP3, WAV, FLAC, OGG ...)",
    "truncated": "truncated audio file",
    "empty_audio": "the file holds no audio samples",
    "too_short": "too short to transcribe",
    "non_finite_features": "not transcribable: its samples overflow the spectrum",
}
SILENT = "silent_audio"


@dataclass
class Transcript:
    id: str  # the file name without its extension ("array" for samples given in memory)
    path: str
    text: str
    duration: float  # seconds of audio
    time: float  # decoding seconds (a batch's time shared evenly among its files)
    words: list[Word] = field(default_factory=list)  # asr/decoding/timestamps.py: (word, start, end, score)
    warning: str | None = None  # a long file read only in part: why (what was read is transcribed)

    ok = True
    error = None

    def to_dict(self, words: bool = False) -> dict:
        """id, path, text, duration, time (and with `words`, "words": [{word, start, end, score}])."""
        d = {k: v for k, v in asdict(self).items() if k != "words" and (k != "warning" or v is not None)}
        if words:
            d["words"] = [w.to_dict() for w in self.words]
        return d


@dataclass
class FileFailure:
    path: str
    reason: str

    ok = False
    text = ""  # what a failed file reads as
    words = ()

    @property
    def error(self) -> str:
        return self.reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def to_dict(self, words: bool = False) -> dict:
        return {"id": Path(self.path).stem, "path": self.path, "error": self.reason}

    @classmethod
    def of_audio_error(cls, path: str, e: AudioError) -> "FileFailure":
        """The failure of a file that raised `e`: what the user is told (AUDIO_PROBLEMS), and its
        detail unless that is the path itself (the path is said once, before the reason)."""
        reason = AUDIO_PROBLEMS.get(e.reason, e.reason)
        detail = e.detail if e.detail != str(path) else ""
        return cls(str(path), f"{reason} ({detail})" if detail else reason)


ARRAY = "<array>"  # the path of samples given in memory


@dataclass
class Prepared:
    """A source's features, ready for a batch: float16 [T, F] (None: silent) and duration (s)."""

    path: str
    feats: np.ndarray | None
    duration: float

    @property
    def id(self) -> str:
        return "array" if self.path == ARRAY else Path(self.path).stem


@dataclass
class Long:
    """A file longer than one window: read, featurised and decoded window by window
    (asr/inference/longform.py) when its batch runs."""

    path: str
    duration: float  # as its header announces it

    @property
    def id(self) -> str:
        return Path(self.path).stem


class Transcriber:
    """A checkpoint loaded once, then `transcriber(path)` per file, or `transcriber.batch(...)`.

    timestamps: align each text on the CTC log-probs (asr/decoding/timestamps.py) for word times; a
    LAS model uses its CTC head, and without one (trained with ctc_weight 0) its words have
    no times (start / end / score None); a transducer's words are timed by its emissions.

    window_s: a file longer than this (by its header) is decoded in windows of this many
    seconds, in bounded memory (asr/inference/longform.py); None decodes every file whole. A LAS model
    without a CTC head always decodes whole (its words have no times to stitch windows by).
    """

    def __init__(self, checkpoint: Path | LoadedModel, options: DecodeOptions | None = None, device: str = "auto",
                 timestamps: bool = True, window_s: float | None = WINDOW_S):
        if isinstance(checkpoint, LoadedModel):
            self.loaded = checkpoint
        else:
            self.loaded = open_model(checkpoint, pick_device(device, Dist()))
        loaded = self.loaded
        self.device, self.model, self.tokenizer, self.timestamps = loaded.device, loaded.model, loaded.tokenizer, timestamps
        self.features, self.mean, self.std = loaded.features, loaded.mean, loaded.std  # [F] each
        self.decoder = Decoder(loaded.model, loaded.tokenizer, options or DecodeOptions(), loaded.normalizer)
        self.shift = frame_shift(loaded.model, self.features.hop_ms / 1000)  # seconds per output frame
        timed = self.decoder.kind in ("ctc", "rnnt") or getattr(loaded.model, "ctc_head", None) is not None
        self.window_s = window_s if timed else None

    def with_options(self, options: DecodeOptions) -> "Transcriber":
        """This transcriber decoding with `options` instead: the same model, weights and
        features (not copied), its own Decoder (a beam decoder holds per-search state, so two
        threads never share one)."""
        other = copy.copy(self)
        other.decoder = Decoder(self.model, self.tokenizer, options, self.decoder.normalizer)
        return other

    def encoder_stride(self) -> int:
        """Input frames per encoder frame (4 behind the x4 front): windows start on a multiple of
        it, so a window's encoder frames are the whole file's (a CTC head with upsample 2 has two
        output frames per encoder frame, so the CTC frame shift alone would give 2)."""
        return time_reduction(self.model)

    def compute(self, path: Path) -> tuple[np.ndarray | None, float]:
        """The file's features as the shards store them (float16 [T, F]) and its duration (s).

        Raises AudioError; a silent file gives no features (None) and its duration.
        """
        try:
            feats, info = compute_features(path, self.features)
        except AudioError as e:
            if e.reason != SILENT:
                raise
            wave, _, _ = load_audio(path, self.features)
            return None, len(wave) / self.features.sample_rate
        return feats, info["duration"]

    def prepare(self, source, sample_rate: int | None = None) -> Prepared | FileFailure:
        """A file path, or samples (numpy float or integer PCM [n], [n, channels] or [channels, n]
        at `sample_rate` Hz: `pipeline.audio.as_samples`) -> their features, or the FileFailure
        saying why there are none."""
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                return FileFailure(ARRAY, "samples given without sample_rate=")
            try:
                feats, info = waveform_features(source, sample_rate, self.features)
            except AudioError as e:
                if e.reason != SILENT:
                    reason = AUDIO_PROBLEMS.get(e.reason, e.reason) if e.reason != "decode_error" else ""
                    return FileFailure(ARRAY, f"{reason} ({e.detail})" if reason and e.detail else
                                       reason or e.detail or e.reason)
                return Prepared(ARRAY, None, len(as_samples(source)) / sample_rate)  # [n, channels] either way
            return Prepared(ARRAY, feats, info["duration"])
        path = Path(source)
        if path.is_dir():
            return FileFailure(str(path), "is a directory, not an audio file")
        if self.window_s is not None and path.is_file():
            try:
                duration = sf.info(str(path)).duration
            except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError):
                duration = 0.0  # the whole-file path says what is wrong with it
            if duration > self.window_s:
                return Long(str(path), duration)
        try:
            feats, duration = self.compute(path)
        except OSError as e:  # unreadable (permissions, I/O error): this file fails, the others go on
            return FileFailure(str(path), e.strerror or type(e).__name__)
        except AudioError as e:
            return FileFailure.of_audio_error(str(path), e)
        return Prepared(str(path), feats, duration)

    def batch(self, items: list[Prepared | FileFailure]) -> list[Transcript | FileFailure]:
        """Decode the prepared items as one padded batch; failures pass through, in place."""
        todo = [i for i, item in enumerate(items) if isinstance(item, Prepared) and item.feats is not None]
        out: list = [item if isinstance(item, FileFailure) else self.long(item) if isinstance(item, Long)
                     else Transcript(item.id, item.path, "", round(item.duration, 3), 0.0) for item in items]
        if not todo:
            return out
        xs = [torch.from_numpy((items[i].feats.astype(np.float32) - self.mean) / self.std) for i in todo]  # CMVN
        lengths = torch.tensor([len(x) for x in xs], device=self.device)
        x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True).to(self.device)  # [B, T, F]
        t0 = time.perf_counter()
        decoded = self.decoder.decode(x, lengths, self.timestamps)
        words = [self._words(decoded, b, self.timestamps) for b in range(len(todo))]
        seconds = round((time.perf_counter() - t0) / len(todo), 4)
        for b, i in enumerate(todo):
            out[i] = Transcript(items[i].id, items[i].path, decoded.texts[b], round(items[i].duration, 3), seconds,
                                words[b])
        return out

    def long(self, item: Long) -> Transcript | FileFailure:
        """A long file, window by window (asr/inference/longform.py): its words stitched, times from the
        start of the file; a file whose end cannot be read is transcribed up to there, with a
        `warning`."""
        try:
            stream = FeatureStream(item.path, self.features)
            result = transcribe_stream(stream, self._window_words, self.features.hop_ms / 1000, self.window_s,
                                       align=self.encoder_stride())
        except OSError as e:
            return FileFailure(item.path, e.strerror or type(e).__name__)
        except AudioError as e:
            return FileFailure.of_audio_error(item.path, e)
        if result.duration == 0:
            return FileFailure(item.path, AUDIO_PROBLEMS["empty_audio"])
        words = result.words if self.timestamps else [Word(w.word, None, None, None) for w in result.words]
        return Transcript(item.id, item.path, " ".join(w.word for w in result.words), round(result.duration, 3),
                          round(result.seconds, 4), words, result.warning)

    def _window_words(self, feats: np.ndarray) -> tuple[list[Word], float]:
        """One window's features (float16 [T, F]) -> its words, times from the window's start,
        and the decoding seconds."""
        x = torch.from_numpy((feats.astype(np.float32) - self.mean) / self.std)[None].to(self.device)
        t0 = time.perf_counter()
        decoded = self.decoder.decode(x, torch.tensor([x.shape[1]], device=self.device), align=True)
        return self._words(decoded, 0, True), time.perf_counter() - t0

    def _words(self, decoded: Decoded, b: int, timed: bool) -> list[Word]:
        """Hypothesis b's words, with their times when `timed` (and the model gives them)."""
        if not timed:
            return [Word(w, None, None, None) for w in decoded.texts[b].split()]
        return timed_words(decoded, b, self.tokenizer, self.shift)

    @torch.no_grad()
    def align(self, source, text: str, sample_rate: int | None = None) -> list[Word] | FileFailure:
        """Forced alignment of a known `text` (normalised as the training text was) on the
        source's CTC log-probs: its words with their times (None without a CTC head)."""
        item = self.prepare(source, sample_rate)
        if isinstance(item, FileFailure):
            return item
        words = normalize_hypothesis(text, self.decoder.normalizer)
        ctc_head = self.decoder.kind == "ctc" or getattr(self.model, "ctc_head", None) is not None
        if item.feats is None or not ctc_head:
            return [Word(w, None, None, None) for w in words.split()]
        x = torch.from_numpy((item.feats.astype(np.float32) - self.mean) / self.std)[None].to(self.device)
        log_probs, out_lens = ctc_posteriors(self.model, x, torch.tensor([x.shape[1]], device=self.device))
        return align_words(log_probs[0, : int(out_lens[0])], words, self.tokenizer, self.shift)

    def __call__(self, source, sample_rate: int | None = None) -> Transcript | FileFailure:
        return self.batch([self.prepare(source, sample_rate)])[0]


def ctc_posteriors(model, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The CTC log-probs [B, T', V] and lengths [B] words are aligned on: a CTC model's own, a
    LAS model's CTC head's."""
    if model.kind == "ctc":
        return model.log_probs(feats, lengths)
    enc, out_lens = model.encode(feats, lengths)
    return model.ctc_log_probs(enc), out_lens


def transcribe(checkpoint: Path, paths: list[Path], options: DecodeOptions | None = None,
               device: str = "auto") -> Iterator[Transcript | FileFailure]:
    """Transcripts (or failures) of `paths`, in order. Raises CheckpointError for a bad checkpoint."""
    transcriber = Transcriber(checkpoint, options, device)
    for path in paths:
        yield transcriber(path)
