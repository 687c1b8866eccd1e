"""Audio file -> 16 kHz mono waveform -> log-Mel features.

This is the project's one feature function: the shard pipeline calls `compute_features`
for every clip and `asr-cli transcribe` calls the very same function on any MP3/WAV/FLAC,
so training and inference cannot drift apart. The `FeatureConfig` is written into
`dataset.json` and into every checkpoint.

    file (any rate, mono or stereo) --soundfile--> float32 [n, C] at its own rate
        --mean over channels--> [n] --soxr HQ--> [n'] at 16 kHz
        --torchaudio MelSpectrogram (25 ms / 10 ms, 80 bins, power)--> log(mel + 1e-6)
          (computed as torchaudio does, see `log_mel`)
        --> float16 [T, 80], T = 1 + n' // 160
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr
import torch
import torchaudio

from pipeline.config import FeatureConfig  # noqa: F401  (what the features are: a module without torch)

# A decoded file this much shorter than its header announces is truncated or corrupt.
TRUNCATION_TOLERANCE_S = 0.1
TRUNCATION_TOLERANCE_FRAC = 0.02
SILENCE_PEAK = 1e-4  # peak amplitude below which a clip holds no audible signal
# A header claiming fewer samples a second than this is not audio (a "1 Hz" WAV would become
# hours of virtual samples at 16 kHz): refused when the file is opened, before anything is read.
MIN_SAMPLE_RATE = 1000


class AudioError(Exception):
    """A clip that cannot become features; `reason` is the short reject code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _existing(path: str | os.PathLike) -> Path:
    """`path` as a Path; AudioError missing_file / empty_file when it is not a non-empty file."""
    path = Path(path)
    if not path.is_file():
        raise AudioError("missing_file", str(path))
    if path.stat().st_size == 0:
        raise AudioError("empty_file", str(path))
    return path


def check_header(rate: int, frames: int, max_seconds: float | None = None) -> None:
    """AudioError before any sample is read: decode_error for a rate below MIN_SAMPLE_RATE,
    too_long when the header announces more than `max_seconds` (a 6-hour file in a release
    is refused from its header, not decoded whole first)."""
    if rate < MIN_SAMPLE_RATE:
        raise AudioError("decode_error", f"the header's sample rate {rate} Hz is not audio (below {MIN_SAMPLE_RATE} Hz)")
    if max_seconds is not None and frames > 0 and frames / rate > max_seconds:
        raise AudioError("too_long", f"{frames / rate:.2f}s > {max_seconds}s (from the file's header)")


def decode(path: str | os.PathLike | bytes, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file at its own rate: float32 [n, channels] and the sample rate. `path`
    may be the file's bytes instead (a clip read from a release archive, never written to disk).

    Raises AudioError with reason missing_file / empty_file / decode_error / truncated /
    empty_audio, or too_long when the header announces more than `max_seconds` (checked
    before decoding).
    """
    if isinstance(path, (bytes, bytearray)):
        if not path:
            raise AudioError("empty_file", "0 bytes")
        source = io.BytesIO(path)
    else:
        source = str(_existing(path))
    try:
        with sf.SoundFile(source) as f:
            announced = f.frames
            rate = f.samplerate
            check_header(rate, announced, max_seconds)
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        raise decode_error(e) from None
    if data.shape[0] == 0:
        raise AudioError("empty_audio", "no samples")
    missing = announced - data.shape[0]
    if announced > 0 and missing > max(TRUNCATION_TOLERANCE_S * rate, TRUNCATION_TOLERANCE_FRAC * announced):
        raise AudioError(
            "truncated", f"decoded {data.shape[0] / rate:.2f}s of {announced / rate:.2f}s announced"
        )
    if not np.isfinite(data).all():
        raise AudioError("decode_error", "non-finite samples")
    return data, rate


def decode_error(e: Exception) -> AudioError:
    """libsndfile's own reason ("Format not recognised.", ...) as a decode_error's detail."""
    reason = str(getattr(e, "error_string", "") or "").strip() or type(e).__name__
    return AudioError("decode_error", reason.rstrip("."))


def read_blocks(path: str | os.PathLike, seconds: float = 10.0) -> tuple[int, int, int, Iterator[np.ndarray]]:
    """Open an audio file for reading in blocks: (rate, channels, announced frames, blocks),
    blocks yielding float32 [n, channels] of about `seconds` each at the file's own rate.

    Raises AudioError missing_file / empty_file / decode_error on opening; a block that cannot
    be decoded raises AudioError("unreadable_after", "<seconds read before it>").
    """
    path = _existing(path)
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:
        raise decode_error(e) from None
    try:
        check_header(f.samplerate, f.frames)
    except AudioError:
        f.close()
        raise

    def blocks() -> Iterator[np.ndarray]:
        done = 0
        with f:
            while True:
                try:
                    block = f.read(max(1, round(seconds * f.samplerate)), dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, ValueError) as e:
                    raise AudioError("unreadable_after", f"{done / f.samplerate:.2f}") from e
                if not len(block):
                    return
                done += len(block)
                yield block

    return f.samplerate, f.channels, f.frames, blocks()


def load_audio(path: str | os.PathLike, cfg: FeatureConfig = FeatureConfig()) -> tuple[np.ndarray, int, int]:
    """Decode, downmix and resample a file: (float32 [n] at cfg.sample_rate, source rate, channels)."""
    data, rate = decode(path)
    channels = data.shape[1]
    wave = data.mean(axis=1) if channels > 1 else data[:, 0]
    wave = resample(wave, rate, cfg)
    return wave, rate, channels


def resample(wave: np.ndarray, rate: int, cfg: FeatureConfig = FeatureConfig(), speed: float = 1.0) -> np.ndarray:
    """float32 [n] at `rate` -> float32 [n'] at cfg.sample_rate (soxr, cfg.resample_quality).

    `speed` != 1 is speed perturbation as Kaldi's and ESPnet's (sox `speed`): the samples are
    read as if recorded at rate * speed, so tempo and pitch change together and the result
    lasts 1 / speed as long; folded into the one soxr ratio, it costs no extra pass."""
    source = rate * speed
    if source == cfg.sample_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    return soxr.resample(wave, source, cfg.sample_rate, quality=cfg.resample_quality).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=4)
def _mel_weights(cfg: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(Hann window [win_length], mel filters [n_mels, n_fft // 2 + 1]): those of
    torchaudio.transforms.MelSpectrogram(..., power=2, center=True, mel_scale="htk")."""
    fb = torchaudio.functional.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels,
                                               cfg.sample_rate, norm=None, mel_scale="htk")
    return torch.hann_window(cfg.win_length), fb.T.contiguous()


def log_mel(wave: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """float32 [n] at cfg.sample_rate -> float16 [T, n_mels] log-Mel, T = cfg.num_frames(n).

    torchaudio's MelSpectrogram (25 ms Hann window in a 512-point FFT, centred with reflect
    padding, power spectrum, HTK mel filters), computed without its `abs()` of the complex
    spectrum: the power is re^2 + im^2, which halves the CPU time of this step (the values
    agree to float32 rounding: 1 float16 value in 20,000 differs by one unit in the last place).

    AudioError too_short for n <= n_fft // 2 (the centred window's reflect padding needs more
    samples), non_finite_features when samples huge but finite overflow the power spectrum:
    one such clip would give the whole train split a CMVN of NaN."""
    if len(wave) <= cfg.n_fft // 2:
        raise AudioError("too_short", f"{len(wave)} samples at {cfg.sample_rate} Hz, fewer than the "
                                      f"{cfg.n_fft // 2 + 1} one analysis window needs")
    feats = _log_mel(wave, cfg)
    if not np.isfinite(feats).all():
        raise AudioError("non_finite_features", "the samples are so large that their spectrum overflows "
                                                "(not a waveform in [-1, 1])")
    return feats


def _log_mel(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    window, fb = _mel_weights(cfg)
    with torch.inference_mode():
        spec = torch.stft(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), cfg.n_fft, cfg.hop_length,
                          cfg.win_length, window, center=True, pad_mode="reflect", return_complex=True)
        ri = torch.view_as_real(spec)  # [freq, T, 2]
        mel = fb @ (ri[..., 0].square() + ri[..., 1].square())  # [n_mels, T]
        feats = torch.log(mel.add_(cfg.log_offset)).T  # [T, n_mels]
        if cfg.dtype == "float16":  # torch's conversion: the same rounding as numpy's, faster
            return feats.to(torch.float16).contiguous().numpy()
    return feats.numpy().astype(cfg.dtype)


def compute_features(path: str | os.PathLike, cfg: FeatureConfig = FeatureConfig()) -> tuple[np.ndarray, dict]:
    """Any audio file -> (float16 [T, n_mels] log-Mel, info).

    info: duration (s, after resampling), source sample_rate, channels, peak amplitude.
    Raises AudioError (see `decode`), or with reason "silent_audio" for a clip without signal.
    """
    wave, rate, channels = load_audio(path, cfg)
    return _features(wave, rate, channels, cfg)


def speed_features(path: str | os.PathLike | bytes, cfg: FeatureConfig = FeatureConfig(), speeds: tuple[float, ...] = (),
                   max_seconds: float | None = None) -> tuple[np.ndarray, dict, list[tuple[np.ndarray, dict]]]:
    """`compute_features` of a file, plus the features of its speed-perturbed copies (one per
    factor of `speeds`, from the same decoded samples: the file is decoded once). A header
    announcing more than `max_seconds` is AudioError too_long before anything is decoded.

    Whether the clip is usable (AudioError) is decided on the original only: a copy is made
    for every clip kept, never rejected on its own. A copy's info holds its own duration."""
    data, rate = decode(path, max_seconds)
    channels = data.shape[1]
    mono = data.mean(axis=1) if channels > 1 else data[:, 0]
    feats, info = _features(resample(mono, rate, cfg), rate, channels, cfg)
    copies = []
    for speed in speeds:
        wave = resample(mono, rate, cfg, speed)
        copies.append((log_mel(wave, cfg), dict(info, duration=len(wave) / cfg.sample_rate, speed=speed)))
    return feats, info, copies


MAX_ARRAY_CHANNELS = 16  # in an array given in memory, the axis this short (and the other longer) is channels


def as_samples(wave) -> np.ndarray:
    """Samples given in memory -> float32 [n, channels] in [-1, 1] as a file's would be read.

    Integer PCM is scaled by its dtype (int16 / 32768, int32 / 2**31, uint8 around 128), as
    soundfile reads a PCM file; float is taken as it is. A 2-D array may be [n, channels] or
    [channels, n]: the channel axis is the one of at most MAX_ARRAY_CHANNELS while the other is
    longer. AudioError decode_error for any other dtype or shape, and for a 2-D shape where
    that does not tell (both axes short, or both long)."""
    data = np.asarray(wave)
    if data.dtype.kind in "iu":
        info = np.iinfo(data.dtype)
        middle = 0 if data.dtype.kind == "i" else (int(info.max) + 1) // 2
        data = (data.astype(np.float64) - middle) / (int(info.max) + 1 - middle)
    elif data.dtype.kind != "f":
        raise AudioError("decode_error", f"samples of dtype {data.dtype} are not audio: give float or integer PCM")
    data = data.astype(np.float32, copy=False)
    if data.ndim == 1 or data.size == 0:
        return data.reshape(-1, 1) if data.size == 0 else data[:, None]
    if data.ndim != 2:
        raise AudioError("decode_error", f"expected samples [n] or [n, channels], got shape {data.shape}")
    rows, cols = data.shape
    if cols <= MAX_ARRAY_CHANNELS < rows:
        return data
    if rows <= MAX_ARRAY_CHANNELS < cols:
        return np.ascontiguousarray(data.T)  # [channels, n], as torchaudio gives it
    raise AudioError("decode_error", f"cannot tell samples from channels in shape {data.shape}: give [n] or "
                                     f"[n, channels] with at most {MAX_ARRAY_CHANNELS} channels")


def waveform_features(wave: np.ndarray, rate: int, cfg: FeatureConfig = FeatureConfig()) -> tuple[np.ndarray, dict]:
    """A waveform in memory -> (float16 [T, n_mels] log-Mel, info), as `compute_features` makes
    them from a file holding these samples: float or integer PCM [n] (mono), [n, channels] or
    [channels, n] at `rate` Hz (see `as_samples`), downmixed, resampled to cfg.sample_rate,
    then the same log-Mel.

    Raises AudioError: empty_audio (no samples), decode_error (non-finite samples, a bad rate,
    dtype or shape), silent_audio, too_short, non_finite_features.
    """
    if not (isinstance(rate, (int, np.integer)) and rate > 0):
        raise AudioError("decode_error", f"expected a positive integer sample rate, got {rate!r} Hz")
    check_header(int(rate), 0)
    data = as_samples(wave)
    if data.shape[0] == 0:
        raise AudioError("empty_audio", "no samples")
    if not np.isfinite(data).all():
        raise AudioError("decode_error", "non-finite samples")
    channels = data.shape[1]
    mono = data.mean(axis=1) if channels > 1 else data[:, 0]
    return _features(resample(mono, int(rate), cfg), int(rate), channels, cfg)


def _features(wave: np.ndarray, rate: int, channels: int, cfg: FeatureConfig) -> tuple[np.ndarray, dict]:
    """Resampled mono float32 [n] -> (log-Mel, info); AudioError silent_audio without signal."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak < SILENCE_PEAK:
        raise AudioError("silent_audio", f"peak amplitude {peak:.2g}")
    feats = log_mel(wave, cfg)
    info = {"duration": len(wave) / cfg.sample_rate, "sample_rate": rate, "channels": channels, "peak": peak}
    return feats, info
