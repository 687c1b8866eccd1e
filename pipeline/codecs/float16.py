"""float16 `.npy`: the format before codecs (2 bytes a value, decoded without a copy)."""

from __future__ import annotations

import ast
import functools
import io
import math

import numpy as np

from pipeline.codecs import Codec, FeatureDecodeError, check_shape


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


@functools.lru_cache(maxsize=4096)
def _npy_header(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    d = ast.literal_eval(header.decode("latin1"))
    return np.lib.format.descr_to_dtype(d["descr"]), tuple(d["shape"]), bool(d["fortran_order"])


def load_npy(buf, check=None) -> np.ndarray:
    """np.load of a .npy held in bytes or a memoryview, without copying the array data
    (read-only result); `check(shape)` is called on the header's shape before any data is read."""
    head = bytes(buf[:12])
    if head[:6] != b"\x93NUMPY" or head[6] not in (1, 2, 3):
        return np.load(io.BytesIO(bytes(buf)), allow_pickle=False)
    start = 10 if head[6] == 1 else 12
    length = int.from_bytes(head[8:start], "little")
    dtype, shape, fortran = _npy_header(bytes(buf[start:start + length]))
    if check is not None:
        check(shape)
    if fortran or dtype.hasobject:
        return np.load(io.BytesIO(bytes(buf)), allow_pickle=False)
    return np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=start + length).reshape(shape)


class Float16(Codec):
    name, member, dtype = "float16", "feats.npy", np.float16
    bytes_per_value, header_bytes = 2.0, 128  # np.save's header is padded to 128 bytes

    def encode(self, feats: np.ndarray) -> bytes:
        return npy_bytes(np.asarray(feats, dtype=np.float16))

    def decode(self, buf, n_mels: int | None = None, frames: int | None = None) -> np.ndarray:
        def check(shape):
            if len(shape) != 2:
                raise FeatureDecodeError(f"float16 features of shape {list(shape)}, not [frames, n_mels]")
            check_shape(shape[0], shape[1], n_mels, frames)

        try:
            return load_npy(buf, check)
        except FeatureDecodeError:
            raise
        except (ValueError, SyntaxError, KeyError, TypeError) as e:
            raise FeatureDecodeError(f"unreadable float16 features ({type(e).__name__}: {e})") from None

    def stored(self, feats: np.ndarray) -> np.ndarray:
        return np.asarray(feats, dtype=np.float16)


CODEC = Float16()
