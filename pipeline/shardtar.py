"""The shard tars: written and read here (lhotse Shar's idea: a format's writer and reader live
together). `ShardWriter` / `write_tar` write a shard deterministically (fixed member metadata,
sha256 while writing); `read_samples` streams a shard's samples with a fast reader of plain
tars (webdataset's for anything else: compressed, remote), grouped by webdataset's own
key / extension rule (`split_name`). Part of the shard format: pipeline.shardformat
re-exports every name, and is what the rest of the code imports.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from pipeline.feature_codecs import CODEC_MEMBER, DEFAULT_CODEC, EncodedFeatures, check_codec, encode_features

META = "json"  # the member extension of a sample's JSON (its features': pipeline.feature_codecs)


# --------------------------------------------------------------------------------------
# member names: the one key / extension rule
# --------------------------------------------------------------------------------------
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset.tariterators.base_plus_ext's


def split_name(name: str) -> tuple[str, str] | None:
    """`common_voice_fr_1.feats.npy` -> ("common_voice_fr_1", "feats.npy"): the key ends at
    the first dot of the file name, as webdataset reads it; None for a name without one."""
    m = _KEY.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def check_key(key: str) -> None:
    """ValueError unless every reader gives `key` back from `<key>.feats.npy` (no dot in it:
    `pipeline.cv.clip_id` turns the dots of a clip's file name into underscores)."""
    if not key or any(split_name(f"{key}.{ext}") != (key, ext) for ext in (*CODEC_MEMBER.values(), META)):
        raise ValueError(f"{key!r} cannot be a sample key: webdataset would split it at its first dot")


# --------------------------------------------------------------------------------------
# the writer
# --------------------------------------------------------------------------------------
class _HashingWriter(io.RawIOBase):
    def __init__(self, fh):
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self.fh.write(b)

    def tell(self) -> int:
        return self.size


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


class ShardWriter:
    """A webdataset tar with fixed member metadata (mtime 0, uid 0, mode 644), hashed while
    written: the same samples in the same order always give the same bytes.

        with ShardWriter(path, codec) as shard:
            shard.write(key, feats, meta)      # feats [T, n_mels] (stored in `codec`), meta JSON-able
        shard.size, shard.sha256
    """

    def __init__(self, path: Path, codec: str = DEFAULT_CODEC):
        self.path = Path(path)
        self.codec = check_codec(codec)
        self.size, self.sha256 = 0, ""

    def __enter__(self) -> "ShardWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "wb")
        self._hashing = _HashingWriter(self._fh)
        self._tar = tarfile.open(fileobj=self._hashing, mode="w", format=tarfile.PAX_FORMAT)
        return self

    def write(self, key: str, feats: np.ndarray | EncodedFeatures, meta: dict) -> None:
        check_key(key)
        ext, data = feats.member() if isinstance(feats, EncodedFeatures) else encode_features(feats, self.codec)
        _add_member(self._tar, f"{key}.{ext}", data)
        _add_member(self._tar, f"{key}.{META}", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode())

    def __exit__(self, *exc) -> None:
        try:
            self._tar.__exit__(*exc)  # the end-of-archive blocks, unless the block failed
        finally:
            self._fh.close()
        self.size, self.sha256 = self._hashing.size, self._hashing.sha.hexdigest()


def write_tar(path: Path, samples: list[tuple[str, np.ndarray, dict]], codec: str = DEFAULT_CODEC) -> tuple[int, str]:
    """Write samples (key, feats, json meta) as one shard, features in `codec`. Returns (bytes, sha256)."""
    with ShardWriter(path, codec) as shard:
        for key, feats, meta in samples:
            shard.write(key, feats, meta)
    return shard.size, shard.sha256


# --------------------------------------------------------------------------------------
# the reader: a fast path for local files
# --------------------------------------------------------------------------------------
# webdataset streams a tar through Python's tarfile in stream mode; on local shards that
# spent ~65 % of the loader's time in small buffered reads. A local shard is read whole and
# its 512-byte ustar headers parsed here; anything else (URLs, pipes, tar features our
# writer never produces) goes through webdataset.
class _NotPlainTar(Exception):
    pass


class ShardReadError(ValueError):
    """A shard tar that cannot be read (missing, truncated, corrupt), in one line that names
    it and says how to check its folder. `url` and `problem` are kept for callers.

    It survives a DataLoader worker: the main process re-raises a worker's exception as
    `ShardReadError(<"Caught ... Original Traceback ...">)`, from which the constructor
    takes back the original one-line message."""

    def __init__(self, message: str, url: str | None = None, problem: str | None = None):
        marker = f"{type(self).__name__}: "
        if "Traceback" in message and marker in message:  # re-raised from a DataLoader worker
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)
        self.url, self.problem = url, problem

    @classmethod
    def within(cls, error: BaseException) -> "ShardReadError | None":
        """`error` itself, or the ShardReadError whose traceback its text carries (the
        RuntimeError of a failed spawned training process); None for anything else."""
        if isinstance(error, cls):
            return error
        text = str(error)
        return cls(text) if "Traceback" in text and f"{cls.__name__}: " in text else None

    @classmethod
    def of(cls, url: str, problem: str) -> "ShardReadError":
        local = "://" not in url and not url.startswith("pipe:")
        hint = (f"; check the folder with `asr-cli shards verify {Path(url).parent.parent}`" if local
                else "; check --shard-url and that the shards there are complete")
        return cls(f"cannot read shard {url}: {problem}{hint}", url, problem)


_TRUNCATED = "the file is truncated (its tar ends early: cut short, or copied incompletely)"


def read_samples(urls: Iterable[str]) -> Iterator[dict]:
    """Samples of the tars at `urls`, in order, as webdataset gives them:
    {"__key__": id, "__url__": url, "feats.npy" (or "feats.qd"): features, "json": JSON bytes}
    (contents as memoryviews on the fast path; `decode_features` decodes them). A tar that cannot
    be read raises ShardReadError, on either path."""
    for url in urls:
        if "://" in url or url.startswith("pipe:"):
            yield from _webdataset_samples(url)
            continue
        try:
            data = Path(url).read_bytes()
        except FileNotFoundError:
            raise ShardReadError.of(url, "the file is missing") from None
        except OSError as e:
            raise ShardReadError.of(url, e.strerror or str(e)) from None
        if not data:
            raise ShardReadError.of(url, "the file is empty")
        try:
            members = list(_tar_members(data))
        except _NotPlainTar as e:
            if str(e) == _TRUNCATED:
                raise ShardReadError.of(url, _TRUNCATED) from None
            yield from _webdataset_samples(url)
            continue
        yield from _group(members, url)


def _webdataset_samples(url: str) -> Iterator[dict]:
    import webdataset as wds

    try:
        yield from wds.tarfile_samples(iter([{"url": url}]))
    except FileNotFoundError:
        raise ShardReadError.of(url, "the file is missing") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        text = str(e.args[0]) if e.args else str(e)
        status = re.search(r"exit (\d+)", text) if url.startswith("pipe:") else None
        if "unexpected end of data" in text or isinstance(e, EOFError):
            problem = _TRUNCATED
        elif status:
            problem = f"the command failed (exit status {status.group(1)})"
        else:  # webdataset appends " @ <file object>" and the url to the message
            problem = f"not a readable tar ({text.split(' @ ')[0]})"
        raise ShardReadError.of(url, problem) from None


def _tar_members(data: bytes) -> Iterator[tuple[str, memoryview]]:
    """(name, content) of each regular file of a ustar archive; _NotPlainTar on anything else."""
    view, pos, n = memoryview(data), 0, len(data)
    while pos + 512 <= n:
        header = data[pos:pos + 512]
        if header.count(0) == 512:  # end-of-archive block
            return
        if sum(header[:148]) + 8 * 32 + sum(header[156:]) != int(header[148:156].strip(b"\0 ") or b"-1", 8):
            raise _NotPlainTar("bad header checksum")
        kind = header[156:157]
        size = int(header[124:136].strip(b"\0 ") or b"0", 8)
        if kind not in (b"0", b"\0", b"5"):  # pax / GNU long names, links ...: not ours
            raise _NotPlainTar(f"member type {kind!r}")
        name = header[:100].rstrip(b"\0").decode()
        prefix = header[345:500].rstrip(b"\0").decode() if header[257:262] == b"ustar" else ""
        start = pos + 512
        if start + size > n:
            raise _NotPlainTar(_TRUNCATED)
        if kind != b"5":
            yield (f"{prefix}/{name}" if prefix else name), view[start:start + size]
        pos = start + (size + 511) // 512 * 512
    raise _NotPlainTar(_TRUNCATED)  # no end-of-archive block: the file was cut short


def _group(members: Iterable[tuple[str, memoryview]], url: str) -> Iterator[dict]:
    """Consecutive members sharing a key -> one webdataset-style sample dict."""
    sample: dict | None = None
    for name, content in members:
        parts = split_name(name)
        if parts is None:
            continue
        key, ext = parts
        if sample is None or sample["__key__"] != key:
            if sample is not None:
                yield sample
            sample = {"__key__": key, "__url__": url}
        if ext in sample:  # webdataset refuses it too
            raise ShardReadError.of(url, f"{name}: duplicate file name in the tar")
        sample[ext] = content
    if sample is not None:
        yield sample
