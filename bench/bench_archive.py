"""Shards from a release's .tar.gz against shards from its extracted folder, side by side.

    .venv/bin/python bench/bench_archive.py --clips 600        (corpus made once under bench/out/archive/)

Rows (the same synthetic release, the same --jobs; each build into a fresh folder):
  folder                  asr-cli shards --cv-root (the extracted release)
  archive, TSVs first     asr-cli shards --cv-archive on a .tar.gz listing its TSVs before the clips: one pass
  archive, clips first    the same with the clips first: two passes (TSVs, then clips)
  dry run folder / archive   --dry-run (the archive's streams it through once: which clips are there)
  stream only             one pass through the archive reading every member, nothing decoded: the
                          floor of an archive pass (MB of archive per second)

Columns: wall seconds, clips per second, audio seconds per wall second, and for the builds the
peak disk of --out while it ran (sampled every 20 ms) over the final shard folder's size: staging
keeps it to the shards plus about one shard group (--shard-size 50 gives this corpus ~10 train
shards, as a real release has hundreds of 1000). Every archive build is checked to give the
folder's shards (sha256 of every tar) and index.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _size(folder: Path) -> int:
    total = 0
    for p in folder.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:  # renamed or removed while summed
            pass
    return total


def _archive(release: Path, dest: Path, tsv_first: bool) -> Path:
    if dest.exists():
        return dest
    files = sorted(p for p in release.rglob("*") if p.is_file() and not p.name.startswith("."))
    clips = [p for p in files if p.parent.name == "clips"]
    rest = [p for p in files if p.parent.name != "clips"]
    with tarfile.open(dest.with_suffix(".tmp"), "w:gz") as tar:
        for p in (rest + clips if tsv_first else clips + rest):
            tar.add(p, arcname=f"cv-corpus-25.0-2026-03-09/fr/{p.relative_to(release).as_posix()}")
    dest.with_suffix(".tmp").rename(dest)
    return dest


def _timed_build(builder, cfg) -> tuple[float, dict, int]:
    """(seconds, summary, peak bytes of cfg.out while it ran)."""
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _size(cfg.out))
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.time()
    try:
        summary = builder.build(cfg)
    finally:
        done.set()
        thread.join()
    return time.time() - t0, summary, max(peak[0], _size(cfg.out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=600)
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (0: every core)")
    ap.add_argument("--shard-size", type=int, default=50, help="clips per shard (a release's 1000 against its size)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "archive")
    args = ap.parse_args()

    from pipeline import archive_build
    from pipeline import build as folder_build
    from pipeline.archive import _Stream
    from pipeline.build import BuildConfig
    from pipeline.shardformat import read_index
    from synth import synthesize

    release = args.out / f"synth-{args.clips}" / "fr"
    synthesize(release, lang="fr", num_clips=args.clips, seed=7, progress=True)
    archives = {"archive, TSVs first": _archive(release, args.out / f"tsv-first-{args.clips}.tar.gz", True),
                "archive, clips first": _archive(release, args.out / f"clips-first-{args.clips}.tar.gz", False)}

    def cfg(source: Path, name: str) -> BuildConfig:
        out = args.out / "shards" / name
        shutil.rmtree(out, ignore_errors=True)
        return BuildConfig(cv_root=source, lang="fr", out=out, jobs=args.jobs, shard_size=args.shard_size,
                           progress=False)

    rows = []
    seconds, ref, peak = _timed_build(folder_build, cfg(release.parent, "folder"))
    final = _size(args.out / "shards" / "folder")
    clips = sum(ref["splits"][s]["utterances"] for s in ("train", "dev", "test"))
    audio = sum(ref["splits"][s]["hours"] for s in ("train", "dev", "test")) * 3600
    rows.append(("folder", seconds, clips, audio, peak / final, ""))
    ref_sha = [s["sha256"] for split in ("train", "dev", "test") for s in ref["splits"][split]["shards"]]
    for name, archive in archives.items():
        seconds, summary, peak = _timed_build(archive_build, cfg(archive, name))
        sha = [s["sha256"] for split in ("train", "dev", "test") for s in summary["splits"][split]["shards"]]
        same = sha == ref_sha and read_index(args.out / "shards" / name) == read_index(args.out / "shards" / "folder")
        rows.append((name, seconds, clips, audio, peak / _size(args.out / "shards" / name),
                     f"{summary['source']['passes']} pass(es), {'same shards' if same else 'SHARDS DIFFER'}"))
    for name, source, builder in (("dry run, folder", release.parent, folder_build),
                                  ("dry run, archive", archives["archive, clips first"], archive_build)):
        t0 = time.time()
        builder.dry_run(cfg(source, "dry"))
        rows.append((name, time.time() - t0, clips, audio, None, ""))
    archive = archives["archive, clips first"]
    t0 = time.time()
    stream = _Stream(archive)
    for m in stream.members():
        if m.isfile():
            stream.read(m)
    stream.close()
    stream_s = time.time() - t0
    rows.append(("stream only", stream_s, clips, audio, None, f"{archive.stat().st_size / 1e6 / stream_s:.0f} MB/s "
                                                              f"of archive ({archive.stat().st_size / 1e6:.1f} MB)"))

    print(f"{clips} clips, {audio / 3600:.3f} h; jobs {ref['run']['jobs']}; {len(ref_sha)} shards, "
          f"{final / 1e6:.1f} MB with their metadata")
    print(f"{'':22} {'seconds':>8} {'clips/s':>8} {'x real time':>12} {'peak disk':>10}")
    for name, seconds, n, a, peak_ratio, note in rows:
        peak_text = f"{peak_ratio:.2f}x" if peak_ratio is not None else ""
        print(f"{name:22} {seconds:8.2f} {n / seconds:8.1f} {a / seconds:12.1f} {peak_text:>10}  {note}")


if __name__ == "__main__":
    main()
