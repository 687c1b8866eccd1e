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


class FeatureDecodeError(ValueError):
    """A sample's features that cannot be decoded (truncated, corrupt, unknown codec)."""


class Codec:
    name: str = ""
    member: str = ""  # the tar member's extension: <key>.<member>
    dtype = np.float32  # what `decode` gives
    bytes_per_value: float = 2.0  # measured mean, for the disk estimate
    header_bytes: int = 0  # a member's fixed bytes besides its values

    def encode(self, feats: np.ndarray) -> bytes:
        """float [T, n_mels] -> the member's bytes (ValueError for non-finite features)."""
        raise NotImplementedError

    def decode(self, buf) -> np.ndarray:
        """The member's bytes (bytes or memoryview) -> [T, n_mels]; FeatureDecodeError if damaged."""
        raise NotImplementedError

    def stored(self, feats: np.ndarray) -> np.ndarray:
        """float [T, n_mels] -> what `decode(encode(feats))` gives, without encoding."""
        raise NotImplementedError
