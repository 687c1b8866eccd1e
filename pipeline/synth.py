"""Synthetic demo corpus in Mozilla Common Voice's own on-disk layout.

No real corpus can be downloaded everywhere, so `synthesize` makes one: espeak-ng voices
read French sentences from `pipeline.french_text`, and the clips are written exactly as a
Common Voice release lays them out, so the pipeline that reads real releases reads this
one unchanged:

    out/                                    (the language folder, e.g. data/demo/fr)
      clips/common_voice_fr_<id>.mp3        48 kHz mono mostly; some 44.1/32 kHz, stereo
      train.tsv dev.tsv test.tsv            the split TSVs (current release columns)
      validated.tsv                         train+dev+test plus ~5 % clips in no split
      invalidated.tsv other.tsv             header only
      clip_durations.tsv                    clip, duration[ms]
      .synth.json                           parameters + completion flag, written last

How a clip is made (all randomness from (seed, clip index), so any `jobs` gives the same
bytes):

    sentence --espeak-ng (speaker: dialect, variant, pitch, range, rate, word gap)-->
    22.05 kHz speech -> trim -> microphone band limit / room reverb (per speaker) ->
    soxr resample to 48/44.1/32 kHz -> leading/trailing silence -> noise at an SNR
    (white / pink / brown; per channel when stereo) -> random gain -> MP3 (soundfile)

Speakers are disjoint across train/dev/test, and ~15 % of the voice variants are held out
of train entirely, so test measures generalisation to unseen voices.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from pipeline.french_text import generate_sentences

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050  # espeak-ng's output sample rate
INSTALL_HINT = "install it with `apt-get install espeak-ng` (or run `make setup`)"
SYNTH_VERSION = 1  # bump when a configuration's output changes (sentences included)
STAMP = ".synth.json"
SPLITS = ("train", "dev", "test")
COLUMNS = ("client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes",
           "down_votes", "age", "gender", "accents", "variant", "locale", "segment")
OTHER_TSVS = ("invalidated.tsv", "other.tsv")
DURATIONS_TSV = "clip_durations.tsv"
SUPPORTED_LANGS = ("fr",)
MALE, FEMALE = "male_masculine", "female_feminine"

# espeak-ng voice variants that sound human enough, with a gender and a weight (the
# stranger-sounding ones are drawn less often).
VARIANTS: tuple[tuple[str, str, float], ...] = tuple(
    [(v, MALE, 1.0) for v in ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Alex", "Mike",
                              "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Mario",
                              "Michael", "gustave", "marcelo", "michel", "miguel", "robert",
                              "rob", "quincy", "paul", "pedro", "antonio", "max", "travis",
                              "victor", "edward", "benjamin", "david", "adam", "klatt",
                              "klatt2", "klatt3", "john", "norbert", "pablo")]
    + [(v, MALE, 0.4) for v in ("Andy", "Jacky", "boris", "iven3", "sandro", "ed", "Lee",
                                "kaukovalta", "grandpa")]
    + [(v, FEMALE, 1.0) for v in ("f1", "f2", "f3", "f4", "f5", "Annie", "Alicia", "Andrea",
                                  "belinda", "linda", "steph", "steph2", "steph3")]
    + [(v, FEMALE, 0.4) for v in ("aunty", "anika", "shelby", "grandma")]
)
OLD_VARIANTS = frozenset({"grandpa", "grandma"})
DIALECTS = (("fr", "France", 0.7), ("fr-be", "Belgique", 0.15), ("fr-ch", "Suisse", 0.15))
AGES = (("", 22), ("teens", 5), ("twenties", 25), ("thirties", 18), ("fourties", 13),
        ("fifties", 9), ("sixties", 5), ("seventies", 2), ("eighties", 1))
OLD_AGES = ("sixties", "seventies", "eighties")


class CorpusExistsError(FileExistsError, RuntimeError):
    """`out` holds a corpus this generator did not make; it is never overwritten.

    Also a RuntimeError, so callers that report RuntimeErrors cleanly (the CLI) do so here.
    """


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the corpus; saved in the stamp next to what it made."""

    lang: str = "fr"
    seed: int = 0
    num_clips: int = 0  # total clips, validated-only extras included
    split_shares: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, dev, test
    extra_validated_share: float = 0.05  # validated clips in no split
    mean_clip_seconds: float = 3.65  # measured mean; turns hours into a clip count
    train_clips_per_speaker: float = 16.0  # ~65 speakers per hour of audio in all
    eval_clips_per_speaker: float = 10.0
    speaker_spread: float = 0.75  # sigma of the log-normal clips-per-speaker weights
    held_out_variant_share: float = 0.15  # voice variants only dev/test speakers use
    held_out_eval_speaker_share: float = 0.5  # dev/test speakers on held-out variants
    repeat_sentence_share: float = 0.08  # clips re-reading a sentence of the same split
    rate_shares: tuple[tuple[int, float], ...] = ((48000, 0.85), (44100, 0.10), (32000, 0.05))
    stereo_share: float = 0.05
    max_speech_seconds: float = 8.8  # longer speech is re-spoken faster (clips <= 10 s)
    silence_seconds: tuple[float, float] = (0.1, 0.6)  # leading / trailing, each
    snr_db: tuple[float, float] = (15.0, 40.0)
    peak_dbfs: tuple[float, float] = (-12.0, -1.0)
    reverb_share: float = 0.3  # speakers recording in a reverberant room
    band_limit_share: float = 0.2  # speakers on a telephone-like or cheap microphone
    version: int = SYNTH_VERSION


@dataclass(frozen=True)
class Device:
    """A speaker's recording chain: noise colour and level, room, microphone band."""

    noise: str  # white | pink | brown
    snr_db: float  # per-clip SNR is drawn around this
    rt60: float  # reverberation time in seconds, 0 = dry
    wet: float  # reverb mix
    band: tuple[float, float] | None  # (low, high) Hz, None = full band


@dataclass(frozen=True)
class Speaker:
    key: str  # stable internal name (spk00042)
    client_id: str  # 128 hex characters, as Common Voice writes it
    split: str  # train | dev | test
    dialect: str  # espeak-ng voice: fr | fr-be | fr-ch
    variant: str  # espeak-ng variant (+m3, +Annie ...)
    pitch: int  # -p, 0..99
    pitch_range: int  # SSML prosody range
    rate: int  # -s, words per minute
    word_gap: int  # -g, units of 10 ms
    amplitude: int  # -a
    gender: str
    age: str
    accents: str
    device: Device


@dataclass(frozen=True)
class ClipJob:
    """What a worker needs to render one clip (picklable, self-contained)."""

    index: int
    seed: int
    path: str
    sentence: str
    speaker: Speaker
    sample_rate: int
    channels: int
    max_speech_seconds: float
    silence_seconds: tuple[float, float]
    snr_db: tuple[float, float]
    peak_dbfs: tuple[float, float]


@dataclass(frozen=True)
class ClipResult:
    index: int
    duration_ms: int
    sample_rate: int
    channels: int


@dataclass
class Plan:
    """The whole corpus before any audio exists: who reads what, where it goes."""

    config: SynthConfig
    speakers: list[Speaker]
    jobs: list[ClipJob]
    split_of: list[str]  # per clip: train | dev | test | extra
    votes: list[tuple[int, int]]  # per clip: up_votes, down_votes


# --------------------------------------------------------------------------------------
# Planning (deterministic in the config)
# --------------------------------------------------------------------------------------


def split_counts(n: int, cfg: SynthConfig) -> dict[str, int]:
    """Clips per split (train, dev, test, extra) for n clips in total."""
    if n < 3:
        raise ValueError(f"a corpus needs at least 3 clips (one per split), got {n}")
    extra = int(n * cfg.extra_validated_share) if n >= 20 else 0
    rest = n - extra
    dev = max(1, round(rest * cfg.split_shares[1]))
    test = max(1, round(rest * cfg.split_shares[2]))
    return {"train": rest - dev - test, "dev": dev, "test": test, "extra": extra}


def _speaker_sizes(rng: np.random.Generator, n_clips: int, n_speakers: int,
                   spread: float) -> list[int]:
    """Clips per speaker: every speaker at least one, a log-normal long tail."""
    n_speakers = max(1, min(n_speakers, n_clips))
    weights = rng.lognormal(0.0, spread, n_speakers)
    extra = rng.multinomial(n_clips - n_speakers, weights / weights.sum())
    return [int(e) + 1 for e in extra]


def _pick(rng: np.random.Generator, options) -> object:
    """Weighted choice over (value, ..., weight) tuples; returns the tuple."""
    w = np.array([o[-1] for o in options], dtype=float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def _make_speaker(rng: np.random.Generator, key: str, split: str, cfg: SynthConfig,
                  variants: list[tuple[str, str, float]]) -> Speaker:
    variant, gender, _ = _pick(rng, variants)
    dialect, country, _ = _pick(rng, DIALECTS)
    age = _pick(rng, AGES)[0]
    if variant in OLD_VARIANTS:
        age = OLD_AGES[int(rng.integers(len(OLD_AGES)))]
    noise = str(rng.choice(["white", "pink", "brown"], p=[0.4, 0.4, 0.2]))
    reverb = rng.random() < cfg.reverb_share
    band = None
    if rng.random() < cfg.band_limit_share:
        band = ((float(rng.uniform(250, 400)), float(rng.uniform(3200, 3600)))
                if rng.random() < 0.4 else
                (float(rng.uniform(100, 250)), float(rng.uniform(4500, 7500))))
    device = Device(noise=noise, snr_db=float(rng.uniform(18, 38)),
                    rt60=float(rng.uniform(0.15, 0.5)) if reverb else 0.0,
                    wet=float(rng.uniform(0.1, 0.35)) if reverb else 0.0, band=band)
    return Speaker(
        key=key,
        client_id=hashlib.sha512(f"synth-{cfg.seed}-{key}".encode()).hexdigest(),
        split=split,
        dialect=dialect,
        variant=variant,
        pitch=int(np.clip(round(rng.normal(50, 12)), 15, 85)),
        pitch_range=int(rng.integers(30, 101)),
        rate=int(np.clip(round(rng.normal(152, 15)), 125, 200)),
        word_gap=int(rng.choice([0, 1, 2], p=[0.6, 0.28, 0.12])),
        amplitude=int(rng.integers(80, 131)),
        gender=gender if rng.random() > 0.15 else "",
        age=age,
        accents=country if rng.random() > 0.3 else "",
        device=device,
    )


def _voice_signature(s: Speaker) -> tuple:
    return (s.dialect, s.variant, s.pitch, s.rate)


def make_plan(out: Path, cfg: SynthConfig, variants=VARIANTS) -> Plan:
    """Decide speakers, sentences, file names, rates and votes for every clip."""
    rng = np.random.default_rng([cfg.seed, 0x51D])
    counts = split_counts(cfg.num_clips, cfg)
    variants = list(variants)

    # Hold out ~15 % of the variants of each gender from train.
    held_out: set[str] = set()
    for gender in (MALE, FEMALE):
        names = sorted(v for v, g, _ in variants if g == gender)
        k = max(1, round(len(names) * cfg.held_out_variant_share))
        held_out.update(rng.choice(names, size=k, replace=False).tolist())
    train_variants = [v for v in variants if v[0] not in held_out]
    eval_variants = [v for v in variants if v[0] in held_out]

    # Speakers per split, clips per speaker.
    speakers: list[Speaker] = []
    clip_speakers: dict[str, list[Speaker]] = {}
    train_voices: set[tuple] = set()
    for split in SPLITS:
        n = counts[split]
        per = cfg.train_clips_per_speaker if split == "train" else cfg.eval_clips_per_speaker
        sizes = _speaker_sizes(rng, n, math.ceil(n / per), cfg.speaker_spread)
        owners: list[Speaker] = []
        for size in sizes:
            key = f"spk{len(speakers):05d}"
            if split == "train":
                spk = _make_speaker(rng, key, split, cfg, train_variants)
                train_voices.add(_voice_signature(spk))
            else:
                unseen = rng.random() < cfg.held_out_eval_speaker_share
                pool = eval_variants if unseen else train_variants
                spk = _make_speaker(rng, key, split, cfg, pool)
                while _voice_signature(spk) in train_voices:  # a new voice, not a train one
                    spk = _make_speaker(rng, key, split, cfg, pool)
            speakers.append(spk)
            owners += [spk] * size
        rng.shuffle(owners)
        clip_speakers[split] = owners
    # Validated-only clips come from train speakers (they may be trained on).
    train_speakers = [s for s in speakers if s.split == "train"]
    clip_speakers["extra"] = [train_speakers[int(i)] for i in
                              rng.integers(len(train_speakers), size=counts["extra"])]

    # Sentences: one distinct pool, consumed in order, so splits never share a sentence.
    pool = generate_sentences(cfg.num_clips, cfg.seed)
    next_fresh = 0
    assignments: list[tuple[str, Speaker, str]] = []
    for split in (*SPLITS, "extra"):
        readers: dict[str, set[str]] = {}  # sentence -> speakers who read it (this split)
        used: list[str] = []
        for spk in clip_speakers[split]:
            sentence = None
            if used and rng.random() < cfg.repeat_sentence_share:
                candidate = used[int(rng.integers(len(used)))]
                if spk.key not in readers[candidate]:  # nobody reads a sentence twice
                    sentence = candidate
            if sentence is None:
                sentence = pool[next_fresh]
                next_fresh += 1
                used.append(sentence)
                readers[sentence] = set()
            readers[sentence].add(spk.key)
            assignments.append((split, spk, sentence))

    # File names: unique, random-looking 8-digit numbers.
    ids: set[int] = set()
    numbers: list[int] = []
    while len(numbers) < cfg.num_clips:
        x = int(rng.integers(10_000_000, 100_000_000))
        if x not in ids:
            ids.add(x)
            numbers.append(x)

    # Sample rates and channels, with at least one of each kind in a corpus of >= 8 clips.
    rates_v = [r for r, _ in cfg.rate_shares]
    rates_p = np.array([p for _, p in cfg.rate_shares])
    rates = rng.choice(rates_v, size=cfg.num_clips, p=rates_p / rates_p.sum()).astype(int)
    stereo = rng.random(cfg.num_clips) < cfg.stereo_share
    if cfg.num_clips >= 8:
        a, b, c, d = rng.choice(cfg.num_clips, size=4, replace=False)
        rates[a], stereo[a] = 44100, False
        rates[b], stereo[b] = 32000, False
        rates[c], stereo[c] = 48000, True
        rates[d], stereo[d] = 48000, False

    votes = []
    for _ in range(cfg.num_clips):
        up = int(rng.choice([2, 3, 4, 5], p=[0.7, 0.2, 0.07, 0.03]))
        down = int(up >= 3 and rng.random() < 0.15)
        votes.append((up, down))

    jobs = [
        ClipJob(index=i, seed=cfg.seed,
                path=str(out / "clips" / f"common_voice_{cfg.lang}_{numbers[i]}.mp3"),
                sentence=sentence, speaker=spk, sample_rate=int(rates[i]),
                channels=2 if stereo[i] else 1, max_speech_seconds=cfg.max_speech_seconds,
                silence_seconds=cfg.silence_seconds, snr_db=cfg.snr_db,
                peak_dbfs=cfg.peak_dbfs)
        for i, (split, spk, sentence) in enumerate(assignments)
    ]
    return Plan(cfg, speakers, jobs, [s for s, _, _ in assignments], votes)


# --------------------------------------------------------------------------------------
# Rendering one clip (runs in worker processes)
# --------------------------------------------------------------------------------------


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
    return _wav_samples(proc.stdout)


def _wav_samples(data: bytes) -> np.ndarray:
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

    path = Path(job.path)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(tmp, audio.astype(np.float32), sr, format="MP3")
    os.replace(tmp, path)
    return ClipResult(job.index, int(round(total * 1000 / sr)), sr, job.channels)


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def _tsv(rows: list[list[str]], header=COLUMNS) -> str:
    for row in rows:
        for value in row:
            if "\t" in value or "\n" in value:
                raise ValueError(f"TSV field holds a tab or newline: {value!r}")
    return "".join("\t".join(r) + "\n" for r in [list(header), *rows])


def _row(job: ClipJob, votes: tuple[int, int], lang: str) -> list[str]:
    spk = job.speaker
    return [spk.client_id, Path(job.path).name,
            hashlib.sha256(job.sentence.encode("utf-8")).hexdigest(), job.sentence, "",
            str(votes[0]), str(votes[1]), spk.age, spk.gender, spk.accents, "", lang, ""]


def write_tsvs(out: Path, plan: Plan, results: dict[int, ClipResult]) -> None:
    """The split TSVs, validated.tsv, the empty ones and clip_durations.tsv."""
    rng = np.random.default_rng([plan.config.seed, 0x75F])
    lang = plan.config.lang
    rows_by_split: dict[str, list[list[str]]] = {s: [] for s in (*SPLITS, "extra")}
    for job, split, votes in zip(plan.jobs, plan.split_of, plan.votes):
        rows_by_split[split].append(_row(job, votes, lang))
    validated: list[list[str]] = []
    for split in SPLITS:
        rows = rows_by_split[split]
        order = rng.permutation(len(rows))
        _write_atomic(out / f"{split}.tsv", _tsv([rows[i] for i in order]))
        validated += rows
    validated += rows_by_split["extra"]
    order = rng.permutation(len(validated))
    _write_atomic(out / "validated.tsv", _tsv([validated[i] for i in order]))
    for name in OTHER_TSVS:
        _write_atomic(out / name, _tsv([]))
    durations = sorted((Path(j.path).name, str(results[j.index].duration_ms)) for j in plan.jobs)
    _write_atomic(out / DURATIONS_TSV, _tsv([list(d) for d in durations],
                                            header=("clip", "duration[ms]")))


def summarize(plan: Plan, results: dict[int, ClipResult], seconds: float) -> dict:
    hours: dict[str, float] = {}
    clips: dict[str, int] = {}
    for split in (*SPLITS, "extra"):
        idx = [j.index for j, s in zip(plan.jobs, plan.split_of) if s == split]
        clips[split] = len(idx)
        hours[split] = round(sum(results[i].duration_ms for i in idx) / 3.6e6, 4)
    clips["validated"] = len(plan.jobs)
    hours["validated"] = round(sum(hours.values()), 4)
    rates: dict[int, int] = {}
    for r in results.values():
        rates[r.sample_rate] = rates.get(r.sample_rate, 0) + 1
    return {
        "clips": clips,
        "hours": hours,
        "speakers": {s: sum(1 for p in plan.speakers if p.split == s) for s in SPLITS},
        "sample_rates": dict(sorted(rates.items(), reverse=True)),
        "stereo_clips": sum(1 for r in results.values() if r.channels == 2),
        "seconds": round(seconds, 2),
        "skipped": False,
    }


def _read_stamp(out: Path) -> dict | None:
    try:
        return json.loads((out / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _corpus_complete(out: Path) -> bool:
    """All TSVs present and every clip listed in clip_durations.tsv exists."""
    names = [f"{s}.tsv" for s in SPLITS] + ["validated.tsv", *OTHER_TSVS, DURATIONS_TSV]
    if not all((out / n).is_file() for n in names):
        return False
    lines = (out / DURATIONS_TSV).read_text(encoding="utf-8").splitlines()[1:]
    return all((out / "clips" / line.split("\t")[0]).is_file() for line in lines)


def _summary_from_stamp(stamp: dict) -> dict:
    summary = dict(stamp["summary"])
    summary["sample_rates"] = {int(k): v for k, v in summary["sample_rates"].items()}
    summary["skipped"] = True
    return summary


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


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def synthesize(out: Path, lang: str = "fr", hours: float = 5.0, seed: int = 0,
               jobs: int | None = None, num_clips: int | None = None,
               progress: bool = True) -> dict:
    """Write a synthetic Common Voice language folder at `out` (e.g. data/demo/fr).

    `num_clips`, when given, overrides `hours`. `jobs=None` uses every core; the output is
    byte-identical whatever `jobs` is. If `out` already holds a complete corpus made with
    the same parameters, nothing is redone and its summary is returned ("skipped": True).

    Returns {"clips", "hours", "speakers" (per split), "sample_rates", "stereo_clips",
    "seconds", "skipped"}.
    """
    if lang not in SUPPORTED_LANGS:
        raise ValueError(f"the synthetic corpus exists for {', '.join(SUPPORTED_LANGS)} only "
                         f"(its sentence generator and espeak-ng voices are French); "
                         f"got lang={lang!r}")
    if num_clips is None:
        if hours <= 0:
            raise ValueError(f"hours must be > 0, got {hours}")
        num_clips = max(3, round(hours * 3600 / SynthConfig.mean_clip_seconds))
    cfg = SynthConfig(lang=lang, seed=seed, num_clips=int(num_clips))
    split_counts(cfg.num_clips, cfg)  # fails on too few clips before touching the disk
    out = Path(out)
    params = json.loads(json.dumps(asdict(cfg)))  # tuples -> lists, as the stamp holds them

    stamp = _read_stamp(out)
    if stamp is not None and stamp.get("complete") and stamp.get("config") == params \
            and _corpus_complete(out):
        return _summary_from_stamp(stamp)
    if stamp is None and _has_foreign_corpus(out, lang):
        raise CorpusExistsError(f"{out} holds a Common Voice corpus that this generator did "
                                f"not make (no {STAMP}); refusing to overwrite it: choose "
                                f"another --out")

    variants = check_espeak()
    start = time.time()
    (out / "clips").mkdir(parents=True, exist_ok=True)
    _write_atomic(out / STAMP, json.dumps({"config": params, "complete": False}, indent=2))
    plan = make_plan(out, cfg, variants)
    if stamp is not None:  # an earlier synthetic corpus: drop its clips the plan lacks
        _remove_stale_clips(out, lang, {Path(j.path).name for j in plan.jobs})

    jobs = (os.cpu_count() or 1) if jobs is None or jobs <= 0 else jobs
    results: dict[int, ClipResult] = {}
    bar = tqdm(total=len(plan.jobs), desc=f"synth {lang}", unit="clip", disable=not progress)
    try:
        if jobs == 1:
            for job in plan.jobs:
                r = render_clip(job)
                results[r.index] = r
                bar.update()
        else:
            with mp.get_context("spawn").Pool(jobs) as pool:
                for r in pool.imap_unordered(render_clip, plan.jobs, chunksize=4):
                    results[r.index] = r
                    bar.update()
    finally:
        bar.close()

    write_tsvs(out, plan, results)
    summary = summarize(plan, results, time.time() - start)
    _write_atomic(out / STAMP, json.dumps({"config": params, "complete": True,
                                           "summary": summary}, indent=2))
    return summary


def _clip_pattern(lang: str) -> re.Pattern:
    return re.compile(rf"common_voice_{re.escape(lang)}_\d+\.mp3(\.tmp)?$")


def _has_foreign_corpus(out: Path, lang: str) -> bool:
    """TSVs or clips in `out` without our stamp: a real release, never to be touched."""
    if (out / "validated.tsv").exists():
        return True
    clips = out / "clips"
    pattern = _clip_pattern(lang)
    return clips.is_dir() and any(pattern.match(p.name) for p in clips.iterdir())


def _remove_stale_clips(out: Path, lang: str, keep: set[str]) -> None:
    """Delete clips of an earlier synthetic corpus in `out` that the new plan lacks."""
    pattern = _clip_pattern(lang)
    for p in (out / "clips").iterdir():
        if pattern.match(p.name) and p.name not in keep:
            p.unlink()
