"""qdelta, the default: quantised to 1/8 nat, each frame's difference from the one before as
bytes (zigzag, escapes for large steps), zstd-packed, with a CRC32 (0.67 bytes a value).

Chosen among six candidates on the demo corpus (docs/RESULTS.md part 8 has the table): log-Mel
noise is what costs bytes, so a byte coder alone gains little and only the quantisation step
buys much; 1/8 nat (0.27 dB) is a fiftieth of a speech bin's spread. The delta along time is
undone by one cumulative sum down the frames (~90 us an utterance; a 2-D delta saves 6 % more
for 3x the decode time). Decoding gives the float32 the batch wants, and the CRC32 catches a
flipped bit that float16 would pass on as a wrong value.
"""

from __future__ import annotations

import functools
import struct
import zlib

import numpy as np

from pipeline.codecs import Codec, FeatureDecodeError, check_shape

QDELTA_STEP = 0.125  # nats: every decoded value is within QDELTA_STEP / 2 of the computed one
_QDELTA_MAGIC = b"QD1\0"
_QDELTA_HEAD = "<4sIIfII"  # magic, frames, n_mels, step, escapes, crc32 of the rest
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


def _encode(feats: np.ndarray) -> bytes:
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
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def _decode_qdelta(buf, want_n_mels: int | None = None, want_frames: int | None = None) -> np.ndarray:
    size = struct.calcsize(_QDELTA_HEAD)
    if len(buf) < size:
        raise FeatureDecodeError(f"qdelta features of {len(buf)} bytes, shorter than their header (truncated)")
    magic, frames, n_mels, step, escapes, crc = struct.unpack_from(_QDELTA_HEAD, buf)
    if magic != _QDELTA_MAGIC:
        raise FeatureDecodeError(f"not qdelta features (magic {bytes(magic)!r})")
    payload = buf[size:]
    if zlib.crc32(payload, zlib.crc32(bytes(buf[:size - 4]))) != crc:
        raise FeatureDecodeError("qdelta features fail their CRC32 check (truncated or corrupt)")
    if step != np.float32(QDELTA_STEP):  # a valid CRC does not make a header honest: its step scales every value
        raise FeatureDecodeError(f"qdelta features of step {step!r}, not the codec's {QDELTA_STEP}")
    check_shape(frames, n_mels, want_n_mels, want_frames)  # before anything of that size is allocated
    n = frames * n_mels
    if escapes > n:
        raise FeatureDecodeError(f"qdelta features claim {escapes} escapes for {n} values")
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


class QDelta(Codec):
    name, member, dtype = "qdelta", "feats.qd", np.float32
    # measured on the demo corpus, whose shards the dry run predicts within 0.3 % (white noise
    # 30 dB under the speech changed nothing; 8 kHz audio takes less: docs/RESULTS.md part 8)
    bytes_per_value, header_bytes = 0.67, struct.calcsize(_QDELTA_HEAD)

    def encode(self, feats: np.ndarray) -> bytes:
        return _encode(feats)

    def decode(self, buf, n_mels: int | None = None, frames: int | None = None) -> np.ndarray:
        return _decode_qdelta(buf, n_mels, frames)

    def stored(self, feats: np.ndarray) -> np.ndarray:
        return np.multiply(_quantised(np.asarray(feats)), np.float32(QDELTA_STEP), dtype=np.float32)


CODEC = QDelta()
