"""Per-bin statistics of a split's features: the CMVN of dataset.json and the dead-bin check.

The builder sums each clip's features as the shards store them (`feature_codecs.stored_values`:
what every reader decodes, so the mean is that of what is normalised, whatever the codec),
`cmvn_record` turns the train split's sums into dataset.json's `cmvn` (mean, std: the data's
own figures), and `applied_cmvn` is what training divides by and a checkpoint keeps: the std
floored at CMVN_STD_FLOOR.

Why a floor. 8 kHz recordings (telephone, many real voices) resampled to 16 kHz leave the mel
bins above ~3.9 kHz at the log floor, log(1e-6) = -13.8155, in almost every frame: their std
over a corpus is 1e-2 to 1e-4 nat (measured on espeak-ng clips turned into 8 kHz MP3s with
0.2 s of silence around them, as real recordings have). Divided by such a std, any change
to those values is magnified 100-10,000 times. The qdelta codec rounds to 1/8 nat, and the
floor sits on a rounding boundary (float16 stores it as -13.8125 = -110.5 steps), so every
frame of a dead bin came back 0.0625 nat off the CMVN mean: 625 standard deviations in 18
of 80 input bins, on every frame. The model stalled (63 % dev CER on real 8 kHz voices
against 3.8 % from float16 shards). A bin whose spread over a whole split is under 1 nat
(4.3 dB) carries next to nothing (a speech bin's is 2-5 nats), so dividing by at least 1 nat
leaves speech bins as they were and keeps a dead bin near zero, for every codec: a codec's
error of 0.0625 nat stays 0.0625 standard deviations at most.
"""

from __future__ import annotations

import math

import numpy as np

CMVN_STD_FLOOR = 1.0  # nats: the least std features are divided by (dead bins, see above)
DEAD_BIN_STD = CMVN_STD_FLOOR  # a bin whose std over a split is below this is reported as dead


class BinStats:
    """Running per-bin sums of [T, F] features: frames, sum [F], sum of squares [F] (float64)."""

    def __init__(self, frames: int = 0, total=(), total_sq=()):
        self.frames = int(frames)
        self.sum = np.asarray(total, np.float64)
        self.sumsq = np.asarray(total_sq, np.float64)

    @classmethod
    def of(cls, feats: np.ndarray) -> "BinStats":
        f64 = np.asarray(feats, np.float64)
        return cls(f64.shape[0], f64.sum(axis=0), np.square(f64).sum(axis=0))

    @classmethod
    def from_dict(cls, d: dict | None) -> "BinStats":
        """The `{"frames", "sum", "sumsq"}` a shard's build metadata holds (empty: no frames)."""
        if not d or not d.get("frames"):
            return cls()
        return cls(d["frames"], d["sum"], d["sumsq"])

    def to_dict(self) -> dict:
        return {"frames": self.frames, "sum": self.sum.tolist(), "sumsq": self.sumsq.tolist()}

    def __add__(self, other: "BinStats") -> "BinStats":
        if not other.frames:
            return self
        if not self.frames:
            return other
        return BinStats(self.frames + other.frames, self.sum + other.sum, self.sumsq + other.sumsq)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """mean [F], std [F] (float64); the variance is kept above 1e-8 (a std of at least 1e-4)."""
        mean = self.sum / self.frames
        return mean, np.sqrt(np.maximum(self.sumsq / self.frames - mean**2, 1e-8))


def total(parts) -> BinStats:
    out = BinStats()
    for p in parts:
        out = out + (p if isinstance(p, BinStats) else BinStats.from_dict(p))
    return out


def cmvn_record(stats: BinStats) -> dict:
    """dataset.json's `cmvn`: {"frames", "mean", "std"} of the train split (None without frames)."""
    if not stats.frames:
        return {"frames": 0, "mean": None, "std": None}
    mean, std = stats.mean_std()
    return {"frames": stats.frames, "mean": [round(float(x), 6) for x in mean],
            "std": [round(float(x), 6) for x in std]}


def applied_cmvn(cmvn: dict) -> dict:
    """A dataset.json `cmvn` as training applies it, and as a checkpoint records it: the std
    floored at CMVN_STD_FLOOR (a folder built before the floor reads the same way)."""
    if cmvn.get("std") is None:
        return dict(cmvn)
    std = [max(float(s), CMVN_STD_FLOOR) if math.isfinite(s) else s for s in cmvn["std"]]
    return {**cmvn, "std": std, "std_floor": CMVN_STD_FLOOR}


def dead_bins(std) -> list[int]:
    """Bins whose std over a split is under DEAD_BIN_STD: no signal there (band-limited audio)."""
    return [int(i) for i in np.flatnonzero(np.asarray(std, np.float64) < DEAD_BIN_STD)]


def bin_hz(features: dict, k: int) -> float:
    """Centre frequency (Hz) of mel bin k of the HTK mel filters `features` describes."""
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    lo, hi = mel(features.get("f_min", 0.0)), mel(features.get("f_max", features.get("sample_rate", 16000) / 2))
    m = lo + (k + 1) * (hi - lo) / (features["n_mels"] + 1)
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


def describe_dead_bins(bins: list[int], features: dict) -> str:
    """'18 of 80 mel bins (62-79, 3.9-8.0 kHz) ...' — one line for a summary or verify."""
    runs, start = [], bins[0]
    for a, b in zip(bins, bins[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    lo, hi = bin_hz(features, bins[0]) / 1000, bin_hz(features, bins[-1]) / 1000
    return (f"{len(bins)} of {features['n_mels']} mel bins ({', '.join(runs)}; {lo:.1f}-{hi:.1f} kHz) carry no "
            f"signal (std under {DEAD_BIN_STD:g} nat): band-limited audio, e.g. recordings made at 8 kHz. "
            f"Training divides them by a std of at least {CMVN_STD_FLOOR:g} nat, so they stay near zero; a model "
            "trained on them has learnt nothing of those frequencies")


def dead_bin_warnings(per_split: dict[str, list[int] | None], features: dict) -> list[str]:
    """One line per distinct set of dead bins, naming the splits that have it: 'train, dev: 19 of ...'."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for split, bins in per_split.items():
        if bins:
            groups.setdefault(tuple(bins), []).append(split)
    return [f"{', '.join(splits)}: {describe_dead_bins(list(bins), features)}" for bins, splits in groups.items()]
