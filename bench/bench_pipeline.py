"""Pipeline throughput, side by side with the naive path, on the same 48 kHz MP3 clips.

    make bench            (or: .venv/bin/python bench/bench_pipeline.py --clips 400)

Rows (audio seconds processed per wall-clock second, per core):
  decode only            soundfile MP3 decode: the ceiling for anything reading MP3
  naive librosa          librosa.load(path, sr=16000) + librosa.feature.melspectrogram + log,
                         per file, one process: what a user would write first
  feature function       pipeline.audio.compute_features (decode, downmix, soxr, torchaudio mel)
  pipeline, N jobs       the whole `asr-cli shards` build: TSVs, normaliser, features, tar
                         writing with sha256, index.parquet and dataset.json
  lhotse                 lhotse's CutSet.compute_and_store_features (kaldi-compatible Fbank,
                         80 bins, lilcom storage, 1 job) on the same clips resampled to 16 kHz;
                         lhotse decodes the MP3s itself through its soundfile backend
                         (LibsndfileBackend: no ffmpeg / torchcodec needed). Manifests are made
                         before the clock starts. Skipped with a message without lhotse
                         (pip install '.[bench]').
  pipeline, 1 job, --speed 0.9,1.1   the build with speed copies; audio counts the copies'

The single-job build and lhotse are timed interleaved, best of --repeats, so that both see
the same machine load.

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

    from synth import synthesize

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


def bench_pipeline(cv_root: Path, lang: str, out: Path, jobs: int, speeds: tuple[float, ...] = (),
                   codec: str | None = None) -> tuple[float, dict]:
    from pipeline.build import BuildConfig, build

    cfg = BuildConfig(cv_root=cv_root, lang=lang, out=out, jobs=jobs, force=True, progress=False,
                      shard_size=500, speeds=speeds, **({"codec": codec} if codec else {}))
    t, cpu = time.perf_counter(), time.process_time()
    summary = build(cfg)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    hours = sum(s["hours"] for s in summary["splits"].values())  # speed copies included
    summary["bench_cpu_rate"] = hours * 3600 / cpu  # audio s per CPU s of this process (jobs=1 only)
    return hours * 3600 / wall, summary


def bench_stages(paths) -> list[tuple[str, float]]:
    """Where one job's time goes: (stage, CPU ms per audio second) for each step of a clip's way
    from MP3 to a shard member, timed one after the other on the same clips, 1 thread (the
    steps of `pipeline.audio._log_mel` written out here, so that each one can be timed)."""
    import hashlib
    import io
    import tarfile

    import numpy as np
    import soundfile as sf
    import torch

    from pipeline.audio import FeatureConfig, _mel_weights, resample
    from pipeline.shardformat import DEFAULT_CODEC, _add_member, encode_features

    torch.set_num_threads(1)
    cfg = FeatureConfig()
    window, fb = _mel_weights(cfg)
    spent = dict.fromkeys(["MP3 decode (libsndfile / mpg123)", "downmix + soxr HQ to 16 kHz",
                           "STFT (torch, 512 points)", "power, mel filters, log", "checks + float16",
                           f"{DEFAULT_CODEC} encoding", "tar member + sha256"], 0.0)
    names = list(spent)
    audio = 0.0
    encode_features(np.zeros((10, cfg.n_mels), np.float16), DEFAULT_CODEC)  # its one-time set-up, not timed
    for p in paths:
        t0 = time.perf_counter()
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
        t1 = time.perf_counter()
        wave = resample(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0], rate, cfg)
        t2 = time.perf_counter()
        with torch.inference_mode():
            spec = torch.stft(torch.from_numpy(wave), cfg.n_fft, cfg.hop_length, cfg.win_length, window,
                              center=True, pad_mode="reflect", return_complex=True)
            t3 = time.perf_counter()
            ri = torch.view_as_real(spec)
            feats = torch.log((fb @ (ri[..., 0].square() + ri[..., 1].square())).add_(cfg.log_offset)).T
            t4 = time.perf_counter()
            f16 = feats.to(torch.float16).contiguous().numpy()
        float(np.abs(wave).max()), bool(np.isfinite(f16).all())
        t5 = time.perf_counter()
        ext, blob = encode_features(f16, DEFAULT_CODEC)
        t6 = time.perf_counter()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add_member(tar, f"x.{ext}", blob)
        hashlib.sha256(buf.getvalue()).hexdigest()
        t7 = time.perf_counter()
        for name, dt in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)):
            spent[name] += dt
        audio += len(wave) / cfg.sample_rate
    return [(name, 1000 * dt / audio) for name, dt in spent.items()]


def lhotse_cuts(paths):
    """lhotse cuts of the clips, resampled to 16 kHz, decoded by lhotse's soundfile backend;
    None (and a message) without lhotse."""
    try:
        import lhotse
        from lhotse.audio.backend import LibsndfileBackend, set_current_audio_backend
    except ImportError:
        print("lhotse row skipped: lhotse is not installed (pip install '.[bench]')")
        return None
    set_current_audio_backend(LibsndfileBackend())
    recordings = lhotse.RecordingSet.from_recordings(lhotse.Recording.from_file(str(p)) for p in paths)
    return lhotse.CutSet.from_manifests(recordings=recordings).resample(16000)


def bench_lhotse(cuts, out: Path) -> tuple[float, float]:
    """lhotse's compute_and_store_features: kaldi Fbank (80 bins), lilcom chunky storage, 1 job."""
    import torch
    from lhotse import Fbank, FbankConfig, LilcomChunkyWriter

    torch.set_num_threads(1)
    shutil.rmtree(out, ignore_errors=True)
    t, cpu = time.perf_counter(), time.process_time()
    done = cuts.compute_and_store_features(extractor=Fbank(FbankConfig(num_mel_bins=80)), storage_path=str(out),
                                           num_jobs=1, storage_type=LilcomChunkyWriter)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    audio = sum(c.duration for c in done)
    return audio / wall, audio / cpu  # audio s per wall s, per CPU s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=400, help="clips in the synthetic bench corpus")
    ap.add_argument("--cv-root", type=Path, help="use a real release instead (parent of the language folder)")
    ap.add_argument("--lang", default="fr")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="job counts to time the full pipeline with")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--sample", type=int, default=150, help="clips used for the single-process rows")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs of the 1-job build and lhotse (best kept)")
    ap.add_argument("--speed", default="0.9,1.1", help="speed factors of the build-with-copies row ('' skips it)")
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
    from pipeline.build import parse_speeds

    cuts = lhotse_cuts(paths)
    results, best_1, best_lh, cpu_1, cpu_lh = {}, 0.0, 0.0, 0.0, 0.0
    for _ in range(args.repeats):  # the 1-job build and lhotse interleaved, on the same load
        rate, summary = bench_pipeline(cv_root, args.lang, args.work / "shards-j1", 1)
        best_1, cpu_1 = max(best_1, rate), max(cpu_1, summary["bench_cpu_rate"])
        if cuts is not None:
            rate, cpu = bench_lhotse(cuts, args.work / "lhotse-feats")
            best_lh, cpu_lh = max(best_lh, rate), max(cpu_lh, cpu)
    for jobs in args.jobs:
        rate = best_1 if jobs == 1 else bench_pipeline(cv_root, args.lang, args.work / f"shards-j{jobs}", jobs)[0]
        results[jobs] = rate
        rows.append((f"full pipeline, {jobs} job{'s' if jobs > 1 else ''}", rate, jobs))
    if cuts is not None:
        rows.append(("lhotse compute_and_store_features, 1 job", best_lh, 1))
    speeds = parse_speeds(args.speed)
    if speeds:
        rate, _ = bench_pipeline(cv_root, args.lang, args.work / "shards-speed", 1, speeds)
        rows.append((f"full pipeline, 1 job, --speed {args.speed}", rate, 1))

    naive = rows[1][1]
    print(f"\n{'path':<40} {'audio s / wall s':>17} {'per core':>10} {'vs naive':>9}")
    for name, rate, cores in rows:
        print(f"{name:<40} {rate:>16.0f}x {rate / cores:>9.0f}x {rate / cores / naive:>8.1f}x")
    if cuts is not None:
        print(f"\nthe 1-job build runs at {best_1 / rows[0][1]:.0%} of the bare MP3 decode rate")
        print(f"\n1-job build vs lhotse (all {len(paths)} clips, best of {args.repeats} interleaved): "
              f"{best_1 / best_lh:.2f}x by wall time ({best_1:.0f}x vs {best_lh:.0f}x real time), "
              f"{cpu_1 / cpu_lh:.2f}x by CPU time ({cpu_1:.0f}x vs {cpu_lh:.0f}x real time per CPU second)")
    stages = bench_stages(sample)
    total = sum(ms for _, ms in stages)
    print(f"\nwhere one job's time goes ({len(sample)} clips, CPU ms per audio second; the build adds "
          "the TSVs, the normaliser, JSON and the tables):")
    for name, ms in stages:
        print(f"  {name:<36} {ms:>6.3f} ms  {ms / total:>5.1%}")
    print(f"  {'all':<36} {total:>6.3f} ms  = {1000 / total:.0f}x real time per core")
    if len(results) > 1:
        lo, hi = min(results), max(results)
        print(f"\nspeed-up from {lo} to {hi} jobs: {results[hi] / results[lo]:.2f}x "
              f"(machine has {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
