"""Pipeline throughput, side by side with the naive path, on the same 48 kHz MP3 clips.

    make bench            (or: .venv/bin/python bench/bench_pipeline.py --clips 400)

Rows (audio seconds processed per wall-clock second, per core):
  decode only            soundfile MP3 decode: the ceiling for anything reading MP3
  naive librosa          librosa.load(path, sr=16000) + librosa.feature.melspectrogram + log,
                         per file, one process: what a user would write first
  feature function       pipeline.audio.compute_features (decode, downmix, soxr, torchaudio mel)
  pipeline, N jobs       the whole `asr-cli shards` build: TSVs, normaliser, features, tar
                         writing with sha256, index.parquet and dataset.json

The clips come from the synthetic corpus (generated once under bench/out/, 48 kHz mono
clips only) unless --cv-root points at a real release's language folder parent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench_corpus(out: Path, clips: int) -> Path:
    """A Common Voice root whose fr/ holds only 48 kHz mono clips of the synthetic corpus."""
    import soundfile as sf

    from pipeline.synth import synthesize

    src = out / "synth" / "fr"
    synthesize(src, lang="fr", num_clips=clips, seed=7, progress=True)
    root = out / "cv48"
    dst = root / "fr"
    if (dst / ".done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (dst / "clips").mkdir(parents=True)
    keep = set()
    for mp3 in sorted((src / "clips").glob("*.mp3")):
        info = sf.info(str(mp3))
        if info.samplerate == 48000 and info.channels == 1:
            os.link(mp3, dst / "clips" / mp3.name)
            keep.add(mp3.name)
    for tsv in ("train", "dev", "test", "validated"):
        lines = (src / f"{tsv}.tsv").read_text().splitlines()
        header, rows = lines[0], lines[1:]
        col = header.split("\t").index("path")
        rows = [r for r in rows if r.split("\t")[col] in keep]
        (dst / f"{tsv}.tsv").write_text("\n".join([header, *rows]) + "\n")
    (dst / ".done").touch()
    return root


def _clip_paths(cv_root: Path, lang: str) -> list[Path]:
    return sorted((cv_root / lang / "clips").glob("*.mp3"))


def bench_decode(paths) -> float:
    import soundfile as sf

    audio = 0.0
    t = time.perf_counter()
    for p in paths:
        data, sr = sf.read(str(p), dtype="float32")
        audio += len(data) / sr
    return audio / (time.perf_counter() - t)


def bench_naive(paths) -> float:
    import librosa
    import numpy as np

    audio = 0.0
    t = time.perf_counter()
    for p in paths:
        y, sr = librosa.load(str(p), sr=16000)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, win_length=400, hop_length=160, n_mels=80)
        np.log(mel + 1e-6).T.astype(np.float16)
        audio += len(y) / sr
    return audio / (time.perf_counter() - t)


def bench_features(paths) -> float:
    import torch

    from pipeline.audio import compute_features

    torch.set_num_threads(1)
    audio = 0.0
    t = time.perf_counter()
    for p in paths:
        _, info = compute_features(p)
        audio += info["duration"]
    return audio / (time.perf_counter() - t)


def bench_pipeline(cv_root: Path, lang: str, out: Path, jobs: int) -> tuple[float, dict]:
    from pipeline.build import BuildConfig, build

    cfg = BuildConfig(cv_root=cv_root, lang=lang, out=out, jobs=jobs, force=True, progress=False,
                      shard_size=500)
    t = time.perf_counter()
    summary = build(cfg)
    wall = time.perf_counter() - t
    hours = sum(s["hours"] for s in summary["splits"].values())
    return hours * 3600 / wall, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=400, help="clips in the synthetic bench corpus")
    ap.add_argument("--cv-root", type=Path, help="use a real release instead (parent of the language folder)")
    ap.add_argument("--lang", default="fr")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="job counts to time the full pipeline with")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--sample", type=int, default=150, help="clips used for the single-process rows")
    args = ap.parse_args()

    cv_root = args.cv_root or _bench_corpus(args.work, args.clips)
    paths = _clip_paths(cv_root, args.lang)
    if not paths:
        raise SystemExit(f"no MP3 clips under {cv_root}/{args.lang}/clips")
    sample = paths[: args.sample]
    print(f"\n{len(paths)} clips (48 kHz MP3) under {cv_root}/{args.lang}; single-process rows use {len(sample)}")

    rows = []
    bench_decode(sample[:5])  # warm the page cache and the libraries
    rows.append(("decode only (soundfile)", bench_decode(sample), 1))
    rows.append(("naive: librosa.load + melspectrogram", bench_naive(sample), 1))
    rows.append(("feature function (decode+soxr+mel)", bench_features(sample), 1))
    results = {}
    for jobs in args.jobs:
        rate, summary = bench_pipeline(cv_root, args.lang, args.work / f"shards-j{jobs}", jobs)
        results[jobs] = rate
        rows.append((f"full pipeline, {jobs} job{'s' if jobs > 1 else ''}", rate, jobs))

    naive = rows[1][1]
    print(f"\n{'path':<40} {'audio s / wall s':>17} {'per core':>10} {'vs naive':>9}")
    for name, rate, cores in rows:
        print(f"{name:<40} {rate:>16.0f}x {rate / cores:>9.0f}x {rate / cores / naive:>8.1f}x")
    if len(results) > 1:
        lo, hi = min(results), max(results)
        print(f"\nspeed-up from {lo} to {hi} jobs: {results[hi] / results[lo]:.2f}x "
              f"(machine has {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
