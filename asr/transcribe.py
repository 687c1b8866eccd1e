"""Transcription: any audio file -> text, with a checkpoint.

    asr-cli transcribe --checkpoint runs/fr-ctc/best.pt a.mp3 b.wav c.flac
    asr-cli transcribe --checkpoint X.pt --lm lm/fr-3gram.arpa --json *.mp3

Per file (MP3 / WAV / FLAC, any sample rate, mono or stereo):

    file --pipeline.audio.compute_features (the checkpoint's FeatureConfig: the very function
         that made the training shards)--> float16 [T, F]
         --checkpoint CMVN--> float32 [1, T, F] --asr.decoding.Decoder (same modes and options
         as `asr-cli eval`)--> text, normalised like eval's hypotheses

Files are decoded one at a time, in the order given, and every path gives exactly one
result. A file that cannot be read (missing, a directory, empty, not audio, truncated) gives
a `FileFailure` with a one-line reason and the others go on; a file without audible signal
transcribes as "". `Transcript.time` is the decoding time (model and search, not file
decoding) in seconds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from asr.decoding import DecodeOptions, Decoder
from asr.models import checkpoint_cmvn, load_model
from asr.distributed import Dist, pick_device
from pipeline.audio import AudioError, FeatureConfig, compute_features, load_audio
from pipeline.text import get_normalizer

# AudioError reasons -> what the user is told
AUDIO_PROBLEMS = {
    "missing_file": "file not found",
    "empty_file": "empty file (0 bytes)",
    "decode_error": "not a readable audio file (MP3, WAV, FLAC, OGG ...)",
    "truncated": "truncated audio file",
    "empty_audio": "the file holds no audio samples",
}
SILENT = "silent_audio"


@dataclass
class Transcript:
    id: str  # the file name without its extension
    path: str
    text: str
    duration: float  # seconds of audio
    time: float  # decoding seconds

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FileFailure:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def to_dict(self) -> dict:
        return {"id": Path(self.path).stem, "path": self.path, "error": self.reason}


class Transcriber:
    """A checkpoint loaded once, then `transcriber(path)` per file."""

    def __init__(self, checkpoint: Path, options: DecodeOptions | None = None, device: str = "auto"):
        self.device = pick_device(device, Dist())
        model, tokenizer, ckpt = load_model(checkpoint, self.device)
        self.lang = ckpt["lang"]
        self.features = FeatureConfig.from_dict(ckpt["features"])
        self.mean, self.std = checkpoint_cmvn(ckpt)  # [F] each
        self.decoder = Decoder(model, tokenizer, options or DecodeOptions(), get_normalizer(self.lang))

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

    def __call__(self, path: Path) -> Transcript | FileFailure:
        path = Path(path)
        if path.is_dir():
            return FileFailure(str(path), "is a directory, not an audio file")
        try:
            feats, duration = self.compute(path)
        except OSError as e:  # unreadable (permissions, I/O error): this file fails, the others go on
            return FileFailure(str(path), e.strerror or type(e).__name__)
        except AudioError as e:
            reason = AUDIO_PROBLEMS.get(e.reason, e.reason)
            detail = e.detail if e.detail != str(path) else ""  # the path is said once, before the reason
            return FileFailure(str(path), f"{reason} ({detail})" if detail else reason)
        if feats is None:
            return Transcript(path.stem, str(path), "", duration, 0.0)
        x = (feats.astype(np.float32) - self.mean) / self.std  # CMVN, as the loader applies it
        x = torch.from_numpy(x)[None].to(self.device)  # [1, T, F]
        lengths = torch.tensor([x.shape[1]], device=self.device)
        t0 = time.perf_counter()
        text = self.decoder(x, lengths)[0]
        return Transcript(path.stem, str(path), text, round(duration, 3), round(time.perf_counter() - t0, 4))


def transcribe(checkpoint: Path, paths: list[Path], options: DecodeOptions | None = None,
               device: str = "auto") -> Iterator[Transcript | FileFailure]:
    """Transcripts (or failures) of `paths`, in order. Raises CheckpointError for a bad checkpoint."""
    transcriber = Transcriber(checkpoint, options, device)
    for path in paths:
        yield transcriber(path)
