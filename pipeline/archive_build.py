"""Shards from a release archive (`asr-cli shards --cv-archive X.tar.gz`): the same shards, nothing extracted.

The plan is the folder build's (`pipeline.build`: the same shards, fingerprints aside, the same
index rows, the same feature bytes); only where the audio comes from differs. The archive is
read sequentially (`pipeline.archive`): the TSVs first, then the clips in archive order, each
handed as bytes to the pool of worker processes (every core), which decode it from memory and
encode its features in the build's codec.

The archive's order is not the plan's: train is shuffled before it is cut into shards, so a
train shard's clips lie all over the archive and most shards complete only near its end. A
result is therefore staged on disk as it comes, already encoded (`Staging`: `.parts/archive/
<shard>.stage`, about the bytes the shard will take), and a shard group (a shard and its speed
copies) is written, through the folder build's own accumulator, in plan order, as soon as its
last clip is staged; its stage file is then removed. The disk a build takes is thus that of its
shards, plus at most one shard group at the peak (the space check counts it), never the
extracted release.

Resume: finished shards are kept as in a folder build, and so are the staged results of
unfinished ones (each record framed and CRC-checked; a record cut short by a kill is dropped):
a rerun reads the archive through again but decodes only what was not staged.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import struct
import sys
import time
import zlib
from collections import deque
from pathlib import Path

import numpy as np

from pipeline import build as B
from pipeline.archive import ArchiveFiles, ArchiveIndex, index_archive
from pipeline.cv import Release, ReleaseError, open_release
from pipeline.estimate import check_space, duration_problem, train_selection
from pipeline.featstats import BinStats
from pipeline.feature_codecs import EncodedFeatures
from pipeline.lock import lock_folder
from pipeline.shardformat import PARTS
from pipeline.spontaneous import open_spontaneous
from pipeline.text import get_normalizer

STAGING = "archive"  # under .parts/: the staged results of unfinished shard groups
WINDOW = 32  # clips in flight per worker: enough to keep the workers busy while this process writes a shard
_FRAME = struct.Struct(">II")  # JSON length, payload length; a CRC32 (">I") of both follows them


def open_archive(cfg, full: bool, progress: bool = False) -> tuple[ArchiveIndex, Release]:
    """The index pass over cfg.cv_root (an archive), then the release it holds. full: read it
    through (the dry run); else stop as early as the build can (`index_archive`)."""
    from tqdm import tqdm

    size = Path(cfg.cv_root).stat().st_size if Path(cfg.cv_root).is_file() else 0
    with tqdm(total=size, unit="B", unit_scale=True, desc="reading the archive", disable=not progress,
              dynamic_ncols=True) as bar:
        index = index_archive(cfg.cv_root, cfg.lang, cfg.train_set, stop_early=not full,
                              progress=lambda pos: bar.update(pos - bar.n))
    files = ArchiveFiles(index)
    if index.kind == "spontaneous":
        release = open_spontaneous(files, cfg.lang, cfg.train_set, cfg.max_per_speaker, cfg.selection)
    else:
        release = open_release(cfg.cv_root, cfg.lang, cfg.train_set, cfg.max_per_speaker, cfg.selection, files)
    release.source["archive"] = str(cfg.cv_root)
    return index, release


def dry_run(cfg) -> dict:
    """`asr-cli shards --cv-archive X --dry-run`: the folder dry run's report, from one pass through
    the archive (TSVs, members, headers); nothing extracted, nothing written."""
    index, release = open_archive(cfg, full=True, progress=cfg.progress)
    release.source["passes"] = index.passes
    normalizer = get_normalizer(cfg.lang)
    report = _with_staging(B.disk_needs(release, cfg, normalizer), release, cfg, normalizer)
    release.source.setdefault("notes", []).append(
        f"the archive build keeps results until their shard is complete: up to {report['staging_bytes'] / 1e6:.1f} MB"
        " (one shard group) on top of the shards at the peak, counted in the disk still to write")
    return {**report, "train_selection": train_selection(release, None), "source": release.source}


def build(cfg) -> dict:
    """Build (or resume) the shards of the release in the archive cfg.cv_root. Returns the summary."""
    t0 = time.time()
    index, release = open_archive(cfg, full=False, progress=cfg.progress)
    normalizer = get_normalizer(cfg.lang)
    out = Path(cfg.out)
    B.check_out_folder(out)
    if cfg.space_check:
        check_space(_with_staging(B.disk_needs(release, cfg, normalizer), release, cfg, normalizer))
    with lock_folder(out, "shards"):
        B.check_out_folder(out)
        return _build(index, release, normalizer, cfg, t0)


def _with_staging(report: dict, release: Release, cfg, normalizer) -> dict:
    """The disk report plus the largest shard group's bytes: staged, then written, at the peak."""
    plans = B.plan_shards(release, cfg, normalizer.version)
    margin = max((sum(report["shard_bytes"].get(p.tar_path, 0) for p in g) for g in B.shard_groups(plans)), default=0)
    report["needed_bytes"] += margin
    report["staging_bytes"] = margin
    report["fits"] = report["needed_bytes"] <= report["free_bytes"]
    return report


def _build(index: ArchiveIndex, release: Release, normalizer, cfg, t0: float) -> dict:
    out = Path(cfg.out)
    B.clear_out(out, stale_only=not cfg.force)
    B.mark_out_folder(out)
    plans = B.plan_shards(release, cfg, normalizer.version)
    groups = [g for g in B.shard_groups(plans) if not all(B.is_done(out, p) for p in g)]
    staging = Staging(out / PARTS / STAGING)
    staging.keep_only({g[0].fingerprint for g in groups} if not cfg.force else set())
    originals = lambda gs: sum(len(g[0].clips) for g in gs)  # noqa: E731
    stats = _Run(index, release, groups, out, cfg, normalizer, staging).go(
        total=originals(B.shard_groups(plans)), initial=originals(B.shard_groups(plans)) - originals(groups))
    release.source["passes"] = index.passes
    summary = B.assemble(out, plans, release, cfg, normalizer)
    staging.remove_folder()
    if not summary["splits"]["train"]["utterances"]:
        raise ReleaseError(f"no train clip of {cfg.cv_root} could be used (rejects by reason: {summary['rejects']})")
    summary["run"] = {"shards_built": sum(len(g) for g in groups), "shards_reused": len(plans) - sum(map(len, groups)),
                      "seconds": round(time.time() - t0, 2), "jobs": cfg.num_jobs(), **stats}
    return summary


def extract_encoded(task: tuple) -> tuple:
    """A worker's job: (clip bytes, speeds) -> `pipeline.build.extract`'s answer, its features (and
    its speed copies') encoded in the build's codec (`EncodedFeatures`)."""
    res = B.extract(task)
    if res[0] != "ok":
        return res
    _, feats, info, stats, copies = res
    codec = B.WORKER["codec"]
    return ("ok", EncodedFeatures(feats, codec), info, stats, [(EncodedFeatures(f, codec), i) for f, i in copies])


class _Run:
    """One archive build's clip pass: submit, stage, write each group once it is complete."""

    def __init__(self, index, release, groups, out, cfg, normalizer, staging):
        self.index, self.files, self.groups, self.out, self.cfg = index, ArchiveFiles(index), groups, out, cfg
        self.staging, self.normalizer = staging, normalizer
        self.texts = [{c.id: normalizer.analyse(c.sentence) for c in g[0].clips} for g in groups]
        self.pending = [0] * len(groups)
        self.todo: dict[str, list[tuple[int, object]]] = {}  # audio path -> [(group, clip)]
        self.audio_s = 0.0

    def go(self, total: int, initial: int) -> dict:
        from tqdm import tqdm

        for gi, group in enumerate(self.groups):
            staged = self.staging.load(group[0])
            for clip in group[0].clips:
                if self.texts[gi][clip.id][1] is None and clip.id not in staged:
                    self.todo.setdefault(self.files.member(clip.path), []).append((gi, clip))
                    self.pending[gi] += 1
        jobs = self.cfg.num_jobs()
        self.bar = tqdm(total=total, initial=initial, unit="clip", desc="features", disable=not self.cfg.progress,
                        dynamic_ncols=True, smoothing=0.05)
        self.bar.update(sum(len(g[0].clips) for g in self.groups) - sum(self.pending))  # staged or text-rejected
        started = time.time()
        pool = None
        init = (self.cfg.features, str(self.out / PARTS / "decoder.log"), self.cfg.max_duration, self.cfg.codec)
        if jobs > 1 and len(self.todo) > 1:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            pool = ctx.Pool(jobs, initializer=B.init_worker, initargs=init)
        else:
            B.init_worker(self.cfg.features, None, *init[2:])
        try:
            for gi in range(len(self.groups)):
                if not self.pending[gi]:
                    self.finish(gi)
            window: deque = deque()
            for rel, data in self.index.audio(set(self.todo)):
                for gi, clip in self.todo.pop(rel, ()):  # a member listed twice in the archive: decoded once
                    speeds = tuple(p.speed for p in self.groups[gi][1:])
                    window.append((gi, clip, pool.apply_async(extract_encoded, ((data, speeds),)) if pool
                                   else extract_encoded((data, speeds))))
                while len(window) > (WINDOW * jobs if pool else 0):
                    self.handle(*window.popleft())
            while window:
                self.handle(*window.popleft())
            for rel, waiting in self.todo.items():  # listed, never met in the archive
                for gi, clip in waiting:
                    detail = f"{self.index.path}: no member {self.index.prefix}{self.index.audio_dir}/{rel}"
                    self.handle(gi, clip, ("reject", "missing_file", detail))
        finally:
            self.bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        elapsed = max(time.time() - started, 1e-9)
        return {"audio_hours_processed": round(self.audio_s / 3600, 4), "extract_seconds": round(elapsed, 2),
                "realtime_factor": round(self.audio_s / elapsed, 1),
                "realtime_per_core": round(self.audio_s / elapsed / max(jobs, 1), 1),
                "archive_passes": self.index.passes}

    def handle(self, gi: int, clip, res) -> None:
        res = res.get() if hasattr(res, "get") else res
        self.staging.append(self.groups[gi][0], clip.id, res)
        if res[0] == "ok":
            self.audio_s += res[2]["duration"] + sum(i["duration"] for _, i in res[4])
        self.pending[gi] -= 1
        self.bar.update(1)
        if not self.pending[gi]:
            self.finish(gi)

    def finish(self, gi: int) -> None:
        """Write group `gi`'s shards from its staged results, exactly as `pipeline.build._run` would."""
        group, texts = self.groups[gi], self.texts[gi]
        staged = self.staging.load(group[0])
        accs = [B.ShardAccumulator(plan, 0, self.cfg.codec) for plan in group]
        for clip in group[0].clips:  # the transcripts rejected before decoding first, as the folder build does
            text, reason = texts[clip.id]
            if reason:
                accs[0].reject(clip, reason.split(":")[0], B.text_detail(reason, clip.sentence))
        for clip in group[0].clips:
            text, reason = texts[clip.id]
            if reason:
                continue
            res = staged[clip.id]
            if res[0] != "ok":
                accs[0].reject(clip, res[1], res[2])
                continue
            _, feats, info, stats, copies = res
            problem = duration_problem(info["duration"], text, self.cfg)
            if problem:
                accs[0].reject(clip, *problem)
                continue
            accs[0].add(clip, text, feats, info, stats)
            for acc, (copy_feats, copy_info) in zip(accs[1:], copies):
                acc.add(clip, text, copy_feats, copy_info, None)
        for acc in accs:
            acc.finish(self.out)
        self.staging.remove(group[0])


class Staging:
    """Encoded results of unfinished shard groups, one append-only file per group:
    `<folder>/<shard name>.stage`, a header record (the group's fingerprint), then one record per
    clip: frame (JSON length, payload length), JSON, payload (the per-bin sums as float64, the
    encoded features, the copies' after them), CRC32 of JSON and payload. A record cut short or
    damaged ends the file there."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, plan) -> Path:
        return self.folder / f"{plan.name}.stage"

    def keep_only(self, fingerprints: set[str]) -> None:
        """Remove the stage files of groups no longer planned (or all, --force)."""
        for p in sorted(self.folder.glob("*.stage")) if self.folder.is_dir() else []:
            if _header(p) not in fingerprints:
                p.unlink()

    def append(self, plan, clip_id: str, res: tuple) -> None:
        path = self.path(plan)
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_record({"fingerprint": plan.fingerprint}, b""))
        with open(path, "ab") as f:
            f.write(_record(*_encode(clip_id, res)))

    def load(self, plan) -> dict[str, tuple]:
        """clip id -> staged result of a group (empty: none, or staged under another fingerprint)."""
        path = self.path(plan)
        if not path.is_file():
            return {}
        data = path.read_bytes()
        records, end = _records(data)
        if not records or records[0][0].get("fingerprint") != plan.fingerprint:
            path.unlink()
            return {}
        if end < len(data):  # a record cut short by a kill: appends go on after the last whole one
            with open(path, "r+b") as f:
                f.truncate(end)
        return {head["id"]: _decode(head, payload) for head, payload in records[1:]}

    def remove(self, plan) -> None:
        self.path(plan).unlink(missing_ok=True)

    def remove_folder(self) -> None:
        try:
            self.folder.rmdir()
        except OSError:  # absent, or holds stage files still (not ours to judge)
            pass


def _record(head: dict, payload: bytes) -> bytes:
    js = json.dumps(head, ensure_ascii=False).encode()
    return _FRAME.pack(len(js), len(payload)) + js + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(js)))


def _records(data: bytes) -> tuple[list[tuple[dict, bytes]], int]:
    out, pos = [], 0
    while pos + _FRAME.size <= len(data):
        jl, pl = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + jl + pl + 4
        if end > len(data):
            break
        js, payload = data[pos + _FRAME.size: pos + _FRAME.size + jl], data[pos + _FRAME.size + jl: end - 4]
        if struct.unpack(">I", data[end - 4: end])[0] != zlib.crc32(payload, zlib.crc32(js)):
            break
        try:
            out.append((json.loads(js), payload))
        except ValueError:
            break
        pos = end
    return out, pos


def _header(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            records, _ = _records(f.read(1 << 16))
    except OSError:
        return None
    return records[0][0].get("fingerprint") if records else None


def _encode(clip_id: str, res: tuple) -> tuple[dict, bytes]:
    if res[0] != "ok":
        return {"id": clip_id, "status": "reject", "reason": res[1], "detail": res[2]}, b""
    _, feats, info, stats, copies = res
    head = {"id": clip_id, "status": "ok", "info": info, "frames": stats.frames, "bins": len(stats.sum),
            "feats": [feats.ext, list(feats.shape), len(feats.data)],
            "copies": [[f.ext, list(f.shape), len(f.data), i] for f, i in copies]}
    sums = np.concatenate([stats.sum, stats.sumsq]).astype("<f8").tobytes()  # exact: the CMVN is the folder build's
    return head, sums + feats.data + b"".join(f.data for f, _ in copies)


def _decode(head: dict, payload: bytes) -> tuple:
    if head["status"] != "ok":
        return ("reject", head["reason"], head["detail"])
    bins, (ext, shape, n) = head["bins"], head["feats"]
    sums = np.frombuffer(payload[: 16 * bins], dtype="<f8")
    stats, pos = BinStats(head["frames"], sums[:bins], sums[bins:]), 16 * bins
    feats, pos, copies = EncodedFeatures.stored(ext, payload[pos: pos + n], shape), pos + n, []
    for cext, cshape, cn, info in head["copies"]:
        copies.append((EncodedFeatures.stored(cext, payload[pos: pos + cn], cshape), info))
        pos += cn
    return ("ok", feats, head["info"], stats, copies)
