"""Planning the corpus: speakers, voices, sentences, file names, rates and votes.

`make_plan` decides everything about every clip before any audio exists, from the config
alone (seeded numpy), so the rendering that follows can run in any number of processes.
Speakers are disjoint across train/dev/test, and ~15 % of the voice variants are held out
of train entirely, so test measures generalisation to unseen voices. As in real releases,
validated.tsv also holds clips in no split, most by train speakers and a few by dev/test
speakers (half of these re-reading a dev/test sentence): what `--train-set validated` must
keep out of train. Those few are planned last, from their own random stream, so adding them
changed no other clip of a seed (its train/dev/test TSVs and audio stayed byte-identical).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cv import SPLITS
from synth.french import generate_sentences

SYNTH_VERSION = 2  # bump when a configuration's output changes (sentences included)
MALE, FEMALE = "male_masculine", "female_feminine"

# A speaker's espeak-ng pitch (-p, 0-99) and rate (-s, words a minute): normal(mean, sd),
# rounded, clipped to [low, high] -> (mean, sd, low, high). bench/external_fr.py voices its
# "corpus prosody" clips from these and its outside voices beyond them.
SPEAKER_PITCH = (50, 12, 15, 85)
SPEAKER_RATE = (152, 15, 125, 200)

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


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the corpus; saved in the stamp next to what it made."""

    lang: str = "fr"
    seed: int = 0
    num_clips: int = 0  # total clips, the train speakers' validated-only extras included
    split_shares: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, dev, test
    extra_validated_share: float = 0.05  # validated clips in no split, by train speakers
    eval_speaker_extra_share: float = 0.02  # more of them, by dev/test speakers (on top of num_clips)
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


@dataclass
class Plan:
    """The whole corpus before any audio exists: who reads what, where it goes."""

    config: SynthConfig
    speakers: list[Speaker]
    jobs: list[ClipJob]
    split_of: list[str]  # per clip: train | dev | test | extra
    votes: list[tuple[int, int]]  # per clip: up_votes, down_votes


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


def clipped_normal(rng: np.random.Generator, spec: tuple[float, float, float, float]) -> int:
    """One draw of SPEAKER_PITCH / SPEAKER_RATE: round(normal(mean, sd)) clipped to [low, high]."""
    mean, sd, low, high = spec
    return int(np.clip(round(rng.normal(mean, sd)), low, high))


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
        pitch=clipped_normal(rng, SPEAKER_PITCH),
        pitch_range=int(rng.integers(30, 101)),
        rate=clipped_normal(rng, SPEAKER_RATE),
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
    split_of = [s for s, _, _ in assignments]
    _add_eval_speaker_extras(cfg, out, assignments, jobs, split_of, votes, numbers)
    return Plan(cfg, speakers, jobs, split_of, votes)


def _add_eval_speaker_extras(cfg: SynthConfig, out: Path, assignments: list[tuple[str, Speaker, str]],
                             jobs: list[ClipJob], split_of: list[str], votes: list[tuple[int, int]],
                             numbers: list[int]) -> None:
    """Validated-only clips of dev/test speakers, appended in place: the even ones re-read a
    train sentence (only their speaker keeps them out of train), the odd ones a sentence of
    their own split read by someone else (speaker and sentence both). Their own random stream
    and indices after every other clip's, so no other clip changes."""
    n = int(cfg.num_clips * cfg.eval_speaker_extra_share) if cfg.num_clips >= 20 else 0
    n = max(1, n) if cfg.num_clips >= 20 else 0
    rng = np.random.default_rng([cfg.seed, 0xE5A])
    eval_reads = [(spk, sentence) for split, spk, sentence in assignments if split in ("dev", "test")]
    train_sentences = sorted({sentence for split, _, sentence in assignments if split == "train"})
    taken = set(numbers)
    rates_v = [r for r, _ in cfg.rate_shares]
    rates_p = np.array([p for _, p in cfg.rate_shares])
    for k in range(n):
        spk = eval_reads[int(rng.integers(len(eval_reads)))][0]
        own = sorted({s for other, s in eval_reads if other.split == spk.split and other.key != spk.key}
                     - {s for other, s in eval_reads if other.key == spk.key})
        pool = own if k % 2 and own else train_sentences
        sentence = pool[int(rng.integers(len(pool)))]
        number = int(rng.integers(10_000_000, 100_000_000))
        while number in taken:
            number = int(rng.integers(10_000_000, 100_000_000))
        taken.add(number)
        jobs.append(ClipJob(index=len(jobs), seed=cfg.seed,
                            path=str(out / "clips" / f"common_voice_{cfg.lang}_{number}.mp3"),
                            sentence=sentence, speaker=spk,
                            sample_rate=int(rng.choice(rates_v, p=rates_p / rates_p.sum())), channels=1,
                            max_speech_seconds=cfg.max_speech_seconds, silence_seconds=cfg.silence_seconds,
                            snr_db=cfg.snr_db, peak_dbfs=cfg.peak_dbfs))
        split_of.append("extra")
        votes.append((2, 0))
