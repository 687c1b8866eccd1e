"""The disk before the build: what a build will keep and write, estimated without decoding.

`pipeline.build` plans the shards; this module turns a plan into figures: per split the clips,
hours, speakers and bytes a build would keep and write (durations from `clip_durations.tsv` or
the audio headers through `pipeline.cv.ClipDurations`, bytes per sample from the shard format's
`estimate_sample_bytes`), the free space of `--out`, the refusal of a build that cannot fit, and
the report of `asr-cli shards --dry-run`. The row of a kept utterance and the duration bounds
live here too, so the estimate and the build apply the very same ones.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections import Counter
from pathlib import Path

from pipeline.cv import LEFT_OUT_REASONS, SPLITS, Clip, Release, ReleaseError
from pipeline.selection import source_lines
from pipeline.shardformat import estimate_sample_bytes, row_value, speed_id


def index_row(clip: Clip, text: str, plan, frames: int, info: dict) -> dict:
    """A kept utterance's index row (info: duration, sample_rate, channels of its audio)."""
    speed = plan.speed
    return {
        "id": speed_id(clip.id, speed), "split": clip.split, "shard": plan.tar_path,
        "frames": frames, "duration": round(info["duration"], 4),
        "text": text, "sentence": clip.annotated if clip.annotated is not None else clip.sentence,
        "client_id": clip.meta.get("client_id", ""), "gender": clip.meta.get("gender", ""),
        "age": clip.meta.get("age", ""), "accent": clip.meta.get("accent", ""),
        "sample_rate": int(info["sample_rate"]), "channels": int(info["channels"]),
        "path": clip.path.name,  # the audio file, relative to <cv-root>/<lang>/clips
        "speed": speed,
    }


def sample_meta(row: dict) -> dict:
    """The sample's JSON in the tar: its index row less the shard and path. An original's is
    what it was before speed copies existed (same tar bytes), so it has no `speed` either."""
    hidden = ("shard", "path") if row["speed"] != 1.0 else ("shard", "path", "speed")
    return {k: v for k, v in row.items() if k not in hidden}


def duration_problem(duration: float, text: str, cfg) -> tuple[str, str] | None:
    """(reason, detail) of a kept text's clip outside the build's bounds (cfg: a BuildConfig), else None."""
    if duration < cfg.min_duration:
        return "too_short", f"{duration:.2f}s < {cfg.min_duration}s"
    if duration > cfg.max_duration:
        return "too_long", f"{duration:.2f}s > {cfg.max_duration}s"
    if len(text) / duration > cfg.max_chars_per_second:
        return "text_too_long_for_audio", f"{len(text)} characters in {duration:.2f}s"
    return None



class DiskSpaceError(ReleaseError):
    """The build would not fit in the free space of --out (one line with both figures)."""


def free_bytes(path: Path) -> tuple[int, Path]:
    """(free bytes, folder measured) of the filesystem `path` would be on: its nearest
    existing parent, since --out need not exist yet."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free, p


def tar_bytes(samples: list[int]) -> int:
    """A tar's size from its samples' sizes: tarfile ends it with two zero blocks and pads
    the whole to its record size."""
    if not samples:
        return 0
    size = sum(samples) + 2 * tarfile.BLOCKSIZE
    return -(-size // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def estimate(release: Release, cfg, normalizer, plans: list) -> dict:
    """What the build of `release` will keep and the bytes it will write, without decoding
    (cfg: its BuildConfig, plans: its `plan_shards`).

    The same plan, normaliser (text rejects) and duration bounds as the build, with durations
    from `clip_durations.tsv` or the audio headers (`pipeline.cv.ClipDurations`); bytes per
    sample from the shard format (`estimate_sample_bytes`), speed copies at duration/speed.
    What only decoding finds (silent or truncated audio) the build rejects on top of this.

    Returns {"splits": {split: {clips, utterances, hours, speakers, bytes, rejected}},
    "shard_bytes": {tar path: bytes}, "metadata": {tar path: bytes of its rows in .parts/ and
    the index}, "metadata_bytes", "bytes" (the two together), "rejects": {reason: n}}."""
    durations = release.durations
    splits = {s: {"clips": 0, "utterances": 0, "seconds": 0.0, "speakers": set(), "bytes": 0, "rejected": 0}
              for s in SPLITS}
    rejects: Counter = Counter(p.reason for p in release.problems)
    for p in release.problems:
        if p.split in splits:  # not Spontaneous Speech's rows in no split (counted apart: source_lines)
            splits[p.split]["rejected"] += 1
    shard_bytes: dict[str, int] = {}
    metadata: dict[str, int] = {}
    kept: dict[int, tuple[str, float]] = {}  # clip (by id()) -> (text, seconds), decided by the original
    for plan in plans:
        sizes = []
        metadata[plan.tar_path] = 0
        for clip in plan.clips:
            if plan.speed == 1.0:
                text, reason = normalizer.analyse(clip.sentence)
                seconds, problem, _ = durations.probe(clip.path) if not reason else (None, reason, "")
                if seconds is not None:
                    bad = duration_problem(seconds, text, cfg)
                    problem = bad[0] if bad else ""
                if problem:
                    rejects[problem.split(":")[0]] += 1
                    splits[plan.split]["rejected"] += 1
                    continue
                kept[id(clip)] = (text, seconds)
                s = splits[plan.split]
                s["clips"] += 1
                s["seconds"] += seconds
                s["speakers"].add(clip.meta.get("client_id", ""))
            elif id(clip) not in kept:
                continue
            text, seconds = kept[id(clip)]
            seconds /= plan.speed
            frames = cfg.features.num_frames(int(seconds * cfg.features.sample_rate))
            row = index_row(clip, text, plan, frames, {"duration": seconds, "sample_rate": 48000, "channels": 1})
            meta = len(json.dumps(sample_meta(row), ensure_ascii=False, sort_keys=True).encode())
            sizes.append(estimate_sample_bytes(frames, cfg.features.n_mels, cfg.codec, meta))
            metadata[plan.tar_path] += 2 * len(json.dumps(row, ensure_ascii=False).encode())  # .parts and index
            splits[plan.split]["utterances"] += 1
        shard_bytes[plan.tar_path] = tar_bytes(sizes)
        splits[plan.split]["bytes"] += shard_bytes[plan.tar_path]
    out_splits = {split: {"clips": s["clips"], "utterances": s["utterances"], "hours": round(s["seconds"] / 3600, 4),
                          "speakers": len(s["speakers"] - {""}), "bytes": s["bytes"], "rejected": s["rejected"]}
                  for split, s in splits.items()}
    total = sum(shard_bytes.values()) + sum(metadata.values())
    return {"splits": out_splits, "shard_bytes": shard_bytes, "metadata": metadata,
            "metadata_bytes": sum(metadata.values()), "bytes": total, "rejects": dict(sorted(rejects.items()))}


def disk_report(est: dict, cfg, done: set[str], freed: int) -> dict:
    """The estimate with what the build still needs (the shards `done` of a resumed build are
    not written again) against the free space of --out (plus `freed`: what --force removes)."""
    need = est["bytes"] - sum(est["shard_bytes"][path] + est["metadata"][path] for path in done)
    free, where = free_bytes(Path(cfg.out))
    return {**est, "needed_bytes": need, "free_bytes": free + freed, "free_at": str(where),
            "fits": need <= free + freed, "freed_bytes": freed, "codec": cfg.codec,
            "speed_factors": list(cfg.speeds)}


def check_space(report: dict) -> None:
    """DiskSpaceError, in one line with both figures, when the build would not fit."""
    if not report["fits"]:
        freed = " (with what --force removes)" if report["freed_bytes"] else ""
        raise DiskSpaceError(f"the build needs about {_size(report['needed_bytes'])} and {report['free_at']} has "
                             f"{_size(report['free_bytes'])} free{freed}"
                             ": free some space, choose another --out, or pass --no-space-check to build until "
                             "the disk is full")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"


def format_dry_run(report: dict) -> str:
    """The dry run's table: per split what the build would keep and the disk it would take."""
    lines = [f"{'split':<6} {'clips':>8} {'hours':>8} {'speakers':>9} {'rejected':>9} {'disk':>11}"]
    for split, s in report["splits"].items():
        lines.append(f"{split:<6} {s['clips']:>8} {s['hours']:>8.3f} {s['speakers']:>9} {s['rejected']:>9} "
                     f"{_size(s['bytes']):>11}")
    train = report["splits"]["train"]
    if report["speed_factors"]:
        factors = ", ".join(f"{f:g}" for f in report["speed_factors"])
        lines.append(f"train's disk includes {train['utterances'] - train['clips']} speed copies ({factors})")
    lines += source_lines(report.get("source", {})) + selection_lines(report["train_selection"])
    if report["rejects"]:
        lines.append("rejected by reason (before decoding): "
                     + ", ".join(f"{k} {v}" for k, v in report["rejects"].items()))
    lines.append(f"disk: {_size(report['bytes'])} in all with the {report['codec']} codec (shards "
                 f"{_size(report['bytes'] - report['metadata_bytes'])}, metadata {_size(report['metadata_bytes'])})"
                 + (f"; {_size(report['needed_bytes'])} still to write" if report["needed_bytes"] != report["bytes"]
                    else ""))
    verdict = "fits" if report["fits"] else "does NOT fit: the build would stop before writing (--no-space-check)"
    lines.append(f"free at {report['free_at']}: {_size(report['free_bytes'])}; the build {verdict}")
    return "\n".join(lines)


def train_selection(release: Release, index_rows: list[dict] | None) -> dict:
    """What the split rules and the speaker cap left out of train (clips and hours per reason,
    hours from `ClipDurations`), and for train_set "validated" the hours gained over train.tsv:
    the hours of the kept train clips that train.tsv does not list (from the index's decoded
    durations after a build, from the headers in a dry run)."""
    left = {}
    for reason in LEFT_OUT_REASONS:
        probs = [p for p in release.problems if p.reason == reason and p.split == "train"]
        if probs:
            seconds = sum(release.durations.seconds(p.path) for p in probs if p.path is not None)
            left[reason] = {"clips": len(probs), "hours": round(seconds / 3600, 4)}
    result: dict = {"left_out": left}
    if release.train_tsv_paths is not None:
        official = {c.id for c in release.clips["train"] if c.path in release.train_tsv_paths}
        if index_rows is None:
            gained = sum(release.durations.seconds(c.path) for c in release.clips["train"] if c.id not in official)
        else:
            gained = sum(r["duration"] for r in index_rows
                         if r["split"] == "train" and row_value(r, "speed") == 1.0 and r["id"] not in official)
        result["hours_gained_over_train_tsv"] = round(gained / 3600, 4)
    return result


def selection_lines(selection: dict) -> list[str]:
    lines = []
    if selection["left_out"]:
        lines.append("left out of train: " + ", ".join(f"{k} {v['clips']} ({v['hours']:.3f} h)"
                                                      for k, v in selection["left_out"].items()))
    if "hours_gained_over_train_tsv" in selection:
        lines.append(f"train from validated.tsv: {selection['hours_gained_over_train_tsv']:.3f} h more than "
                     "the clips train.tsv lists")
    return lines


