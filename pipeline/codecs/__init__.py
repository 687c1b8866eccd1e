"""The feature codecs, one file each: how a shard sample stores its [T, n_mels] log-Mel features.

A codec module defines `CODEC`, an instance of a `Codec` subclass: its name (what
dataset.json's `feature_codec` says), the tar member extension its samples use, what decoding
gives (dtype), the bytes a value takes (the dry run's disk estimate) and the three functions
`encode`, `decode`, `stored`. pipeline/feature_codecs.py finds every module here and
dispatches by name or by member extension: a new codec is a new file in this folder (and its
tests). How the two here were chosen, with their bytes and errors: docs/RESULTS.md part 8.
"""

from __future__ import annotations

import numpy as np


# What a member may claim before anything is allocated for it: a crafted header of a few KB
# claiming 5 M frames made the readers allocate gigabytes (6 GiB in one array). An hour of 10 ms
# frames is far past any clip a build keeps (--max-duration, minutes at most).
MAX_FRAMES = 360_000
MAX_N_MELS = 1024


class FeatureDecodeError(ValueError):
    """A sample's features that cannot be decoded (truncated, corrupt, unknown codec)."""


def check_shape(frames, n_mels, want_n_mels: int | None = None, want_frames: int | None = None) -> None:
    """FeatureDecodeError unless a member's claimed [frames, n_mels] is sane and, where the
    reader knows them (the dataset's n_mels, the index's frame count), the expected one."""
    if not (isinstance(frames, int) and 1 <= frames <= MAX_FRAMES):
        raise FeatureDecodeError(f"features claim {frames} frames (expected 1 to {MAX_FRAMES})")
    if not (isinstance(n_mels, int) and 1 <= n_mels <= MAX_N_MELS):
        raise FeatureDecodeError(f"features claim {n_mels} mel bins (expected 1 to {MAX_N_MELS})")
    if want_n_mels is not None and n_mels != want_n_mels:
        raise FeatureDecodeError(f"features have {n_mels} mel bins, the dataset {want_n_mels}")
    if want_frames is not None and frames != want_frames:
        raise FeatureDecodeError(f"features have {frames} frames, the index says {want_frames}")


class Codec:
    name: str = ""
    member: str = ""  # the tar member's extension: <key>.<member>
    dtype = np.float32  # what `decode` gives
    bytes_per_value: float = 2.0  # measured mean, for the disk estimate
    header_bytes: int = 0  # a member's fixed bytes besides its values

    def encode(self, feats: np.ndarray) -> bytes:
        """float [T, n_mels] -> the member's bytes (ValueError for non-finite features)."""
        raise NotImplementedError

    def decode(self, buf, n_mels: int | None = None, frames: int | None = None) -> np.ndarray:
        """The member's bytes (bytes or memoryview) -> [T, n_mels]; FeatureDecodeError if damaged,
        or (checked from its header, before anything is allocated) not of a sane shape, or not
        of the `n_mels` / `frames` the reader expects (`check_shape`)."""
        raise NotImplementedError

    def stored(self, feats: np.ndarray) -> np.ndarray:
        """float [T, n_mels] -> what `decode(encode(feats))` gives, without encoding."""
        raise NotImplementedError
