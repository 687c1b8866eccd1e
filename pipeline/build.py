"""Common Voice release -> webdataset shards of log-Mel features, with index and stats.

The folder it writes is described, named and written through `pipeline.shardformat`
(dataset.json, index.parquet, rejects.parquet, the split folders of tars and `.parts/`,
the per-shard metadata that makes a killed build resumable).

How a build runs:
1. The split TSVs are read (`pipeline.cv`), train clips shuffled with the seed, and every
   split cut into shards of `shard_size` clips *before* any audio is decoded, so which
   clip goes to which shard never depends on what is rejected, on the job count, or on
   where an earlier run was killed.
2. Transcripts are normalised in the main process; the clips whose text survives go to
   a pool of `jobs` worker processes that decode, resample and compute features.
3. Results come back in order; each complete shard is written to `<name>.tmp` with fixed
   tar metadata (mtime 0, uid 0, sorted by plan order), hashed while written, then its
   metadata (`.parts/<name>.json`: index rows, rejects, CMVN sums, sha256) is written,
   and finally the tar is renamed into place. A shard whose tar and metadata exist with
   the same fingerprint is never rebuilt, so a rerun after a kill resumes and ends with
   byte-identical shards.
4. index.parquet, rejects.parquet and dataset.json are assembled from the metadata.
Before any of it the same plan gives the disk the build takes (`pipeline.estimate`, no
decoding): a build that would not fit stops before writing anything; `dry_run` is that alone.

One build owns the output folder at a time (`pipeline.lock`): a second one into the same
`--out` stops at once with the first one's pid. The builder only ever removes what it wrote:
`--out` must be new, empty or a shard folder (its `.parts/` holds the builder's mark), and in
one only files of the format's own names (tars, `.parts` metadata, the three tables, their
`*.tmp`) are removed, even with `--force`; anything else a user put there stays. Every file is written through
`pipeline.atomic`, so a full disk fails with an OSError naming the file, leaves no `*.tmp`,
and leaves the shards already in place as they were.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import atomic, featstats
from pipeline.audio import AudioError, FeatureConfig, speed_features
from pipeline.cv import SPLITS, Clip, Release, ReleaseError, SpeakerCap, shuffled
from pipeline.estimate import (check_space, disk_report, duration_problem, estimate, index_row, sample_meta,
                               selection_lines, train_selection)
from pipeline.lock import LOCK_FILE, lock_folder
from pipeline.releases import open_source
from pipeline.selection import Selection, source_lines
from pipeline.shardformat import (BUILDER_MARK, DATASET, DEFAULT_CODEC, FORMAT_VERSION, INDEX, OLD_CODEC, PARTS,
                                  PARTS_NAME, REJECTS, REJECT_COLUMNS, SHARD_PATH, SPEED_RANGE, TAR, check_codec,
                                  is_shard_folder, json_text, parts_path, row_value, shard_name, shard_path,
                                  stored_values, write_tables, write_tar)
from pipeline.text import get_normalizer


@dataclass
class BuildConfig:
    cv_root: Path  # a folder (Scripted or Spontaneous Speech: pipeline.releases); an archive: pipeline.archive_build
    lang: str
    out: Path
    jobs: int = 0  # 0: every core
    shard_size: int = 1000  # clips planned per shard (~70 MB of features at 5 s a clip)
    seed: int = 0
    min_duration: float = 0.5  # seconds
    max_duration: float = 20.0
    max_chars_per_second: float = 25.0  # faster "speech" means text and audio do not match
    train_set: str = "train"  # or "validated": validated minus dev and test
    force: bool = False
    progress: bool = True
    features: FeatureConfig = field(default_factory=FeatureConfig)
    speeds: tuple[float, ...] = ()  # speed-perturbed copies of the train split (parse_speeds)
    codec: str = DEFAULT_CODEC  # how the features are stored (pipeline.shardformat.FEATURE_CODECS)
    max_per_speaker: SpeakerCap | None = None  # train clips / audio of any one speaker (None: no cap)
    space_check: bool = True  # refuse, before writing, a build the free space of `out` cannot hold
    selection: Selection = field(default_factory=Selection)  # --sentence-domain, --variant, --drop-quality-tags

    def num_jobs(self) -> int:
        return self.jobs if self.jobs > 0 else len(os.sched_getaffinity(0))


def parse_speeds(text: str | None) -> tuple[float, ...]:
    """`"0.9,1.1"` -> (0.9, 1.1): the factors of --speed, sorted. ValueError, in one line, for a
    factor that is not a finite number in SPEED_RANGE, for 1.0 (the originals are always
    there) and for a factor given twice."""
    if text is None or not text.strip():
        return ()
    lo, hi = SPEED_RANGE
    factors = []
    for item in text.split(","):
        try:
            f = float(item.strip())
        except ValueError:
            raise ValueError(f"--speed: {item.strip()!r} is not a number; give factors like 0.9,1.1") from None
        if not math.isfinite(f) or not lo <= f <= hi:
            raise ValueError(f"--speed: {item.strip()} is out of range; factors must lie in [{lo:g}, {hi:g}]")
        if f == 1.0:
            raise ValueError("--speed: 1.0 is the original audio, always kept; give only the perturbed factors")
        if round(f, 4) != f:
            raise ValueError(f"--speed: {item.strip()} has more than 4 decimals")
        if f in factors:
            raise ValueError(f"--speed: {f:g} is given twice")
        factors.append(f)
    return tuple(sorted(factors))


@dataclass
class ShardPlan:
    split: str
    number: int
    clips: list[Clip]
    fingerprint: str
    speed: float = 1.0  # != 1: the speed-perturbed copy of the train shard `number`

    @property
    def name(self) -> str:
        return shard_name(self.split, self.number, self.speed)

    @property
    def tar_path(self) -> str:  # relative to the output folder
        return shard_path(self.split, self.number, self.speed)


class OutFolderError(ReleaseError):
    """--out holds files the builder did not make (one line: what it found, what to do)."""


# --------------------------------------------------------------------------------------
# the output folder: only ever remove what the builder wrote
# --------------------------------------------------------------------------------------
def check_out_folder(out: Path) -> None:
    """OutFolderError unless `out` is absent, empty (a lock file aside) or a shard folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OutFolderError(f"--out {out} is a file, not a folder: choose a new or empty folder")
    found = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
    if found and not is_shard_folder(out):
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise OutFolderError(f"--out {out} is not empty and not a shard folder made by `asr-cli shards` (it holds "
                             f"{shown}); nothing was changed: choose a new or empty folder, or move those away")


def mark_out_folder(out: Path) -> None:
    """The builder's mark in `.parts/`: what lets a later build (--force included) touch the folder."""
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    mark = out / PARTS / BUILDER_MARK
    if not mark.is_file():
        atomic.write_text(mark, json_text({"made_by": "asr-cli shards", "format_version": FORMAT_VERSION}))


def _own_files(out: Path) -> list[Path]:
    """Every file of `out` the builder writes, by the format's names: the split folders' tars,
    `.parts/` metadata and decoder log, the three tables, and a killed run's `*.tmp` of any of
    them. Nothing else (a user's file in a split folder, a run folder put there) is listed."""
    tmp = atomic.TMP_SUFFIX
    files = []
    for split in SPLITS:
        folder = out / split
        for p in sorted(folder.iterdir()) if folder.is_dir() else []:
            name = p.name[: -len(tmp)] if p.name.endswith(tmp) else p.name
            if p.is_file() and not p.is_symlink() and SHARD_PATH.fullmatch(f"{split}/{name}"):
                files.append(p)
    parts = out / PARTS
    for p in sorted(parts.iterdir()) if parts.is_dir() else []:
        name = p.name[: -len(tmp)] if p.name.endswith(tmp) else p.name
        if p.is_file() and (PARTS_NAME.fullmatch(name) or name == "decoder.log"):
            files.append(p)
    for name in (INDEX, REJECTS, DATASET):
        files += [p for p in (out / name, atomic.tmp_path(out / name)) if p.is_file()]
    return files


def clear_out(out: Path, stale_only: bool) -> None:
    """--force: remove the builder's own files (then the split folders, if that left them
    empty); otherwise only a killed run's `*.tmp`."""
    for p in _own_files(out):
        if not stale_only or p.name.endswith(atomic.TMP_SUFFIX):
            p.unlink(missing_ok=True)
    if not stale_only:
        for split in SPLITS:
            try:
                (out / split).rmdir()
            except OSError:  # absent, or holds what is not ours: left as it is
                pass


# --------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------
def plan_shards(release: Release, cfg: BuildConfig, normalizer_version: str) -> list[ShardPlan]:
    base = {
        "format": FORMAT_VERSION,
        "features": cfg.features.to_dict(),
        "normalizer": normalizer_version,
        "bounds": [cfg.min_duration, cfg.max_duration, cfg.max_chars_per_second],
    }
    if check_codec(cfg.codec) != OLD_CODEC:  # a float16 build keeps the fingerprints it had before codecs
        base["codec"] = cfg.codec
    plans = []
    for split in SPLITS:
        clips = release.clips[split]
        if split == "train":
            clips = shuffled(clips, cfg.seed)
        for number, start in enumerate(range(0, len(clips), cfg.shard_size)):
            chunk = clips[start : start + cfg.shard_size]
            key = dict(base, split=split, clips=[(c.id, c.path.name, c.sentence, release.stamp(c.path)) for c in chunk])
            fp = hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()
            plans.append(ShardPlan(split, number, chunk, fp))
            for speed in cfg.speeds if split == "train" else ():  # its copies right after it
                key = dict(key, speed=speed)
                fp = hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()
                plans.append(ShardPlan(split, number, chunk, fp, speed))
    return plans


def shard_groups(plans: list[ShardPlan]) -> list[list[ShardPlan]]:
    """A shard with its speed copies: they come from the same decoded clips, so they are
    built (and rebuilt after a kill) together."""
    groups: list[list[ShardPlan]] = []
    for plan in plans:
        if plan.speed == 1.0:
            groups.append([plan])
        else:
            groups[-1].append(plan)
    return groups


def is_done(out: Path, plan: ShardPlan) -> bool:
    meta = _read_meta(out, plan)
    if meta is None or meta.get("fingerprint") != plan.fingerprint:
        return False
    return meta["utterances"] == 0 or (out / plan.tar_path).is_file()


def _read_meta(out: Path, plan: ShardPlan) -> dict | None:
    path = parts_path(out, plan.name)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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


# --------------------------------------------------------------------------------------
# the build
# --------------------------------------------------------------------------------------
def build(cfg: BuildConfig) -> dict:
    """Build (or resume) the shards of one Common Voice language. Returns the summary."""
    t0 = time.time()
    release = open_source(cfg)
    normalizer = get_normalizer(cfg.lang)
    check_out_folder(Path(cfg.out))  # before the lock: a refused folder is left without even a .lock
    if cfg.space_check:  # before the lock too: a build that cannot fit writes nothing at all
        check_space(disk_needs(release, cfg, normalizer))
    with lock_folder(Path(cfg.out), "shards"):
        check_out_folder(Path(cfg.out))  # again, now that no other build can change it
        return _build(release, normalizer, cfg, t0)


def dry_run(cfg: BuildConfig) -> dict:
    """`asr-cli shards --dry-run`: the build's `disk_report` and `train_selection`, from the
    TSVs and audio headers only; nothing is decoded, nothing written (no folder, no lock)."""
    release = open_source(cfg)
    return {**disk_needs(release, cfg, get_normalizer(cfg.lang)), "train_selection": train_selection(release, None),
            "source": release.source}


def disk_needs(release: Release, cfg: BuildConfig, normalizer) -> dict:
    """This build's disk: a resume's finished shards are not needed again, --force frees ours first."""
    out, plans = Path(cfg.out), plan_shards(release, cfg, normalizer.version)
    finished = [g for g in shard_groups(plans) if all(is_done(out, p) for p in g)]
    done = set() if cfg.force else {p.tar_path for g in finished for p in g}
    freed = sum(p.stat().st_size for p in _own_files(out)) if cfg.force and out.is_dir() else 0
    return disk_report(estimate(release, cfg, normalizer, plans), cfg, done, freed)


def _build(release: Release, normalizer, cfg: BuildConfig, t0: float) -> dict:
    out = Path(cfg.out)
    clear_out(out, stale_only=not cfg.force)  # --force: all of ours; else a killed run's *.tmp
    mark_out_folder(out)

    plans = plan_shards(release, cfg, normalizer.version)
    # a shard and its speed copies are (re)built together: a kill between them redoes the group
    todo = [p for g in shard_groups(plans) if not all(is_done(out, p) for p in g) for p in g]
    # the bar counts source clips, each decoded once with its speed copies (never a copy before it is made)
    originals = lambda ps: sum(len(p.clips) for p in ps if p.speed == 1.0)  # noqa: E731
    stats = _run(todo, out, cfg, normalizer, total=originals(plans), initial=originals(plans) - originals(todo))
    summary = assemble(out, plans, release, cfg, normalizer)
    if not summary["splits"]["train"]["utterances"]:  # nothing to train on: say so, do not exit 0
        raise ReleaseError(f"no clip of {release.root / cfg.train_set}.tsv could be used (rejects by reason: "
                           f"{summary['rejects']}; details in {out / REJECTS})")
    summary["run"] = {
        "shards_built": len(todo), "shards_reused": len(plans) - len(todo),
        "seconds": round(time.time() - t0, 2), "jobs": cfg.num_jobs(), **stats,
    }
    return summary


def _run(todo: list[ShardPlan], out: Path, cfg: BuildConfig, normalizer, total: int, initial: int) -> dict:
    """Extract features for every planned clip of `todo` and write their shards."""
    from tqdm import tqdm

    # (accumulators of the shard and of its speed copies, clip, text), in submission order
    queue: list[tuple[list[ShardAccumulator], Clip, str]] = []
    accumulators = []
    for group in shard_groups(todo):
        accs = [ShardAccumulator(plan, 0, cfg.codec) for plan in group]
        for clip in group[0].clips:
            text, reason = normalizer.analyse(clip.sentence)
            if reason:  # rejected once, by the original: its copies are simply not made
                accs[0].reject(clip, reason.split(":")[0], text_detail(reason, clip.sentence))
            else:
                queue.append((accs, clip, text))
                for acc in accs:
                    acc.pending += 1
        accumulators += accs
    tasks = [(str(clip.path), tuple(a.plan.speed for a in accs[1:]))
             for accs, clip, _ in queue]

    jobs = cfg.num_jobs()
    bar = tqdm(total=total, initial=initial, unit="clip", disable=not cfg.progress, dynamic_ncols=True,
               desc="features", smoothing=0.05)
    audio_s, started = 0.0, time.time()
    written = iter(accumulators)
    next_acc = next(written, None)

    bar.update(sum(len(g[0].clips) for g in shard_groups(todo)) - len(queue))  # transcripts rejected before decoding

    def flush_ready():
        nonlocal next_acc
        while next_acc is not None and next_acc.pending == 0:
            next_acc.finish(out)
            next_acc = next(written, None)

    log_path = str(out / PARTS / "decoder.log")
    if jobs == 1 or len(tasks) < 2:
        init_worker(cfg.features, None, cfg.max_duration, cfg.codec)
        results = map(extract, tasks)
        pool = None
    else:
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        pool = ctx.Pool(jobs, initializer=init_worker, initargs=(cfg.features, log_path, cfg.max_duration, cfg.codec))
        results = pool.imap(extract, tasks, chunksize=4)
    try:
        flush_ready()
        for (accs, clip, text), res in zip(queue, results):
            if res[0] == "ok":
                _, feats, info, stats, copies = res
                problem = duration_problem(info["duration"], text, cfg)
                if problem:  # the original's duration decides for its copies too
                    accs[0].reject(clip, *problem)
                else:
                    accs[0].add(clip, text, feats, info, stats)
                    for acc, (copy_feats, copy_info) in zip(accs[1:], copies):
                        acc.add(clip, text, copy_feats, copy_info, None)
                audio_s += info["duration"] + sum(c[1]["duration"] for c in copies)
            else:
                accs[0].reject(clip, res[1], res[2])
            for acc in accs:
                acc.pending -= 1
            bar.update(1)
            elapsed = max(time.time() - started, 1e-9)
            bar.set_postfix_str(f"{audio_s / 3600 / elapsed:.3f} audio-h/s, {audio_s / elapsed:.0f}x real time",
                                refresh=False)
            flush_ready()
        flush_ready()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    elapsed = max(time.time() - started, 1e-9)
    return {"audio_hours_processed": round(audio_s / 3600, 4), "extract_seconds": round(elapsed, 2),
            "realtime_factor": round(audio_s / elapsed, 1),
            "realtime_per_core": round(audio_s / elapsed / max(jobs, 1), 1)}


def text_detail(reason: str, sentence: str) -> str:
    if reason.startswith("unmappable_char:"):
        code = reason.split(":", 1)[1]
        return f"{code} ({chr(int(code[2:], 16))!r}) in {sentence!r}"
    return repr(sentence)


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
            "speakers": len({r["client_id"] for r in split_rows}),
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
