"""The worker side of a build: one clip's features (and its speed copies) in a worker process
(`init_worker`, `extract`), and a planned shard's results collected until it can be written
(`ShardAccumulator`: the tar written aside, its `.parts/` metadata saved, then the tar renamed
into place). pipeline/build.py and pipeline/archive_build.py drive them.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import numpy as np

from pipeline import atomic, featstats
from pipeline.audio import AudioError, FeatureConfig, speed_features
from pipeline.cv import Clip
from pipeline.estimate import index_row, sample_meta
from pipeline.feature_codecs import DEFAULT_CODEC
from pipeline.plan import ShardPlan
from pipeline.shardformat import json_text, parts_path, stored_values, write_tar


# --------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------
WORKER: dict = {}


def init_worker(features: FeatureConfig, log_path: str | None, max_seconds: float | None = None,
                 codec: str = DEFAULT_CODEC) -> None:
    import torch

    torch.set_num_threads(1)
    WORKER["features"], WORKER["codec"] = features, codec
    WORKER["max_seconds"] = max_seconds  # a longer clip is refused from its header, not decoded whole
    if log_path:  # libmpg123 prints resync notes about broken MP3s straight to fd 2
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)


def extract(task: tuple) -> tuple:
    """(path, speeds) -> ("ok", feats, info, stats, copies) | ("reject", reason, detail).

    copies: [(feats, info)] of the speed factors, from the same decoded audio; stats: the
    original's per-bin sums (featstats.BinStats) over its features as the codec stores them."""
    path, speeds = task
    cfg: FeatureConfig = WORKER["features"]
    try:
        feats, info, copies = speed_features(path, cfg, speeds, WORKER.get("max_seconds"))
    except AudioError as e:
        return ("reject", e.reason, e.detail)
    except Exception as e:  # a bug or an exotic file must not stop a long build
        return ("reject", "internal_error", f"{type(e).__name__}: {e} | {traceback.format_exc(limit=3)}")
    return ("ok", feats, info, featstats.BinStats.of(stored_values(feats, WORKER["codec"])), copies)


# --------------------------------------------------------------------------------------
# shard writing
# --------------------------------------------------------------------------------------
class ShardAccumulator:
    """Collects one planned shard's results until it can be written."""

    def __init__(self, plan: ShardPlan, pending: int, codec: str = DEFAULT_CODEC):
        self.plan, self.codec = plan, codec
        self.pending = pending
        self.samples: list[tuple[str, np.ndarray, dict]] = []
        self.rows: list[dict] = []
        self.rejects: list[dict] = []
        self.stats = featstats.BinStats()  # the originals' per-bin sums (CMVN from train's, dead bins from each split's)
        self.frames = 0

    def reject(self, clip: Clip, reason: str, detail: str) -> None:
        self.rejects.append({"id": clip.id, "split": clip.split, "reason": reason, "detail": detail})

    def add(self, clip: Clip, text: str, feats: np.ndarray, info: dict, stats: featstats.BinStats | None) -> None:
        row = index_row(clip, text, self.plan, int(feats.shape[0]), info)
        self.rows.append(row)
        self.samples.append((row["id"], feats, sample_meta(row)))
        self.frames += row["frames"]
        if stats is not None:
            self.stats = self.stats + stats

    def finish(self, out: Path) -> dict:
        meta = {
            "fingerprint": self.plan.fingerprint, "split": self.plan.split, "name": self.plan.name,
            "speed": self.plan.speed,
            "shard": self.plan.tar_path if self.samples else None,
            "utterances": len(self.samples), "frames": self.frames,
            "rows": self.rows, "rejects": self.rejects,
            "cmvn": self.stats.to_dict(),  # named so before every split had sums (resumed parts: train's only)
            "bytes": 0, "sha256": None,
        }
        tar_path = out / self.plan.tar_path
        if self.samples:  # tar written aside, metadata saved, then the tar renamed into place
            with atomic.atomic_path(tar_path) as tmp:
                meta["bytes"], meta["sha256"] = write_tar(tmp, self.samples, self.codec)
                atomic.write_text(parts_path(out, self.plan.name), json_text(meta))
        else:
            tar_path.unlink(missing_ok=True)
            atomic.write_text(parts_path(out, self.plan.name), json_text(meta))
        return meta
