"""What the pipeline's configs hold, without torch: `FeatureConfig` (what the features are:
pipeline/audio.py computes them) and `BuildConfig` (every default of `asr-cli shards`:
pipeline/build.py and archive_build.py build by it). Fields made with `option(...)` are
command-line options (commands/base.py's `config_options`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.cv import SpeakerCap
from pipeline.feature_codecs import DEFAULT_CODEC
from pipeline.options import AT_LEAST_0, AT_LEAST_1, POSITIVE, option
from pipeline.selection import Selection

DEFAULT_LANG = "fr"  # the Common Voice locale commands take when none is given (the demo's)


@dataclass(frozen=True)
class FeatureConfig:
    """What the features are; saved with the shards and the checkpoints."""

    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    f_min: float = 0.0
    f_max: float = 8000.0
    log_offset: float = 1e-6
    resample_quality: str = "HQ"  # soxr quality recipe
    dtype: str = "float16"  # storage type in the shards

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames the features of `num_samples` samples (at `sample_rate`) have."""
        return 1 + num_samples // self.hop_length

    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class BuildConfig:
    cv_root: Path  # a folder (Scripted or Spontaneous Speech: pipeline.releases); an archive: pipeline.archive_build
    lang: str
    out: Path
    jobs: int = option(0, "Worker processes (0: every core).", bounds=AT_LEAST_0)
    shard_size: int = option(1000, "Clips per shard (about 70 MB of features at 5 s a clip).", bounds=AT_LEAST_1)
    seed: int = option(0, "Seed of the train shuffle.", bounds=AT_LEAST_0)
    min_duration: float = option(0.5, "Clips shorter than this (seconds) are rejected.", bounds=AT_LEAST_0)
    max_duration: float = option(20.0, "Clips longer than this (seconds) are rejected (too_long). Spontaneous Speech "
                                       "answers last 25 s on average, up to minutes: pass 60 there (and train with "
                                       "--max-frames 6000).", bounds=POSITIVE)
    max_chars_per_second: float = 25.0  # faster "speech" means text and audio do not match
    train_set: str = option("train", "'train' (train.tsv) or 'validated' (validated.tsv: more hours). Either way no "
                                     "dev/test speaker (client_id) or sentence reaches train; each clip left out is a "
                                     "reject with its reason, and the summary gives the hours left out and those "
                                     "gained over train.tsv (kept train clips train.tsv does not list).")
    force: bool = option(False, "Rebuild everything instead of resuming.")
    progress: bool = option(True, "Show a progress bar.")
    features: FeatureConfig = field(default_factory=FeatureConfig)
    speeds: tuple[float, ...] = ()  # speed-perturbed copies of the train split (pipeline.build.parse_speeds)
    codec: str = option(DEFAULT_CODEC, "How features are stored: qdelta (quantised to 1/8 nat, time delta, zstd: a "
                                       "third of float16's bytes, every value within 0.0625 of float16's) or float16 "
                                       "(the format before codecs).")
    max_per_speaker: SpeakerCap | None = None  # train clips / audio of any one speaker (None: no cap)
    space_check: bool = option(True, "Refuse, before writing anything, a build whose estimated disk exceeds the free "
                                     "space of --out. A separate flag from --force, which rebuilds everything (a "
                                     "resume would lose its shards); without the check a build that fills the disk "
                                     "still stops cleanly, its finished shards kept.",
                               flag=("--space-check/--no-space-check",))
    selection: Selection = field(default_factory=Selection)  # --sentence-domain, --variant, --drop-quality-tags

    def num_jobs(self) -> int:
        return self.jobs if self.jobs > 0 else len(os.sched_getaffinity(0))
