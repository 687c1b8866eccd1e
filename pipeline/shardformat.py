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

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from pipeline import atomic
from pipeline.featstats import applied_cmvn
from pipeline.shardtar import (META, ShardReadError, ShardWriter, check_key, read_samples,  # noqa: F401
                               split_name, write_tar)
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
