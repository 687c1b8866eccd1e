"""The shard format's feature codecs side by side on the same clips: float16 (the format
before codecs), qdelta (the default), and lhotse's lilcom.

    make bench            (or: .venv/bin/python bench/bench_codec.py [--runs RUN_QDELTA RUN_FLOAT16])

Rows, all from one run:
  bytes per audio hour   a sample's features as a shard tar holds them (the member's 512-byte
                         header and padding included; the JSON member, the same for every
                         codec, left out), per hour of audio; lilcom as lhotse stores it
                         (tick_power -5, lhotse's default) and at qdelta's step (tick_power -3)
  largest error          the largest |decoded - float16 features| over every value
  decode us / utt        decoding one utterance's features in the loader's process
  + band-limited, 8 kHz  the same clips as 8 kHz recordings (nothing above ~3.6 kHz, digital
                         silence at the ends): the bins above are dead, at the log floor
  after CMVN             the largest gap between the two codecs once normalised, with the
                         CMVN of before (std floored at 1e-4: 625 on dead bins) and of now
  + background noise     the same clips with white noise 30 dB under the speech: real
                         recordings are never digitally silent as espeak-ng's are, and noise
                         is what costs a codec bytes
  pipeline rate          the whole 1-job build of the bench corpus with each codec, timed
                         interleaved, best of --repeats (audio s per wall s)
  loader per worker      utterances a second one DataLoader worker delivers from each build,
                         interleaved, best of --repeats
  dev / test CER         from two demo runs trained on each codec's shards (--runs; the
                         commands are in docs/RESULTS.md)

The clips are the synthetic bench corpus of bench/bench_pipeline.py (made once under
bench/out/) unless --cv-root points at a real release's language folder parent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline.shardformat import (CODEC_MEMBER, DEFAULT_CODEC, OLD_CODEC, decode_features,  # noqa: E402
                                  encode_features)

TAR_BLOCK = 512
BARS = {"bytes": 0.4, "loader": 0.8, "pipeline": 0.95, "cer_points": 0.3}  # the bars, qdelta / float16


def member_bytes(size: int) -> int:
    """What a member of `size` bytes takes in a tar: its header block and its padded data."""
    return TAR_BLOCK + (size + TAR_BLOCK - 1) // TAR_BLOCK * TAR_BLOCK


def with_noise(feats_fn, clips, snr_db: float = 30.0):
    """Features of each clip with white noise `snr_db` under its RMS (seeded per clip)."""
    import soundfile as sf

    from pipeline.audio import FeatureConfig, resample, waveform_features

    out = []
    for i, clip in enumerate(clips):
        data, rate = sf.read(str(clip), dtype="float32", always_2d=True)
        wave = resample(data.mean(axis=1), rate, FeatureConfig())
        rms = float(np.sqrt(np.mean(wave**2)))
        noise = np.random.default_rng(i).standard_normal(len(wave)).astype(np.float32) * rms * 10 ** (-snr_db / 20)
        out.append(waveform_features(wave + noise, 16000)[0])
    return out


def band_limited(clips, rate: int = 8000):
    """Features of each clip as an 8 kHz recording of it gives them (synth.bandlimit:
    nothing above ~3.6 kHz, 0.2 s of digital silence at each end)."""
    import soundfile as sf

    from pipeline.audio import waveform_features
    from synth.bandlimit import band_limit

    out = []
    for clip in clips:
        data, sr = sf.read(str(clip), dtype="float32", always_2d=True)
        out.append(waveform_features(band_limit(data, sr, rate), rate)[0])
    return out


def normalised_gap(feats: list[np.ndarray]) -> dict[str, tuple[float, int]]:
    """The largest |qdelta - float16| after each is normalised with its own CMVN, and the
    number of bins over 0.1: with the CMVN of before (float16 values, std floored at 1e-4) and
    with the one of now (the stored values, std floored at featstats.CMVN_STD_FLOOR)."""
    from pipeline.featstats import BinStats, applied_cmvn, cmvn_record
    from pipeline.shardformat import stored_values

    def normalised(values, cmvn):
        mean, std = np.asarray(cmvn["mean"]), np.asarray(cmvn["std"])
        return np.concatenate([(v - mean) / std for v in values])

    out = {}
    for name, stats_of, floor in (("before", lambda c: OLD_CODEC, False), ("now", lambda c: c, True)):
        norm = {}
        for codec in (OLD_CODEC, DEFAULT_CODEC):
            stored = [stored_values(f, codec).astype(np.float64) for f in feats]
            stats = sum((BinStats.of(stored_values(f, stats_of(codec))) for f in feats), BinStats())
            cmvn = applied_cmvn(cmvn_record(stats)) if floor else cmvn_record(stats)
            norm[codec] = normalised(stored, cmvn)
        gap = np.abs(norm[DEFAULT_CODEC] - norm[OLD_CODEC]).max(axis=0)
        out[name] = (float(gap.max()), int((gap > 0.1).sum()))
    return out


def codec_rows(feats: list[np.ndarray], hours: float) -> list[tuple[str, float, float, float]]:
    """(name, bytes per audio hour, largest error, decode us per utterance) of each codec."""
    rows = []
    for codec in (OLD_CODEC, DEFAULT_CODEC):
        encoded = [encode_features(f, codec) for f in feats]
        size = sum(member_bytes(len(data)) for _, data in encoded)
        err, t = 0.0, time.perf_counter()
        decoded = [decode_features({ext: memoryview(data)}) for ext, data in encoded]
        dt = (time.perf_counter() - t) / len(feats)
        for f, d in zip(feats, decoded):
            err = max(err, float(np.abs(d.astype(np.float32) - f.astype(np.float32)).max()))
        rows.append((codec, size / hours, err, dt * 1e6))
    try:
        import lilcom
    except ImportError:
        print("lilcom rows skipped: lilcom is not installed (pip install '.[bench]')")
        return rows
    for tick in (-5, -3):
        blobs = [lilcom.compress(f.astype(np.float32), tick_power=tick) for f in feats]
        t = time.perf_counter()
        decoded = [lilcom.decompress(b) for b in blobs]
        dt = (time.perf_counter() - t) / len(feats)
        err = max(float(np.abs(d - f.astype(np.float32)).max()) for f, d in zip(feats, decoded))
        rows.append((f"lilcom, tick_power {tick}", sum(member_bytes(len(b)) for b in blobs) / hours, err, dt * 1e6))
    return rows


def loader_rate(shards_dir: Path, utterances: int, seconds: float) -> float:
    """Utterances a second that one DataLoader worker delivers from the train split."""
    from bench_loader import _measure

    from asr.data.loader import LoaderConfig, make_loader
    from asr.tokens.tokenizer import CharTokenizer
    from pipeline.shardformat import ShardSet

    shards = ShardSet.open(shards_dir)
    loader = make_loader(shards, "train", CharTokenizer(shards.vocab), LoaderConfig(workers=1), train=True)
    return _measure("shards", loader, utterances, seconds, 100.0, 1).utt_per_s


def run_cer(run: Path) -> dict | None:
    """dev (best) and test CER of a demo run folder (runs/.../demo-ctc-bf16), from its report.json."""
    report = run / "report.json"
    if not report.is_file():
        print(f"{report} not found: no CER row for {run}")
        return None
    r = json.loads(report.read_text())
    return {"dev": r["train"]["best_dev_cer"], "test": r["eval"]["greedy"]["cer"],
            "beam_lm": r["eval"]["beam+lm"]["cer"], "steps": r["train"]["step"]}


def main() -> None:
    from bench_pipeline import _bench_corpus, _clip_paths, bench_decode, bench_pipeline

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=400, help="clips in the synthetic bench corpus")
    ap.add_argument("--cv-root", type=Path, help="use a real release instead (parent of the language folder)")
    ap.add_argument("--lang", default="fr")
    ap.add_argument("--sample", type=int, default=150, help="clips of the codec rows")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs of the builds and loaders (best kept)")
    ap.add_argument("--utterances", type=int, default=3000, help="utterances a loader row is timed on")
    ap.add_argument("--runs", type=Path, nargs=2, metavar=("QDELTA_RUN", "FLOAT16_RUN"),
                    help="two demo run folders trained on each codec's shards, for the CER rows")
    args = ap.parse_args()

    import torch

    from pipeline.audio import compute_features

    torch.set_num_threads(1)
    cv_root = args.cv_root or _bench_corpus(args.work, args.clips)
    paths = _clip_paths(cv_root, args.lang)
    sample = paths[: args.sample]
    feats = [compute_features(p)[0] for p in sample]
    hours = sum(f.shape[0] for f in feats) / 100 / 3600
    print(f"\n{len(sample)} clips ({hours * 60:.1f} min) under {cv_root}/{args.lang}\n")
    print(f"{'codec':<36} {'MB / audio h':>13} {'vs float16':>11} {'largest error':>14} {'decode us/utt':>14}")
    results, gaps = {}, {}
    for label, fs in (("", feats), (" + noise 30 dB", with_noise(feats, sample)),
                      (" band-limited, 8 kHz", band_limited(sample))):
        rows = codec_rows(fs, hours)
        base = rows[0][1]
        for name, size, err, us in rows:
            results[name + label] = size
            print(f"{name + label:<36} {size / 1e6:>13.1f} {size / base:>10.2f}x {err:>14.4f} {us:>14.0f}")
        gaps[label.strip() or "as recorded"] = normalised_gap(fs)
    print("\nlargest |qdelta - float16| after CMVN (in standard deviations; bins over 0.1):")
    print(f"{'clips':<22} {'CMVN before (std >= 1e-4)':>27} {'CMVN now (std >= 1 nat)':>25}")
    for label, g in gaps.items():
        print(f"{label:<22} {g['before'][0]:>19.3f} ({g['before'][1]:>2}) {g['now'][0]:>17.3f} ({g['now'][1]:>2})")

    print(f"\nbuilds and loaders, {len(paths)} clips, 1 job / 1 worker, best of {args.repeats} interleaved")
    decode = bench_decode(sample)
    pipeline, loader, shard_bytes = {}, {}, {}
    for _ in range(args.repeats):
        for codec in (OLD_CODEC, DEFAULT_CODEC):
            out = args.work / f"shards-codec-{codec}"
            rate, summary = bench_pipeline(cv_root, args.lang, out, 1, codec=codec)
            pipeline[codec] = max(pipeline.get(codec, 0.0), rate)
            shard_bytes[codec] = (sum(s["bytes"] for sp in summary["splits"].values() for s in sp["shards"])
                                  / sum(sp["hours"] for sp in summary["splits"].values()))
        for codec in (OLD_CODEC, DEFAULT_CODEC):
            loader[codec] = max(loader.get(codec, 0.0),
                                loader_rate(args.work / f"shards-codec-{codec}", args.utterances, 30.0))
    print(f"{'':<28} {OLD_CODEC:>12} {DEFAULT_CODEC:>12} {'ratio':>8} {'bar':>8}")
    f16, q = OLD_CODEC, DEFAULT_CODEC
    print(f"{'shard MB / audio h (tars)':<28} {shard_bytes[f16] / 1e6:>12.1f} {shard_bytes[q] / 1e6:>12.1f} "
          f"{shard_bytes[q] / shard_bytes[f16]:>7.2f}x {'<= ' + str(BARS['bytes']):>8}")
    print(f"{'pipeline, audio s / wall s':<28} {pipeline[f16]:>12.0f} {pipeline[q]:>12.0f} "
          f"{pipeline[q] / pipeline[f16]:>7.2f}x {'>= ' + str(BARS['pipeline']):>8}")
    print(f"{'loader, utt/s per worker':<28} {loader[f16]:>12.0f} {loader[q]:>12.0f} "
          f"{loader[q] / loader[f16]:>7.2f}x {'>= ' + str(BARS['loader']):>8}")
    print(f"(bare MP3 decode in this run: {decode:.0f}x real time; the qdelta build runs at "
          f"{pipeline[q] / decode:.0%} of it)")
    if args.runs:
        cers = [run_cer(r) for r in args.runs]
        if all(cers):
            cq, cf = cers
            print(f"\n{'demo run':<28} {'steps':>6} {'dev CER':>8} {'test CER':>9} {'beam+LM':>8}")
            for name, c in ((q, cq), (f16, cf)):
                print(f"{name:<28} {c['steps']:>6} {c['dev']:>8.2%} {c['test']:>9.2%} {c['beam_lm'] or 0:>8.2%}")
            print(f"difference (qdelta - float16): dev {100 * (cq['dev'] - cf['dev']):+.2f} points, test "
                  f"{100 * (cq['test'] - cf['test']):+.2f} points (bar: within {BARS['cer_points']} points or "
                  "the run-to-run spread)")


if __name__ == "__main__":
    main()
