"""The shard format: the one contract between the offline pipeline and the trainer.

    <root>/
      dataset.json       feature config, normaliser, vocabulary, CMVN, per-split counts, shards
      index.parquet      one row per kept utterance (INDEX_COLUMNS)
      rejects.parquet    one row per clip left out, with its reason (REJECT_COLUMNS)
      train/train-000000.tar ...   webdataset tar: <id>.feats.<codec ext> ([T, n_mels]) + <id>.json
      dev/ test/
      .parts/            the builder's per-shard metadata (what makes a killed build resumable)

`pipeline.build` writes a folder (`write_tar`, `write_tables`), `pipeline.verify` checks
one and the loader (`asr.data.loader`) streams one (`ShardSet`, `read_samples`, `decode_features`:
a sample's features whatever codec stored them; the codecs live in `pipeline.feature_codecs`
and are imported from here like the rest of the format); everything else
reads it through `ShardSet` / `read_dataset` / `read_index`, so only this module knows the
file names. A tar member `<key>.<ext>` is split into key and extension by webdataset's
rule (`split_name`) by every reader, and the writer refuses a key that would not survive it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from pipeline import atomic
from pipeline.featstats import applied_cmvn
from pipeline.feature_codecs import (CODEC_BYTES_PER_VALUE, CODEC_DTYPE, CODEC_MEMBER,  # noqa: F401
                                     DEFAULT_CODEC, FEATS, FEATS_QDELTA, FEATURE_CODECS, OLD_CODEC, QDELTA_STEP,
                                     EncodedFeatures, FeatureDecodeError, check_codec, dataset_codec,
                                     decode_features, encode_features, estimate_sample_bytes, load_npy,
                                     npy_bytes, stored_values)

FORMAT_VERSION = 1

DATASET = "dataset.json"
INDEX = "index.parquet"
REJECTS = "rejects.parquet"
PARTS = ".parts"  # the builder's own folder
TAR = ".tar"
META = "json"  # the member extension of a sample's JSON (its features': pipeline.feature_codecs)

INDEX_COLUMNS = ("id", "split", "shard", "frames", "duration", "text", "sentence", "client_id",
                 "gender", "age", "accent", "sample_rate", "channels", "path", "speed")
_INT_COLUMNS = ("frames", "sample_rate", "channels")
_FLOAT_COLUMNS = ("duration", "speed")
# Column values of a row written before the column existed (index.parquet of older builds,
# their `.parts` rows): readers go through `row_value`, so old folders still load and verify.
COLUMN_DEFAULTS = {"speed": 1.0}

# Speed perturbation: factors allowed, and the tag of a copy's id and shard
SPEED_RANGE = (0.5, 2.0)
REJECT_COLUMNS = ("id", "split", "reason", "detail")


def speed_tag(speed: float) -> str:
    """`sp0p9` for 0.9: what a speed copy's id (`<id>_sp0p9`) and shard name carry. The dot of
    `0.9` becomes `p` because a sample key holds no dot (see `check_key`)."""
    return "sp" + format(speed, "g").replace(".", "p")


def speed_id(clip_id: str, speed: float) -> str:
    """The id of a clip's speed copy: `common_voice_fr_1_sp0p9` (the clip's own id at 1.0)."""
    return clip_id if speed == 1.0 else f"{clip_id}_{speed_tag(speed)}"


def shard_name(split: str, number: int, speed: float = 1.0) -> str:
    """`train-000000` (`train-sp0p9-000000` for a speed copy of it): a shard's name, also that
    of its `.parts` metadata file."""
    return f"{split}-{number:06d}" if speed == 1.0 else f"{split}-{speed_tag(speed)}-{number:06d}"


def shard_path(split: str, number: int, speed: float = 1.0) -> str:
    """`train/train-000000.tar`, relative to the shard folder (as dataset.json lists it)."""
    return f"{split}/{shard_name(split, number, speed)}{TAR}"


SPLIT_NAMES = ("train", "dev", "test")  # the split folders (pipeline.cv.SPLITS; this module imports nothing of it)
# What a shard path may be: `<split>/<split>[-sp<tag>]-<6 digits>.tar`, nothing else (no `..`,
# no shell character, no other folder). dataset.json may come from anywhere (a bucket shared by
# others), so every path it lists is matched against this before a URL or a command is made of it.
SHARD_PATH = re.compile(r"(?P<split>train|dev|test)/(?P=split)(?:-sp\d+(?:p\d+)?)?-\d{6,}\.tar")
# The builder's own metadata files in `.parts/`: a shard's name + ".json"
PARTS_NAME = re.compile(r"(?:train|dev|test)(?:-sp\d+(?:p\d+)?)?-\d{6,}\.json")
BUILDER_MARK = "builder.mark"  # in `.parts/`: the folder was made by `asr-cli shards` (what may be removed)


class ShardPathError(ValueError):
    """A shard path in dataset.json that is not one the format writes."""


def check_shard_path(path, where: str = DATASET) -> str:
    """`path` itself when it is a shard path the builder writes (`train/train-000000.tar`,
    `train/train-sp0p9-000003.tar`); ShardPathError, in one line, for anything else (a path
    that leaves the folder, names another file, or carries shell syntax)."""
    if not isinstance(path, str) or not SHARD_PATH.fullmatch(path):
        raise ShardPathError(f"{where} lists a shard path {str(path)[:120]!r} that is not a shard of this format "
                             "(<split>/<split>-NNNNNN.tar): the folder was altered or is not from `asr-cli shards`; "
                             "refusing to read it (check it with `asr-cli shards verify`)")
    return path


def is_shard_folder(root: str | Path) -> bool:
    """Whether `root` is a folder `asr-cli shards` made: its `.parts/` holds the builder's mark,
    or (a folder built before the mark existed) a `.parts/` beside a dataset.json of this format."""
    root = Path(root)
    parts = root / PARTS
    if (parts / BUILDER_MARK).is_file():
        return True
    if not parts.is_dir() or not (root / DATASET).is_file():
        return False
    try:
        return "format_version" in json.loads((root / DATASET).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def refuse_out_inside_shards(out: str | Path, option: str = "--out") -> None:
    """ValueError when `out` is a shard folder or lies inside one: the next `asr-cli shards
    --force` into that folder may remove what it finds in its split folders, and a run's files
    are no shards."""
    path = Path(out).absolute()
    for folder in (path, *path.parents):
        if is_shard_folder(folder):
            raise ValueError(f"{option} {out} is inside the shard folder {folder}: choose a folder outside it "
                             "(e.g. runs/<name>)")


def row_value(row: dict, column: str):
    """`row[column]`, or the column's default for a row from before the column existed."""
    return row[column] if column in row else COLUMN_DEFAULTS[column]


def dataset_path(root: str | Path) -> Path:
    return Path(root) / DATASET


def index_path(root: str | Path) -> Path:
    return Path(root) / INDEX


def rejects_path(root: str | Path) -> Path:
    return Path(root) / REJECTS


def parts_path(root: str | Path, name: str) -> Path:
    return Path(root) / PARTS / f"{name}.json"


# --------------------------------------------------------------------------------------
# dataset.json, index.parquet, rejects.parquet
# --------------------------------------------------------------------------------------
def json_text(obj) -> str:
    """The JSON of dataset.json and the `.parts` files: sorted keys, so reruns give the same bytes."""
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def write_tables(root: Path, dataset: dict, rows: list[dict], rejects: list[dict]) -> None:
    """Write index.parquet, rejects.parquet and, last, dataset.json (each atomically): a
    folder with a dataset.json is a finished build."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def table(records: list[dict], types: dict):
        return pa.table({c: [row_value(r, c) for r in records] for c in types}, schema=pa.schema(list(types.items())))

    index_types = {c: pa.int64() if c in _INT_COLUMNS else pa.float64() if c in _FLOAT_COLUMNS else pa.string()
                   for c in INDEX_COLUMNS}
    for path, t in ((index_path(root), table(rows, index_types)),
                    (rejects_path(root), table(rejects, {c: pa.string() for c in REJECT_COLUMNS}))):
        with atomic.atomic_path(path) as tmp:
            pq.write_table(t, tmp, compression="zstd")
    atomic.write_text(dataset_path(root), json_text(dataset))


def read_dataset(root: str | Path) -> dict:
    """A shard folder's dataset.json; FileNotFoundError that says what --shards must be."""
    path = dataset_path(root)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --shards must be a folder made by `asr-cli shards` "
                                f"(or `make shards` / `make demo`)")
    return json.loads(path.read_text(encoding="utf-8"))


def _read_table(path: Path, columns: list[str] | None, split: str | None) -> list[dict]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the shards first (asr-cli shards)")
    names = pq.read_schema(path).names
    defaults = {c: v for c, v in COLUMN_DEFAULTS.items() if c not in names} if path.name == INDEX else {}
    wanted = list(columns) if columns is not None else names + list(defaults)
    needed = wanted + (["split"] if split is not None and "split" not in wanted else [])
    missing = [c for c in needed if c not in names and c not in defaults]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; columns are {names}")
    table = pq.read_table(path, columns=[c for c in needed if c in names])
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    for c in needed:  # a column an older build did not write: its default in every row
        if c in defaults:
            table = table.append_column(c, pa.array([defaults[c]] * table.num_rows))
    return table.select(wanted).to_pylist()


def read_index(root: str | Path, columns: list[str] | None = None, split: str | None = None) -> list[dict]:
    """Rows of index.parquet (in file order): only `columns` if given, only `split`'s if given."""
    return _read_table(index_path(root), columns, split)


def read_rejects(root: str | Path, split: str | None = None) -> list[dict]:
    """Rows of rejects.parquet: id, split, reason, detail."""
    return _read_table(rejects_path(root), None, split)


@dataclass
class ShardSet:
    """A shard folder's dataset.json, with where its tars are read from.

    `url` is how tars are reached: by default the folder itself; else a prefix
    ("http://host/shards/fr", a tar's relative path is appended) or a template with
    "{path}" ("pipe:aws s3 cp s3://bucket/fr/{path} -"), as webdataset opens them.
    """

    root: Path
    dataset: dict
    url: str | None = None

    @classmethod
    def open(cls, root: str | Path, url: str | None = None) -> "ShardSet":
        return cls(Path(root), read_dataset(root), url)

    @property
    def vocab(self) -> list[str]:
        return self.dataset["vocab"]

    @property
    def applied_cmvn(self) -> dict:
        """dataset.json's CMVN as training applies it (std floored: `pipeline.featstats`); what
        a checkpoint records."""
        return applied_cmvn(self.dataset["cmvn"])

    @property
    def cmvn(self) -> tuple[np.ndarray, np.ndarray]:
        """mean [F], std [F] (float32) that features are normalised with: (feats - mean) / std."""
        c = self.applied_cmvn
        if c.get("mean") is None:
            raise ValueError(f"{dataset_path(self.root)} has no CMVN statistics (empty train split?)")
        mean, std = np.asarray(c["mean"], np.float32), np.asarray(c["std"], np.float32)
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            # features normalised by it would all be NaN: every batch skipped, nothing learnt
            raise ValueError(f"{dataset_path(self.root)} holds a CMVN that is not finite or has a zero std: "
                             "rebuild the shards (asr-cli shards --force)")
        return mean, std

    def split(self, name: str) -> dict:
        if name not in self.dataset["splits"]:
            raise ValueError(f"no split {name!r} in {self.root} (have {', '.join(self.dataset['splits'])})")
        return self.dataset["splits"][name]

    def urls(self, split: str) -> list[str]:
        where = str(dataset_path(self.root))
        paths = [check_shard_path(s.get("path") if isinstance(s, dict) else s, where)
                 for s in self.split(split)["shards"]]
        if not paths:
            raise ValueError(f"split {split!r} of {self.root} has no shards (no utterance kept)")
        if self.url is None:
            return [str(self.root / p) for p in paths]
        if "{path}" in self.url:  # quoted for the shell of a `pipe:` command (checked paths need none)
            quote = shlex.quote if self.url.startswith("pipe:") else str
            return [self.url.replace("{path}", quote(p)) for p in paths]
        return [f"{self.url.rstrip('/')}/{p}" for p in paths]

    def frames(self, split: str) -> int:
        return self.split(split)["frames"]

    def read_index(self, columns: list[str] | None = None, split: str | None = None) -> list[dict]:
        return read_index(self.root, columns, split)

    def read_rejects(self, split: str | None = None) -> list[dict]:
        return read_rejects(self.root, split)


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
    if not key or any(split_name(f"{key}.{ext}") != (key, ext) for ext in (FEATS, FEATS_QDELTA, META)):
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
