"""Feature codecs: how a shard sample stores its [T, n_mels] log-Mel features.

Part of the shard format (`pipeline.shardformat` re-exports every name here and is what
readers and writers import): a codec turns features into one tar member, `<key>.<ext>`,
and `decode_features` turns any sample back, whatever codec wrote it, so a folder written
before codecs (float16 `.feats.npy`, no `feature_codec` in its dataset.json) still reads.
The codecs themselves are one file each in pipeline/codecs/, found there by `CODECS`: a new
one is its file (and its tests); everything below dispatches by name or member extension.
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np

import pipeline.codecs as _package
from pipeline.codecs import Codec, FeatureDecodeError  # noqa: F401  (re-exported)
from pipeline.codecs.float16 import load_npy, npy_bytes  # noqa: F401  (re-exported: .npy helpers)
from pipeline.codecs.qdelta import QDELTA_STEP  # noqa: F401  (re-exported: the default's error)


def _discover() -> dict[str, Codec]:
    found = {}
    for info in sorted(pkgutil.iter_modules(_package.__path__), key=lambda m: m.name):
        codec = getattr(importlib.import_module(f"{_package.__name__}.{info.name}"), "CODEC", None)
        if isinstance(codec, Codec):
            found[codec.name] = codec
    return found


CODECS: dict[str, Codec] = _discover()  # name -> codec, every module of pipeline/codecs/
FEATURE_CODECS = tuple(CODECS)
DEFAULT_CODEC = "qdelta"
OLD_CODEC = "float16"  # what a dataset.json without `feature_codec` holds (every build before codecs)
CODEC_MEMBER = {name: c.member for name, c in CODECS.items()}  # codec -> member extension
CODEC_DTYPE = {name: c.dtype for name, c in CODECS.items()}  # codec -> what decode_features gives
CODEC_BYTES_PER_VALUE = {name: c.bytes_per_value for name, c in CODECS.items()}  # the dry run's estimate
FEATS, FEATS_QDELTA = CODEC_MEMBER["float16"], CODEC_MEMBER["qdelta"]  # the two members of older code's names


def check_codec(name: str) -> str:
    if name not in CODECS:
        raise ValueError(f"unknown feature codec {name!r}: choose one of {', '.join(FEATURE_CODECS)}")
    return name


def dataset_codec(dataset: dict) -> str:
    """The feature codec a dataset.json names (float16 for folders built before codecs)."""
    return dataset.get("feature_codec", OLD_CODEC)


def stored_values(feats: np.ndarray, codec: str) -> np.ndarray:
    """float [T, n_mels] -> the values `decode_features` will give back for them under `codec`
    (float16 as float16, qdelta's multiples of QDELTA_STEP as float32), without encoding. The
    builder's CMVN sums are taken over these, so the mean a bin is normalised by is the mean
    of what is stored: a constant bin (the log floor of band-limited audio) normalises to 0
    under every codec (pipeline.featstats says what happened when it did not)."""
    return CODECS[check_codec(codec)].stored(feats)


def encode_features(feats: np.ndarray, codec: str) -> tuple[str, bytes]:
    """float [T, n_mels] -> (member extension, bytes) in `codec`."""
    c = CODECS[check_codec(codec)]
    return c.member, c.encode(feats)


class EncodedFeatures:
    """Features already in their codec's bytes (`encode_features`), with the [T, n_mels] shape they
    came from: what a build from an archive stages on disk until the shard is written (the writer
    stores them as they are, so the shard's bytes are those of encoding at write time)."""

    def __init__(self, feats: np.ndarray, codec: str):
        self.ext, self.data = encode_features(feats, codec)
        self.shape = tuple(feats.shape)

    @classmethod
    def stored(cls, ext: str, data: bytes, shape) -> "EncodedFeatures":
        obj = cls.__new__(cls)
        obj.ext, obj.data, obj.shape = ext, bytes(data), tuple(shape)
        return obj

    def member(self) -> tuple[str, bytes]:
        """(member extension, bytes), as `encode_features` gives them."""
        return self.ext, self.data


def sample_codec(sample: dict) -> str | None:
    """The codec of a sample's features (by its member's extension); None without features."""
    return next((c for c, ext in CODEC_MEMBER.items() if ext in sample), None)


def decode_features(sample: dict, n_mels: int | None = None, frames: int | None = None) -> np.ndarray:
    """A sample's features [T, n_mels], whatever codec stored them: float16 as stored (no
    copy) for float16, float32 for qdelta. The one call every reader (loader, verify, plot,
    tests) goes through; FeatureDecodeError (one line) for features missing, truncated or
    corrupt, or (checked before anything is allocated) of an absurd shape, or not the `n_mels`
    / `frames` the reader knows they must have (the dataset's, the index's)."""
    codec = sample_codec(sample)
    if codec is None:
        raise FeatureDecodeError(f"no features (a member .{' or .'.join(CODEC_MEMBER.values())})")
    return CODECS[codec].decode(sample[CODEC_MEMBER[codec]], n_mels, frames)


def estimate_sample_bytes(frames: int, n_mels: int, codec: str, meta_bytes: int = 300) -> int:
    """Bytes one sample of `frames` frames takes in a shard tar under `codec`: its two members'
    512-byte headers and padding included (exact for float16, the measured mean for qdelta)."""
    c = CODECS[check_codec(codec)]
    feats = c.header_bytes + round(c.bytes_per_value * frames * n_mels)
    padded = lambda size: 512 + (size + 511) // 512 * 512  # noqa: E731  (header + data blocks)
    return padded(feats) + padded(meta_bytes)
