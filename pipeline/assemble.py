"""The end of a build: index.parquet, rejects.parquet and dataset.json assembled from the
shards' `.parts/` metadata (CMVN from train's per-bin sums, each split's dead bins), and the
summary a build prints. Shared by the folder build (pipeline/build.py) and the archive build.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from pipeline import featstats
from pipeline.config import BuildConfig
from pipeline.cv import SPLITS, Release, ReleaseError
from pipeline.estimate import selection_lines, train_selection
from pipeline.plan import ShardPlan, _own_files, _read_meta
from pipeline.selection import source_lines
from pipeline.shardformat import (FORMAT_VERSION, PARTS, REJECT_COLUMNS, TAR, row_value, write_tables)


# --------------------------------------------------------------------------------------
# assembly: index.parquet, rejects.parquet, dataset.json
# --------------------------------------------------------------------------------------
def assemble(out: Path, plans: list[ShardPlan], release: Release, cfg: BuildConfig, normalizer) -> dict:
    metas = [_read_meta(out, p) for p in plans]
    if any(m is None for m in metas):
        raise RuntimeError("a shard's metadata is missing after the build; rerun to resume")
    rows = [r for m in metas for r in m["rows"]]
    rejects = [{"id": p.id, "split": p.split, "reason": p.reason, "detail": p.detail} for p in release.problems]
    rejects += [{k: r[k] for k in REJECT_COLUMNS} for m in metas for r in m["rejects"]]

    # stale shards from an earlier build with another plan (files of the builder's own names only)
    planned = {p.tar_path for p in plans} | {f"{PARTS}/{p.name}.json" for p in plans}
    for path in _own_files(out):
        rel = f"{path.parent.name}/{path.name}"
        if (path.suffix == TAR and rel not in planned) or (path.parent.name == PARTS and path.suffix == ".json"
                                                           and rel not in planned):
            path.unlink()

    vocab = sorted({ch for r in rows if r["split"] == "train" for ch in r["text"]})
    originals = [m for m in metas if m.get("speed", 1.0) == 1.0]
    dataset = {
        "format_version": FORMAT_VERSION,
        "lang": cfg.lang,
        "features": cfg.features.to_dict(),
        "feature_codec": cfg.codec,  # how each sample's features are stored (shardformat.decode_features reads any)
        "normalizer": normalizer.describe(),
        "vocab": vocab,
        "cmvn": _cmvn(featstats.total(m["cmvn"] for m in originals if m["split"] == "train")),  # never the copies'
        "speed_factors": list(cfg.speeds),  # the train split's speed-perturbed copies (index column `speed`)
        "build": {"cv_root": str(cfg.cv_root), "shard_size": cfg.shard_size, "seed": cfg.seed,
                  "min_duration": cfg.min_duration, "max_duration": cfg.max_duration,
                  "max_chars_per_second": cfg.max_chars_per_second, "train_set": cfg.train_set,
                  "max_per_speaker": cfg.max_per_speaker.describe() if cfg.max_per_speaker else None,
                  "speed": list(cfg.speeds)},
        "splits": {},
        "rejects": dict(sorted(Counter(r["reason"] for r in rejects).items())),
        "train_selection": train_selection(release, rows),
        "source": release.source,  # dataset, archive, filters, rows in no split, notes (pipeline.selection)
    }
    vocab_set = set(vocab)
    for split in SPLITS:
        split_rows = [r for r in rows if r["split"] == split]
        unseen = Counter(ch for r in split_rows for ch in r["text"] if ch not in vocab_set)
        copy_rows = [r for r in split_rows if row_value(r, "speed") != 1.0]
        dataset["splits"][split] = {
            "utterances": len(split_rows),  # speed copies included: what training streams
            "hours": round(sum(r["duration"] for r in split_rows) / 3600, 4),
            "speed_copies": {"utterances": len(copy_rows),
                             "hours": round(sum(r["duration"] for r in copy_rows) / 3600, 4)},
            "frames": sum(r["frames"] for r in split_rows),
            "speakers": len({r["client_id"] for r in split_rows} - {""}),  # an empty id is no one's
            "rejected": sum(1 for r in rejects if r["split"] == split),
            "chars_unseen_in_train": dict(sorted(unseen.items())),
            "dead_bins": _dead_bins(featstats.total(m["cmvn"] for m in originals if m["split"] == split)),
            "shards": [{"path": m["shard"], "utterances": m["utterances"], "frames": m["frames"],
                        "bytes": m["bytes"], "sha256": m["sha256"]}
                       for m in metas if m["split"] == split and m["shard"]],
        }
        info = dataset["splits"][split]
        info["bytes"] = sum(sh["bytes"] for sh in info["shards"])  # what a real release's split takes on disk
        info["bytes_per_hour"] = round(info["bytes"] / info["hours"]) if info["hours"] else None
    write_tables(out, dataset, rows, rejects)
    return dataset


def _cmvn(stats: featstats.BinStats) -> dict:
    cmvn = featstats.cmvn_record(stats)
    if cmvn["mean"] is not None and not (np.isfinite(cmvn["mean"]).all() and np.isfinite(cmvn["std"]).all()):
        raise ReleaseError(f"the train split's CMVN is not finite (mean {cmvn['mean'][:3]}..., std "
                           f"{cmvn['std'][:3]}...): a shard's features are corrupt; rebuild with --force")
    return cmvn


def _dead_bins(stats: featstats.BinStats) -> list[int] | None:
    """The split's bins without signal (None: no sums, e.g. parts of a build before they were kept)."""
    return featstats.dead_bins(stats.mean_std()[1]) if stats.frames else None


def format_summary(summary: dict) -> str:
    """Human-readable end-of-build report."""
    lines = []
    lines.append(f"{'split':<6} {'kept':>8} {'hours':>8} {'speakers':>9} {'rejected':>9} {'shards':>7} "
                 f"{'MB':>9} {'MB/h':>7}")
    for split, s in summary["splits"].items():
        per_hour = f"{s['bytes_per_hour'] / 1e6:>7.1f}" if s.get("bytes_per_hour") else f"{'-':>7}"
        lines.append(f"{split:<6} {s['utterances']:>8} {s['hours']:>8.3f} {s['speakers']:>9} "
                     f"{s['rejected']:>9} {len(s['shards']):>7} {s.get('bytes', 0) / 1e6:>9.1f} {per_hour}")
    copies = summary["splits"].get("train", {}).get("speed_copies", {}).get("utterances", 0)
    if copies:
        t = summary["splits"]["train"]
        factors = ", ".join(f"{f:g}" for f in summary["speed_factors"])
        lines.append(f"train includes {copies} speed copies ({factors}; {t['speed_copies']['hours']:.3f} h) "
                     f"of its {t['utterances'] - copies} clips ({t['hours'] - t['speed_copies']['hours']:.3f} h)")
    lines += source_lines(summary.get("source", {}))
    lines += selection_lines(summary.get("train_selection", {"left_out": {}}))
    if summary["rejects"]:
        lines.append("rejected by reason: " + ", ".join(f"{k} {v}" for k, v in summary["rejects"].items()))
    else:
        lines.append("rejected: none")
    dead = {split: summary["splits"][split].get("dead_bins") for split in SPLITS if split in summary["splits"]}
    lines += [f"WARNING {w}" for w in featstats.dead_bin_warnings(dead, summary["features"])]
    for split, s in summary["splits"].items():
        if s["chars_unseen_in_train"]:
            chars = "".join(s["chars_unseen_in_train"])
            lines.append(f"{split}: characters unseen in train (kept, counted as errors): {chars!r}")
    lines.append(f"vocabulary: {len(summary['vocab'])} characters: {''.join(summary['vocab'])!r}")
    run = summary.get("run")
    if run and not run["shards_built"]:
        lines.append(f"all {run['shards_reused']} shards were already built (reused); total {run['seconds']:.1f}s"
                     " (--force rebuilds)")
    elif run:
        lines.append(
            f"built {run['shards_built']} shards, reused {run['shards_reused']}; "
            f"{run['audio_hours_processed']:.3f} h of audio{' (speed copies included)' if copies else ''} in "
            f"{run['extract_seconds']:.1f}s = "
            f"{run['realtime_factor']:.0f}x real time ({run['realtime_per_core']:.0f}x per core, "
            f"{run['jobs']} jobs); total {run['seconds']:.1f}s")
    return "\n".join(lines)
