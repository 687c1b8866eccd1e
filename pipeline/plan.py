"""A build's plan, made before any audio is decoded: the speed factors (`parse_speeds`), the
shards every split is cut into (`plan_shards`: which clip goes to which shard never depends on
what is rejected, on the job count, or on where an earlier run was killed), which of them a
rerun can keep (`is_done`), and the output folder's rules (`check_out_folder`, `clear_out`:
the builder only ever removes what it wrote).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from pipeline import atomic
from pipeline.config import BuildConfig
from pipeline.cv import SPLITS, Clip, Release, ReleaseError, shuffled
from pipeline.lock import LOCK_FILE
from pipeline.shardformat import (BUILDER_MARK, DATASET, FORMAT_VERSION, INDEX, OLD_CODEC, PARTS, PARTS_NAME, REJECTS,
                                  SHARD_PATH, SPEED_RANGE, check_codec, is_shard_folder, json_text, parts_path,
                                  shard_name, shard_path)


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


def text_detail(reason: str, sentence: str) -> str:
    if reason.startswith("unmappable_char:"):
        code = reason.split(":", 1)[1]
        return f"{code} ({chr(int(code[2:], 16))!r}) in {sentence!r}"
    return repr(sentence)
