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

import multiprocessing as mp
import sys
import time
from pathlib import Path

from pipeline.assemble import assemble, format_summary  # noqa: F401  (the summary: re-exported)
from pipeline.config import BuildConfig  # noqa: F401  (every build default: a module without torch)
from pipeline.cv import Clip, Release, ReleaseError
from pipeline.estimate import check_space, disk_report, duration_problem, estimate, train_selection
from pipeline.extract import WORKER, ShardAccumulator, extract, init_worker  # noqa: F401  (archive_build's too)
from pipeline.lock import lock_folder
from pipeline.plan import (OutFolderError, ShardPlan, _own_files, check_out_folder, clear_out, is_done,  # noqa: F401
                           mark_out_folder, parse_speeds, plan_shards, shard_groups, text_detail)
from pipeline.releases import open_source
from pipeline.shardformat import PARTS, REJECTS
from pipeline.text import get_normalizer


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
