"""Long recordings: peak memory, real-time factor, WER and word times of windowed decoding.

    nice -n 19 python bench/bench_longform.py --checkpoint runs/demo-ctc/best.pt \\
        --cv data/demo/fr --out /tmp/bench-longform --minutes 5 30 120

Builds, per length, one 48 kHz mono FLAC of the test clips (test.tsv order, repeated when the
length needs more) with 0.5 s of silence before each clip, and transcribes it in a child
process per run (one file, a fresh process: its peak RSS, VmHWM, is the run's alone):
`windowed` (asr/inference/longform.py, the default) and `whole` (the old whole-file path, window_s None,
only up to --whole-max minutes). Greedy decoding.

Figures:
  peak MB      the child's VmHWM (RSS high-water mark) after loading and transcribing
  RTF          transcription wall time (file reading, features, decoding, alignment) / audio
  WER clips    WER of the clips decoded one by one against their sentences (normalised)
  WER long     WER of the long file's transcript against the same sentences; ratio: long / clips
  vs clips     WER of the long file's transcript against the clips' one-by-one transcripts
               (concatenated): the cost of decoding in windows instead of clip by clip
  by clip      `vs clips` with the long transcript's words cut into clips by their times (each
               word goes to the clip whose centre is nearest its own), each clip's words
               against its one-by-one words, edits summed: above `vs clips` by what the word
               times put into the wrong clip (a word moved across a boundary: 2 edits)
  inside       % of the long transcript's words (cut into clips as for `by clip`) that lie within
               their clip's boundaries in the concatenation, 0.2 s of slack on each side
  edge 0.2 s   of the clips with words, % whose first word starts and last word ends within
               0.2 s of the clip's speech span (its 10 ms RMS envelope above 10 % of its maximum,
               placed in the concatenation); start / end: the median signed error of those first
               starts and last ends (word time - speech time: negative is early)
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GAP_S = 0.5
RATE = 48000


def vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args) -> None:
    import torch

    from asr import Recognizer

    torch.set_num_threads(args.threads)
    rec = Recognizer.load(args.checkpoint, device="cpu", window_s=None if args.mode == "whole" else args.window)
    t0 = time.perf_counter()
    r = rec.transcribe(args.child)
    wall = time.perf_counter() - t0
    print(json.dumps({"text": r.text, "words": [list(w) for w in r.words], "duration": r.duration, "wall": wall,
                      "peak_mb": vmhwm_mb()}))


def speech_span(x: np.ndarray, rate: int) -> tuple[float, float]:
    """(start, end) seconds of a clip's speech: where its 10 ms RMS envelope exceeds 10 % of its
    maximum. (1 % of the peak sample caught the clips' room tone: 0.3 s before the voice.)"""
    hop = max(1, rate // 100)
    env = np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(hop) / hop, "same"))[::hop]
    loud = np.nonzero(env > 0.1 * env.max())[0]
    return float(loud[0] * hop / rate), float(min(len(x), (loud[-1] + 1) * hop) / rate)


def speech_spans(cv: Path, clips: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for c in clips:
        x, rate = sf.read(cv / "clips" / c, dtype="float32", always_2d=True)
        out[c] = speech_span(x.mean(axis=1), rate)
    return out


def build(cv: Path, out: Path, minutes: float, clips: list[str]) -> tuple[Path, list[dict]]:
    """The long file and, per clip placed in it, {clip, start, end} (seconds)."""
    path = out / f"long-{minutes:g}min.flac"
    meta = out / f"long-{minutes:g}min.json"
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())
    import soxr

    placed, n, i = [], 0, 0
    with sf.SoundFile(str(path) + ".part", "w", RATE, 1, format="FLAC", subtype="PCM_16") as f:
        while n < minutes * 60 * RATE:
            name = clips[i % len(clips)]
            i += 1
            x, rate = sf.read(cv / "clips" / name, dtype="float32", always_2d=True)
            x = x.mean(axis=1)
            if rate != RATE:
                x = soxr.resample(x, rate, RATE).astype(np.float32)
            gap = np.zeros(int(GAP_S * RATE), np.float32)
            f.write(gap)
            n += len(gap)
            placed.append({"clip": name, "start": n / RATE, "end": (n + len(x)) / RATE})
            f.write(x)
            n += len(x)
    Path(str(path) + ".part").rename(path)
    meta.write_text(json.dumps(placed))
    return path, placed


def edits(a: list[str], b: list[str]) -> int:
    """Word edit distance (rapidfuzz, which jiwer uses: exact, in C++)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(a, b)


def wer(ref: list[str], hyp: list[str]) -> float:
    return edits(ref, hyp) / max(1, len(ref))


def agreement(words: list, placed: list[dict], reference: dict[str, list[str]], speech: dict) -> dict:
    mids = np.array([(p["start"] + p["end"]) / 2 for p in placed])
    bounds = (mids[1:] + mids[:-1]) / 2  # nearest clip: cut half-way between clip centres
    got: list[list] = [[] for _ in placed]
    for w in words:
        if w[1] is None:
            continue
        got[int(np.searchsorted(bounds, (w[1] + w[2]) / 2))].append(w)
    clip_edits = sum(edits(reference[p["clip"]], [w[0] for w in g]) for g, p in zip(got, placed))
    clip_refs = sum(len(reference[p["clip"]]) for p in placed)
    starts, ends, ok = [], [], 0
    inside = sum(p["start"] - 0.2 <= w[1] and w[2] <= p["end"] + 0.2 for g, p in zip(got, placed) for w in g)
    for g, p in zip(got, placed):
        if not g:
            continue
        ds, de = g[0][1] - (p["start"] + speech[p["clip"]][0]), g[-1][2] - (p["start"] + speech[p["clip"]][1])
        starts.append(ds)
        ends.append(de)
        ok += abs(ds) <= 0.2 and abs(de) <= 0.2
    return {"clip_wer": clip_edits / max(1, clip_refs), "edge": 100 * ok / max(1, len(starts)),
            "inside": 100 * inside / max(1, sum(len(g) for g in got)),
            "start_err": float(np.median(starts)) if starts else float("nan"),
            "end_err": float(np.median(ends)) if ends else float("nan")}


def clips_alone(args, clips: list[str], speech: dict) -> dict:
    """The edge figures of the clips decoded one by one, each against its own speech span: what
    the model's word times are without any concatenation or window."""
    path = args.out / "clips-alone-times.json"
    if not path.exists():
        import torch

        from asr import Recognizer

        torch.set_num_threads(args.threads)
        rec = Recognizer.load(args.checkpoint, device="cpu", window_s=None)
        out = {}
        for c, r in zip(clips, rec.transcribe_many([args.cv / "clips" / c for c in clips], batch_size=1)):
            out[c] = {"words": [list(w) for w in r.words]}
        path.write_text(json.dumps(out))
    data = json.loads(path.read_text())
    starts, ends, ok = [], [], 0
    for c, d in data.items():
        placed = [w for w in d["words"] if w[1] is not None]
        if not placed:
            continue
        ds, de = placed[0][1] - speech[c][0], placed[-1][2] - speech[c][1]
        starts.append(ds)
        ends.append(de)
        ok += abs(ds) <= 0.2 and abs(de) <= 0.2
    return {"edge": 100 * ok / max(1, len(starts)), "start_err": float(np.median(starts)),
            "end_err": float(np.median(ends))}


def row_of(o, minutes, mode, placed, reference, ref_words, true_words, base_wer, speech) -> dict:
    return {"minutes": minutes, "mode": mode, "peak_mb": o["peak_mb"], "rtf": o["wall"] / o["duration"],
            "wer_x": wer(ref_words, o["text"].split()), "wer_clips": base_wer,
            "wer_long": wer(true_words, o["text"].split()), **agreement(o["words"], placed, reference, speech)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", type=Path, default=Path("/work/main/runs/demo-ctc/best.pt"))
    p.add_argument("--cv", type=Path, default=Path("/work/main/data/demo/fr"))
    p.add_argument("--out", type=Path, default=Path("/tmp/bench-longform"))
    p.add_argument("--minutes", type=float, nargs="+", default=[5, 30, 120])
    p.add_argument("--whole-max", type=float, default=30, help="the whole-file baseline up to this length")
    p.add_argument("--window", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=["whole", "windowed"])
    p.add_argument("--reuse", action="store_true", help="reuse the runs' saved results (recompute the figures)")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="windowed", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.cv / "test.tsv", newline="") as f:
        tsv = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    clips = [r["path"] for r in tsv]
    from pipeline.text import get_normalizer

    norm = get_normalizer("fr")
    truth = {r["path"]: (norm.analyse(r["sentence"])[0] or "").split() for r in tsv}
    ref_file = args.out / "clip-by-clip.json"
    if not ref_file.exists():
        import torch

        from asr import Recognizer

        torch.set_num_threads(args.threads)
        rec = Recognizer.load(args.checkpoint, device="cpu", window_s=None)
        ref_file.write_text(json.dumps({c: r.text.split() for c, r in
                                        zip(clips, rec.transcribe_many([args.cv / "clips" / c for c in clips],
                                                                       batch_size=1))}))
    reference = json.loads(ref_file.read_text())
    speech = speech_spans(args.cv, clips)
    alone = clips_alone(args, clips, speech)

    rows = []
    for minutes in args.minutes:
        path, placed = build(args.cv, args.out, minutes, clips)
        ref_words = [w for p_ in placed for w in reference[p_["clip"]]]
        true_words = [w for p_ in placed for w in truth[p_["clip"]]]
        base_wer = wer(true_words, ref_words)
        for mode in args.modes:
            if mode == "whole" and minutes > args.whole_max:
                continue
            saved = args.out / f"result-{minutes:g}min-{mode}.json"
            if args.reuse and saved.exists():
                o = json.loads(saved.read_text())
                rows.append(row_of(o, minutes, mode, placed, reference, ref_words, true_words, base_wer, speech))
                print(json.dumps(rows[-1]), flush=True)
                continue
            proc = subprocess.run([sys.executable, __file__, "--checkpoint", str(args.checkpoint), "--child",
                                   str(path), "--mode", mode, "--window", str(args.window), "--threads",
                                   str(args.threads)], capture_output=True, text=True)
            if proc.returncode:
                print(f"{minutes:g} min {mode}: failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            o = json.loads(proc.stdout.strip().splitlines()[-1])
            (args.out / f"result-{minutes:g}min-{mode}.json").write_text(json.dumps(o))
            rows.append(row_of(o, minutes, mode, placed, reference, ref_words, true_words, base_wer, speech))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.checkpoint}, greedy, {args.threads} threads, CPU, FLAC 48 kHz mono, {GAP_S} s gaps; "
          "WER x: against the same clips decoded one by one")
    print(f"{'length':>7} {'path':>9} {'peak MB':>8} {'RTF':>6} {'WER clips':>9} {'WER long':>8} {'ratio':>6} "
          f"{'vs clips':>8} {'by clip':>8} {'inside':>7} {'edge 0.2 s':>10} {'start':>7} {'end':>7}")
    print(f"{'clips':>7} {'alone':>9} {'':>8} {'':>6} {'':>9} {'':>8} {'':>6} {'':>8} {'':>8} {'':>7} "
          f"{alone['edge']:>9.1f}% {alone['start_err']:>+6.2f}s {alone['end_err']:>+6.2f}s")
    for r in rows:
        print(f"{r['minutes']:>5g} m {r['mode']:>9} {r['peak_mb']:>8.0f} {r['rtf']:>6.3f} {100 * r['wer_clips']:>8.1f}% "
              f"{100 * r['wer_long']:>7.1f}% {r['wer_long'] / r['wer_clips']:>6.3f} {100 * r['wer_x']:>7.1f}% "
              f"{100 * r['clip_wer']:>7.1f}% {r['inside']:>6.1f}% {r['edge']:>9.1f}% {r['start_err']:>+6.2f}s {r['end_err']:>+6.2f}s")


if __name__ == "__main__":
    main()
