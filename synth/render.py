"""Rendering one clip (runs in worker processes): espeak-ng speech, then the recording chain.

    sentence --espeak-ng (speaker: dialect, variant, pitch, range, rate, word gap)-->
    22.05 kHz speech -> trim -> microphone band limit / room reverb (per speaker) ->
    soxr resample to 48/44.1/32 kHz -> leading/trailing silence -> noise at an SNR
    (white / pink / brown; per channel when stereo) -> random gain -> MP3 (soundfile)

All randomness comes from (seed, clip index), so any number of workers gives the same bytes.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr

from pipeline.atomic import atomic_path
from synth.plan import FEMALE, MALE, VARIANTS, ClipJob, Speaker

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050  # espeak-ng's output sample rate
INSTALL_HINT = "install it with `apt-get install espeak-ng` (or run `make setup`)"


@dataclass(frozen=True)
class ClipResult:
    """What a worker reports for one rendered clip."""

    index: int
    duration_ms: int
    sample_rate: int
    channels: int


def check_espeak(variants=VARIANTS) -> list[tuple[str, str, float]]:
    """Fail clearly without espeak-ng; keep only the variants this install has."""
    if shutil.which(ESPEAK) is None:
        raise RuntimeError(f"{ESPEAK} not found: {INSTALL_HINT}")
    version = subprocess.run([ESPEAK, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"Data at:\s*(.+)", version)
    if not m:
        return list(variants)
    variant_dir = Path(m.group(1).strip()) / "voices" / "!v"
    if not variant_dir.is_dir():
        return list(variants)
    present = {p.name for p in variant_dir.iterdir()}
    kept = [v for v in variants if v[0] in present]
    for gender in (MALE, FEMALE):
        if sum(1 for v in kept if v[1] == gender) < 2:
            raise RuntimeError(f"{ESPEAK} has too few voice variants in {variant_dir}; "
                               f"reinstall it: {INSTALL_HINT}")
    return kept


def espeak_wave(text: str, speaker: Speaker, rate: int, pitch: int) -> np.ndarray:
    """Speak `text` with espeak-ng; float32 mono at ESPEAK_RATE."""
    voice = f"{speaker.dialect}+{speaker.variant}"
    ssml = f'<speak><prosody range="{speaker.pitch_range}">{escape(text)}</prosody></speak>'
    cmd = [ESPEAK, "-m", "--stdin", "--stdout", "-v", voice, "-p", str(pitch), "-s", str(rate),
           "-g", str(speaker.word_gap), "-a", str(speaker.amplitude)]
    try:
        proc = subprocess.run(cmd, input=ssml.encode("utf-8"), capture_output=True,
                              check=False, timeout=60)
    except FileNotFoundError:
        raise RuntimeError(f"{ESPEAK} not found: {INSTALL_HINT}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{ESPEAK} failed ({proc.returncode}) on {text!r}: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return wav_samples(proc.stdout)


def wav_samples(data: bytes) -> np.ndarray:
    """int16 PCM from espeak's streamed WAV (its header sizes are placeholders)."""
    if data[:4] != b"RIFF" or b"data" not in data[:128]:
        raise RuntimeError(f"{ESPEAK} returned no WAV audio")
    start = data.index(b"data", 12) + 8
    pcm = data[start: start + (len(data) - start) // 2 * 2]
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def trim_silence(x: np.ndarray, sr: int, threshold_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing parts quieter than threshold_db below the peak (10 ms frames)."""
    frame = max(1, sr // 100)
    n = len(x) // frame
    if n == 0:
        return x
    energy = np.sqrt((x[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(energy / (energy.max() + 1e-12)) > threshold_db)[0]
    if len(loud) == 0:
        return x
    lo, hi = max(0, loud[0] - 2) * frame, min(len(x), (loud[-1] + 3) * frame)
    return x[lo:hi]


def band_limit(x: np.ndarray, sr: int, low: float, high: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth-shaped band-pass done in the frequency domain."""
    pad = 2048
    n = _fft_size(len(x) + 2 * pad)
    spec = np.fft.rfft(np.pad(x, pad), n=n)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    gain = 1.0 / np.sqrt(1.0 + (f / high) ** (2 * order))
    gain *= 1.0 / np.sqrt(1.0 + (low / np.maximum(f, 1e-3)) ** (2 * order))
    return np.fft.irfft(spec * gain, n=n)[pad: pad + len(x)].astype(np.float32)


def reverb(x: np.ndarray, sr: int, rt60: float, wet: float,
           rng: np.random.Generator) -> np.ndarray:
    """Add a small synthetic room: exponentially decaying noise impulse response.

    The output keeps the reverb tail: [len(x) + rt60 * sr].
    """
    length = int(rt60 * sr)
    t = np.arange(length) / sr
    ir = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)
    ir[: int(0.003 * sr)] = 0.0  # first reflections arrive after a few milliseconds
    ir /= np.sqrt((ir ** 2).sum()) + 1e-12
    n = _fft_size(len(x) + length)
    tail = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(ir, n), n)[: len(x) + length]
    dry = np.pad(x, (0, length))
    return ((1.0 - wet) * dry + wet * tail).astype(np.float32)


def _fft_size(n: int) -> int:
    """Next power of two >= n (numpy's FFT is slow on lengths with large prime factors)."""
    return 1 << max(0, int(math.ceil(math.log2(max(n, 1)))))


def colored_noise(n: int, color: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise [n]; pink falls 3 dB/octave, brown 6 dB/octave (above 20 Hz)."""
    if color == "white":
        x = rng.standard_normal(n, dtype=np.float32)
    else:
        size = _fft_size(n)  # shape a random complex spectrum, one inverse FFT
        half = size // 2 + 1
        spec = rng.standard_normal(half) + 1j * rng.standard_normal(half)
        f = np.fft.rfftfreq(size, 1.0 / sr)
        shape = np.zeros_like(f)
        power = 1.0 if color == "pink" else 2.0
        shape[f >= 20] = f[f >= 20] ** (-power / 2)
        x = np.fft.irfft(spec * shape, size)[:n]
    return (x / (np.sqrt((x ** 2).mean()) + 1e-12)).astype(np.float32)


def render_clip(job: ClipJob) -> ClipResult:
    """Synthesise, degrade and write one clip; randomness from (seed, index) only."""
    rng = np.random.default_rng([job.seed, job.index, 0xC11])
    spk = job.speaker
    rate = int(np.clip(round(spk.rate * (1 + rng.normal(0, 0.04))), 110, 240))
    pitch = int(np.clip(spk.pitch + rng.integers(-4, 5), 0, 99))
    speech = trim_silence(espeak_wave(job.sentence, spk, rate, pitch), ESPEAK_RATE)
    seconds = len(speech) / ESPEAK_RATE
    if seconds > job.max_speech_seconds:  # Common Voice clips stay under 10 s
        rate = int(min(380, math.ceil(rate * seconds / (job.max_speech_seconds - 0.3))))
        speech = trim_silence(espeak_wave(job.sentence, spk, rate, pitch), ESPEAK_RATE)

    dev = spk.device
    if dev.band is not None:
        speech = band_limit(speech, ESPEAK_RATE, *dev.band)
    if dev.rt60 > 0:
        speech = reverb(speech, ESPEAK_RATE, dev.rt60, dev.wet, rng)
    speech = speech / (np.abs(speech).max() + 1e-9)
    sr = job.sample_rate
    speech = soxr.resample(speech.astype(np.float32), ESPEAK_RATE, sr).astype(np.float32)
    speech_rms = float(np.sqrt((speech ** 2).mean()) + 1e-9)

    lead, trail = (int(rng.uniform(*job.silence_seconds) * sr) for _ in range(2))
    total = lead + len(speech) + trail
    snr = float(np.clip(dev.snr_db + rng.normal(0, 3), *job.snr_db))
    noise_level = speech_rms / 10 ** (snr / 20)
    channels = []
    for ch in range(job.channels):
        x = np.zeros(total, dtype=np.float32)
        gain = 1.0 if ch == 0 else 10 ** (rng.uniform(-1, 1) / 20)
        x[lead: lead + len(speech)] = speech * gain
        x += noise_level * colored_noise(total, dev.noise, sr, rng)
        channels.append(x)
    audio = np.stack(channels, axis=1) if job.channels == 2 else channels[0]
    peak = 10 ** (rng.uniform(*job.peak_dbfs) / 20)
    audio = np.clip(audio * (peak / (np.abs(audio).max() + 1e-9)), -1.0, 1.0)

    with atomic_path(Path(job.path)) as tmp:
        sf.write(tmp, audio.astype(np.float32), sr, format="MP3")
    return ClipResult(job.index, int(round(total * 1000 / sr)), sr, job.channels)
