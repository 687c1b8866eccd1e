"""`asr-cli shards verify`: do the tars, index.parquet and dataset.json agree?

Checks every shard listed in dataset.json: it exists, its size and sha256 match, every
sample has its features (the member of dataset.json's `feature_codec`) and .json, the
features decode (a qdelta sample's CRC32 included) to finite [frames, n_mels], the ids and
frame counts are those of index.parquet, and nothing else lies in the split folders. It also
warns (without failing) about a split whose features have dead bins: mel bins with no signal,
as 8 kHz recordings leave above ~3.9 kHz.
The tars are read by the loader's own reader (`shardformat.read_samples`), so a sample
verify accepts is one training reads the same way.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipeline.cv import SPLITS
from pipeline.featstats import BinStats, dead_bin_warnings, dead_bins
from pipeline.shardformat import (CODEC_DTYPE, CODEC_MEMBER, DATASET, FEATURE_CODECS, INDEX, META,
                                  FeatureDecodeError, ShardPathError, check_shard_path, dataset_codec,
                                  decode_features, read_dataset, read_index,
                                  read_samples, row_value, speed_id)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(root: Path, progress: bool = True) -> list[str]:
    """Every disagreement found, as one line each (empty list: all good)."""
    return verify_folder(root, progress)[0]


def verify_folder(root: Path, progress: bool = True) -> tuple[list[str], list[str]]:
    """(problems, warnings): every disagreement found, one line each, and what is readable but
    suspect: a split whose features have dead bins (no signal: band-limited audio)."""
    from tqdm import tqdm

    root = Path(root)
    problems: list[str] = []
    try:
        dataset = read_dataset(root)
        index = read_index(root)
    except (OSError, ValueError) as e:
        return [f"cannot read {root}/{DATASET} or {INDEX}: {e}"], []
    n_mels = dataset["features"]["n_mels"]
    codec = dataset_codec(dataset)
    if codec not in FEATURE_CODECS:
        return [f"{DATASET} names the feature codec {codec!r}, which this version cannot read "
                f"(it reads {', '.join(FEATURE_CODECS)})"], []
    by_shard: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in index:
        by_shard[row["shard"]][row["id"]] = row

    listed = [(split, s) for split in SPLITS for s in dataset["splits"].get(split, {}).get("shards", [])]
    unsafe = []  # a path that leaves the folder (../../x.tar) is never opened, as training and eval refuse it
    for split, s in listed:
        try:
            check_shard_path(s.get("path") if isinstance(s, dict) else None)
        except ShardPathError as e:
            unsafe.append((split, s))
            problems.append(str(e))
    listed = [item for item in listed if item not in unsafe]
    for split in SPLITS:
        info = dataset["splits"].get(split, {})
        n_index = sum(1 for r in index if r["split"] == split)
        if info.get("utterances") != n_index:
            problems.append(f"{split}: {DATASET} counts {info.get('utterances')} utterances, index has {n_index}")
    problems += _verify_speeds(dataset, index)
    extra = set(by_shard) - {s["path"] for _, s in listed}
    problems += [f"{path}: in {INDEX} but not listed in {DATASET}" for path in sorted(extra)]
    on_disk = {f"{p.parent.name}/{p.name}" for split in SPLITS for p in (root / split).glob("*") if p.is_file()}
    problems += [f"{path}: unexpected file in a split folder" for path in sorted(on_disk - {s['path'] for _, s in listed})]

    stats = defaultdict(BinStats)  # split -> per-bin sums of its originals' features
    for split, shard in tqdm(listed, desc="verify", unit="shard", disable=not progress):
        found, shard_stats = _verify_shard(root, shard, by_shard.get(shard["path"], {}), n_mels, codec)
        problems += found
        stats[split] = stats[split] + shard_stats
    dead = {split: dead_bins(stats[split].mean_std()[1]) for split in SPLITS if stats[split].frames}
    return problems, dead_bin_warnings(dead, dataset["features"])


def _verify_speeds(dataset: dict, index: list[dict]) -> list[str]:
    """Speed copies only in train, only of the factors dataset.json lists, each with its
    original kept and the id `<original>_sp<factor>` (an older index has no `speed`
    column: read_index gives 1.0, nothing to check)."""
    factors = set(dataset.get("speed_factors", []))
    originals = {r["id"] for r in index if r["speed"] == 1.0}
    out = []
    for r in index:
        speed = r["speed"]
        if speed == 1.0:
            continue
        if r["split"] != "train" or speed not in factors:
            out.append(f"{r['id']}: speed copy {speed:g} in {r['split']}, but {DATASET} lists speed copies "
                       f"{sorted(factors)} of train only")
        elif speed_id(base := r["id"].rsplit("_", 1)[0], speed) != r["id"] or base not in originals:
            out.append(f"{r['id']}: speed copy {speed:g} without its original in {INDEX}")
    return out


def _verify_shard(root: Path, shard: dict, rows: dict[str, dict], n_mels: int,
                  codec: str) -> tuple[list[str], BinStats]:
    """(problems, per-bin sums of the shard's readable original utterances)."""
    path = root / shard["path"]
    name = shard["path"]
    stats = BinStats()
    if not path.is_file():
        return [f"{name}: missing"], stats
    out = []
    if path.stat().st_size != shard["bytes"]:
        out.append(f"{name}: {path.stat().st_size} bytes, {DATASET} says {shard['bytes']}")
    if sha256_file(path) != shard["sha256"]:
        out.append(f"{name}: sha256 differs from {DATASET} (corrupted or rewritten)")
    members: dict[str, dict] = {}
    try:
        for sample in read_samples([str(path)]):
            key = sample["__key__"]
            if key in members:
                out.append(f"{name}: sample {key} appears twice")
            members[key] = {k: v for k, v in sample.items() if not k.startswith("__")}
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        return out + [f"{name}: unreadable tar ({getattr(e, 'problem', None) or e})"], stats  # ShardReadError
    if set(members) != set(rows):
        missing, extra = set(rows) - set(members), set(members) - set(rows)
        out.append(f"{name}: {len(missing)} indexed utterances missing from the tar, {len(extra)} not in the index")
    if len(members) != shard["utterances"]:
        out.append(f"{name}: {len(members)} samples, {DATASET} says {shard['utterances']}")
    member = CODEC_MEMBER[codec]
    for key, parts in members.items():
        if set(parts) != {member, META}:
            out.append(f"{name}: sample {key} has parts {sorted(parts)}, expected {sorted([member, META])} "
                       f"({DATASET}'s feature codec is {codec})")
            continue
        try:
            feats = decode_features(parts, n_mels)  # an absurd or foreign shape refused before allocating
            meta = json.loads(bytes(parts[META]))
        except (FeatureDecodeError, ValueError) as e:  # truncated or corrupt features, bad JSON
            out.append(f"{name}: sample {key} unreadable ({e})")
            continue
        row = rows.get(key)
        want = CODEC_DTYPE[codec]
        if feats.dtype != want or feats.ndim != 2 or feats.shape[1] != n_mels:
            out.append(f"{name}: sample {key} features {feats.dtype} {feats.shape}, expected "
                       f"{np.dtype(want).name} [T, {n_mels}]")
        elif row is not None and (feats.shape[0] != row["frames"] or meta.get("text") != row["text"]):
            out.append(f"{name}: sample {key} disagrees with {INDEX} (frames or text)")
        elif not np.isfinite(feats).all():
            out.append(f"{name}: sample {key} has non-finite features")
        elif row is None or row_value(row, "speed") == 1.0:
            stats = stats + BinStats.of(feats)
    return out, stats
