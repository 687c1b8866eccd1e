"""Feature codecs: how a shard sample stores its [T, n_mels] log-Mel features.

Part of the shard format (`pipeline.shardformat` re-exports every name here and is what
readers and writers import): a codec turns features into one tar member, `<key>.<ext>`,
and `decode_features` turns any sample back, whatever codec wrote it, so a folder written
before codecs (float16 `.feats.npy`, no `feature_codec` in its dataset.json) still reads.
The member names are defined here so that the codec and its extension cannot drift apart.
"""

from __future__ import annotations

import ast
import functools
import io
import math
import struct
import zlib

import numpy as np

FEATS = "feats.npy"  # member extensions of a sample's features: the float16 codec's,
FEATS_QDELTA = "feats.qd"  # the qdelta codec's


# --------------------------------------------------------------------------------------
# the npy codec
# --------------------------------------------------------------------------------------
def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


@functools.lru_cache(maxsize=4096)
def _npy_header(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    d = ast.literal_eval(header.decode("latin1"))
    return np.lib.format.descr_to_dtype(d["descr"]), tuple(d["shape"]), bool(d["fortran_order"])


def load_npy(buf) -> np.ndarray:
    """np.load of a .npy held in bytes or a memoryview, without copying the array data
    (read-only result)."""
    head = bytes(buf[:12])
    if head[:6] != b"\x93NUMPY" or head[6] not in (1, 2, 3):
        return np.load(io.BytesIO(bytes(buf)), allow_pickle=False)
    start = 10 if head[6] == 1 else 12
    length = int.from_bytes(head[8:start], "little")
    dtype, shape, fortran = _npy_header(bytes(buf[start:start + length]))
    if fortran or dtype.hasobject:
        return np.load(io.BytesIO(bytes(buf)), allow_pickle=False)
    return np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=start + length).reshape(shape)


# --------------------------------------------------------------------------------------
# feature codecs: how a sample's [T, n_mels] features are stored
# --------------------------------------------------------------------------------------
# Measured on the demo corpus (150 clips, 4.3 M values; bench/bench_codec.py repeats it):
#                                                  bytes a value  largest error  decode / utterance
#   float16 .npy                                   2.00           0.004          13 us (no copy)
#   8-bit per bin, offset + scale (Kaldi's idea)   1.02           0.038
#     + zstd                                       0.88           0.038
#   quantised to 1/16 nat, time delta, zstd        0.80           0.031
#   quantised to 1/8 nat, 2-D delta, zstd          0.63           0.0625         ~280 us
#   quantised to 1/8 nat, time delta, zstd         0.67           0.0625         ~90 us   <- qdelta
# Log-Mel noise is what costs bytes (the periodogram's own scatter, several dB), so a byte
# coder alone gains little and only the quantisation step buys much: 1/8 nat is 0.27 dB, a
# fiftieth of a bin's spread over a corpus (its CMVN std is 2-4 nats). The delta along time is
# undone by one cumulative sum down the frames, vectorised across the bins (the 2-D delta's
# sum along the bins is a slow sequential loop in numpy, for 6 % of the bytes). Decoding gives
# float32, which the batch wants: numpy's float16 -> float32 conversion, which float16 shards
# pay in `collate`, costs about as much as the decoding. A per-sample CRC32 lets the loader
# catch a flipped bit that float16 would pass on as a wrong value.
FEATURE_CODECS = ("qdelta", "float16")
DEFAULT_CODEC = "qdelta"
OLD_CODEC = "float16"  # what a dataset.json without `feature_codec` holds (every build before codecs)
CODEC_MEMBER = {"float16": FEATS, "qdelta": FEATS_QDELTA}  # codec -> member extension
CODEC_DTYPE = {"float16": np.float16, "qdelta": np.float32}  # codec -> what decode_features gives
QDELTA_STEP = 0.125  # nats: every decoded value is within QDELTA_STEP / 2 of the computed one
_QDELTA_MAGIC = b"QD1\0"
_QDELTA_HEAD = "<4sIIfII"  # magic, frames, n_mels, step, escapes, crc32 of the rest
# Bytes a value of each codec takes, for the disk estimate of `asr-cli shards --dry-run`
# (measured on the demo corpus, whose shards it predicts within 0.3 %; white noise 30 dB
# under the speech changed nothing, and real releases, not measured, may take a few per cent
# more: bench/bench_codec.py prints both, docs/RESULTS.md part 8).
CODEC_BYTES_PER_VALUE = {"float16": 2.0, "qdelta": 0.67}


class FeatureDecodeError(ValueError):
    """A sample's features that cannot be decoded (truncated, corrupt, unknown codec)."""


def check_codec(name: str) -> str:
    if name not in FEATURE_CODECS:
        raise ValueError(f"unknown feature codec {name!r}: choose one of {', '.join(FEATURE_CODECS)}")
    return name


def dataset_codec(dataset: dict) -> str:
    """The feature codec a dataset.json names (float16 for folders built before codecs)."""
    return dataset.get("feature_codec", OLD_CODEC)


_NOT_FINITE = -(2**31)


@functools.lru_cache(maxsize=1)
def _f16_quantised() -> np.ndarray:
    """int32 [65536]: each float16 bit pattern's value in steps (_NOT_FINITE for inf / NaN)."""
    values = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
    with np.errstate(invalid="ignore"):
        q = np.rint(values * (1.0 / QDELTA_STEP))
    return np.where(np.isfinite(q), q, _NOT_FINITE).astype(np.int32)


@functools.lru_cache(maxsize=1)
def _zstd():
    import pyarrow as pa  # already a dependency (the tables): its zstd, no other package

    return pa.Codec("zstd", compression_level=1)  # level 3: the same bytes, 1.6x the time


def _quantised(x: np.ndarray) -> np.ndarray:
    """float [T, n_mels] -> int32 [T, n_mels]: each value in qdelta steps (ValueError if not finite)."""
    if x.ndim != 2:
        raise ValueError(f"features must be [T, n_mels], got shape {x.shape}")
    if x.dtype == np.float16:  # what the pipeline makes: a table lookup, 3x faster than numpy's conversion
        q = _f16_quantised()[x.view(np.uint16)]
    else:
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise ValueError("features hold non-finite values")
        q = np.rint(np.clip(x * (1.0 / QDELTA_STEP), -(2**30), 2**30)).astype(np.int32)
    if (q == _NOT_FINITE).any():  # the float16 table's mark of inf / NaN
        raise ValueError("features hold non-finite values")
    return q


def stored_values(feats: np.ndarray, codec: str) -> np.ndarray:
    """float [T, n_mels] -> the values `decode_features` will give back for them under `codec`
    (float16 as float16, qdelta's multiples of QDELTA_STEP as float32), without encoding. The
    builder's CMVN sums are taken over these, so the mean a bin is normalised by is the mean
    of what is stored: a constant bin (the log floor of band-limited audio) normalises to 0
    under every codec (pipeline.featstats says what happened when it did not)."""
    if codec == "float16":
        return np.asarray(feats, dtype=np.float16)
    check_codec(codec)
    return np.multiply(_quantised(np.asarray(feats)), np.float32(QDELTA_STEP), dtype=np.float32)


def encode_features(feats: np.ndarray, codec: str) -> tuple[str, bytes]:
    """float [T, n_mels] -> (member extension, bytes) in `codec`."""
    if codec == "float16":
        return FEATS, npy_bytes(np.asarray(feats, dtype=np.float16))
    if codec != "qdelta":
        check_codec(codec)
    x = np.asarray(feats)
    q = _quantised(x)
    r = np.empty_like(q)  # the first frame as it is, then each frame minus the one before
    r[:1] = q[:1]
    np.subtract(q[1:], q[:-1], out=r[1:])
    z = ((r << 1) ^ (r >> 31)).view(np.uint32)  # zigzag: small magnitudes, small codes
    escaped = z >= 255
    codes = np.where(escaped, 255, z).astype(np.uint8)
    raw = codes.tobytes() + z[escaped].astype("<u4").tobytes()
    payload = _zstd().compress(raw, asbytes=True)
    head = struct.pack(_QDELTA_HEAD[:-1], _QDELTA_MAGIC, x.shape[0], x.shape[1], QDELTA_STEP, int(escaped.sum()))
    return FEATS_QDELTA, head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


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


def _decode_qdelta(buf) -> np.ndarray:
    size = struct.calcsize(_QDELTA_HEAD)
    if len(buf) < size:
        raise FeatureDecodeError(f"qdelta features of {len(buf)} bytes, shorter than their header (truncated)")
    magic, frames, n_mels, step, escapes, crc = struct.unpack_from(_QDELTA_HEAD, buf)
    if magic != _QDELTA_MAGIC:
        raise FeatureDecodeError(f"not qdelta features (magic {bytes(magic)!r})")
    payload = buf[size:]
    if zlib.crc32(payload, zlib.crc32(bytes(buf[:size - 4]))) != crc:
        raise FeatureDecodeError("qdelta features fail their CRC32 check (truncated or corrupt)")
    n = frames * n_mels
    try:
        raw = _zstd().decompress(payload, n + 4 * escapes, asbytes=True)
    except Exception as e:  # pyarrow's error types differ across versions
        raise FeatureDecodeError(f"qdelta features do not decompress ({e})") from None
    if len(raw) != n + 4 * escapes:
        raise FeatureDecodeError("qdelta features decompress to the wrong size")
    codes = np.frombuffer(raw, np.uint8, n)
    z = codes.astype(np.int32)
    if escapes:
        at = np.flatnonzero(codes == 255)
        if len(at) != escapes:
            raise FeatureDecodeError("qdelta features hold the wrong number of escapes")
        z[at] = np.frombuffer(raw, "<u4", escapes, offset=n)
    q = ((z >> 1) ^ -(z & 1)).reshape(frames, n_mels)
    # int32 on purpose: numpy accumulates int32 down the frames 3.5x faster than float32
    np.add.accumulate(q, axis=0, out=q)
    return np.multiply(q, np.float32(step), dtype=np.float32)


def sample_codec(sample: dict) -> str | None:
    """The codec of a sample's features (by its member's extension); None without features."""
    return next((c for c, ext in CODEC_MEMBER.items() if ext in sample), None)


def decode_features(sample: dict) -> np.ndarray:
    """A sample's features [T, n_mels], whatever codec stored them: float16 as stored (no
    copy) for float16, float32 for qdelta. The one call every reader (loader, verify, plot,
    tests) goes through; FeatureDecodeError (one line) for features missing, truncated or corrupt."""
    codec = sample_codec(sample)
    if codec is None:
        raise FeatureDecodeError(f"no features (a member .{' or .'.join(CODEC_MEMBER.values())})")
    buf = sample[CODEC_MEMBER[codec]]
    if codec == "qdelta":
        return _decode_qdelta(buf)
    try:
        return load_npy(buf)
    except (ValueError, SyntaxError, KeyError, TypeError) as e:
        raise FeatureDecodeError(f"unreadable float16 features ({type(e).__name__}: {e})") from None


def estimate_sample_bytes(frames: int, n_mels: int, codec: str, meta_bytes: int = 300) -> int:
    """Bytes one sample of `frames` frames takes in a shard tar under `codec`: its two members'
    512-byte headers and padding included (exact for float16, the measured mean for qdelta)."""
    if codec == "float16":
        feats = 128 + 2 * frames * n_mels  # np.save's header is padded to 128 bytes
    else:
        feats = struct.calcsize(_QDELTA_HEAD) + round(CODEC_BYTES_PER_VALUE[check_codec(codec)] * frames * n_mels)
    padded = lambda size: 512 + (size + 511) // 512 * 512  # noqa: E731  (header + data blocks)
    return padded(feats) + padded(meta_bytes)
