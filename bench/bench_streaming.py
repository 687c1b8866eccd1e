"""Live streaming: accuracy per chunk, word latency, compute per chunk, and a 30-minute session.

    python bench/bench_streaming.py                      # the demo's two Conformer runs
    python bench/bench_streaming.py --stream runs/demo-ctc-conformer-small-streaming/best.pt \
        --baseline runs/demo-ctc-conformer-small/best.pt --shards shards/demo-fr --lm <arpa>

Train the two with `asr-cli demo --preset conformer-small-streaming` and `asr-cli demo
--preset conformer-small` (the same recipe, corpus and seed; the first also causal and with
chunk masks). Printed side by side, in one run:

1. Test CER, greedy and beam + LM, of the streaming model at chunks of CHUNKS ms and at full
   context, and of the non-streaming baseline (full context). Chunked figures come from
   `asr-cli eval --chunk-ms` (the chunk-masked whole utterance: tests/test_streaming.py proves
   it is what a stream computes); --check N streams N test clips through `rec.stream()` and
   counts those whose text differs from the masked decode (it should be 0).
2. Latency on --latency-clips test clips streamed in 10 ms blocks on 1 thread: per word of the
   final text, the time from its end (its alignment on the same model's full-context
   log-probs) to its first appearance in the partials, counted as the audio time of the block
   that showed it plus the compute that block took; median and 90th percentile. Also the
   compute per chunk (the encoder step, median and p90) and the real-time factor (all compute
   / audio).
3. A --session-min minute session (test clips end to end with 0.3-1.0 s pauses) through
   `.accept()` in 0.5 s blocks at 640 ms chunks: the resident memory each minute (flat: the
   caches are bounded), and its WER against the references next to the windowed whole-file
   decode's (asr/inference/longform.py) of the same audio.
Bars (issue 28): 640 ms CER <= 1.15x full context; streaming full context <= 1.05x the
baseline; median word latency at 640 ms <= 0.9 s; compute per 640 ms chunk <= 60 ms on one
thread; memory flat; session WER <= 1.05x the windowed decode's.
Results: --out (default bench/out/streaming/results.json) and the tables printed; an
evaluation folder already holding this checkpoint's summary.json is reused (delete it to redo).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNKS = (160, 320, 640, 1280)
BARS = {"chunk640_vs_full": 1.15, "full_vs_baseline": 1.05, "median_latency_s": 0.9, "chunk_ms_640": 60.0,
        "session_wer_ratio": 1.05}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def evaluate_cer(ckpt: Path, shards: Path, chunk_ms, lm, out: Path) -> dict:
    from asr.decoding.options import DecodeOptions
    from asr.inference.evaluate import EvalConfig, evaluate

    rows = {}
    for mode, options in (("greedy", DecodeOptions()), ("beam_lm", DecodeOptions(lm=lm) if lm else None)):
        if options is None:
            continue
        name = f"{mode}-{chunk_ms or 'full'}"
        done = out / ckpt.parent.name / name / "summary.json"
        if done.is_file() and json.loads(done.read_text()).get("checkpoint") == str(ckpt):  # a rerun reuses it
            s = json.loads(done.read_text())
        else:
            s = evaluate(EvalConfig(checkpoint=ckpt, shards=shards, split="test", decode=options, chunk_ms=chunk_ms,
                                    out=out / ckpt.parent.name / name, progress=False))
        rows[mode] = {"cer": s["cer"], "wer": s["wer"], "utterances": s["utterances"]}
        print(f"  {ckpt.parent.name} {name}: CER {100 * s['cer']:.2f} %", flush=True)
    return rows


def test_clips(shards: Path, data: Path, n: int, seed: int = 0) -> list[tuple[Path, str]]:
    """n test clips of the corpus (path, reference), a seeded draw."""
    from pipeline.shardformat import read_index

    rows = read_index(shards, columns=["id", "text"], split="test")
    random.Random(seed).shuffle(rows)
    clips = []
    for r in rows:
        path = data / "clips" / f"{r['id']}.mp3"
        if path.is_file():
            clips.append((path, r["text"]))
        if len(clips) == n:
            break
    return clips


def check_streams(ckpt: Path, clips, chunk_ms: int) -> int:
    """How many clips stream to another text than the chunk-masked whole decode gives."""
    from asr import Recognizer
    from asr.inference.streaming import mask_chunks, stream_file

    rec = Recognizer.load(ckpt, device="cpu", chunk_ms=chunk_ms)
    differ = 0
    for path, _ in clips:
        streamed = stream_file(rec.stream(), path).text
        mask_chunks(rec.transcriber.model, chunk_ms)
        whole = rec.transcribe(path).text
        mask_chunks(rec.transcriber.model, None)
        differ += streamed != whole
    return differ


def latency(ckpt: Path, clips, chunk_ms: int) -> dict:
    """Word latency, compute per chunk and RTF on one thread (see the module docstring)."""
    import soundfile as sf
    import torch

    from asr import Recognizer

    torch.set_num_threads(1)
    rec = Recognizer.load(ckpt, device="cpu", chunk_ms=chunk_ms)
    lat, steps, compute, audio = [], [], 0.0, 0.0
    for path, _ in clips:
        wave, rate = sf.read(path, dtype="float32")
        s = rec.stream()
        step = s.runner.step

        def timed(*a, _step=step):
            t0 = time.perf_counter()
            out = _step(*a)
            steps.append(time.perf_counter() - t0)
            return out

        s.runner.step = timed
        block = rate // 100  # 10 ms
        seen: dict[int, float] = {}
        appear: list[tuple[float, list[str]]] = []
        for i in range(0, len(wave), block):
            t0 = time.perf_counter()
            p = s.accept(wave[i: i + block], rate)
            took = time.perf_counter() - t0
            appear.append(((i + min(block, len(wave) - i)) / rate + took, p.text.split()))
        t0 = time.perf_counter()
        final = s.finish()
        appear.append((len(wave) / rate + time.perf_counter() - t0, final.text.split()))
        compute += s.compute
        audio += len(wave) / rate
        words = final.text.split()
        if not words:
            continue
        ends = [w.end for w in rec.align(path, final.text)]  # full context: the model's own alignment
        for k, word in enumerate(words):
            for when, shown in appear:
                if len(shown) > k and shown[k] == word:
                    seen[k] = when
                    break
        lat += [seen[k] - ends[k] for k in seen if ends[k] is not None]
    lat.sort()
    return {"chunk_ms": chunk_ms, "words": len(lat), "median_s": statistics.median(lat),
            "p90_s": lat[int(0.9 * (len(lat) - 1))], "chunk_compute_ms_median": 1000 * statistics.median(steps),
            "chunk_compute_ms_p90": 1000 * sorted(steps)[int(0.9 * (len(steps) - 1))], "rtf": compute / audio}


def session(ckpt: Path, clips, minutes: float, work: Path) -> dict:
    """A long session in 0.5 s blocks: memory per minute, WER against the windowed decode's."""
    import soundfile as sf
    import soxr
    import torch

    from asr import Recognizer
    from asr.inference.evaluate import error_counts

    torch.set_num_threads(1)
    rng = random.Random(1)
    parts, refs, total = [], [], 0
    while total < minutes * 60 * 16000:
        path, ref = clips[len(refs) % len(clips)]
        wave, rate = sf.read(path, dtype="float32")
        wave = soxr.resample(wave.mean(axis=1) if wave.ndim == 2 else wave, rate, 16000).astype(np.float32)
        gap = np.zeros(int(rng.uniform(0.3, 1.0) * 16000), np.float32)
        parts += [wave, gap]
        refs.append(ref)
        total += len(wave) + len(gap)
    audio = np.concatenate(parts)
    work.mkdir(parents=True, exist_ok=True)
    long_wav = work / "session.wav"
    sf.write(long_wav, audio, 16000)
    reference = " ".join(refs)

    rec = Recognizer.load(ckpt, device="cpu", chunk_ms=640)
    s = rec.stream()
    memory, block = [], 8000
    t0 = time.perf_counter()
    for i in range(0, len(audio), block):
        s.accept(audio[i: i + block], 16000)
        if i % (60 * 16000) < block:
            memory.append(round(rss_mb(), 1))
    final = s.finish()
    took = time.perf_counter() - t0
    whole = rec.transcribe(long_wav)  # windows of 30 s, full context (asr/inference/longform.py)
    streamed_wer = error_counts([reference], [final.text])["wer"]
    whole_wer = error_counts([reference], [whole.text])["wer"]
    return {"minutes": round(len(audio) / 16000 / 60, 1), "utterances": len(refs), "segments": len(s.segments),
            "rss_mb_per_minute": memory, "rss_growth_mb": round(memory[-1] - memory[1], 1) if len(memory) > 2 else None,
            "wall_s": round(took, 1), "wer_stream": streamed_wer, "wer_windowed_whole": whole_wer,
            "wer_ratio": streamed_wer / whole_wer if whole_wer else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stream", type=Path, default=ROOT / "runs/demo-ctc-conformer-small-streaming/best.pt")
    ap.add_argument("--baseline", type=Path, default=ROOT / "runs/demo-ctc-conformer-small/best.pt")
    ap.add_argument("--shards", type=Path, default=ROOT / "shards/demo-fr")
    ap.add_argument("--data", type=Path, default=ROOT / "data/demo/fr")
    ap.add_argument("--lm", type=Path, default=None, help="ARPA for beam + LM (default: the streaming run's)")
    ap.add_argument("--chunks", default=",".join(map(str, CHUNKS)))
    ap.add_argument("--check", type=int, default=20, help="test clips streamed against the masked decode")
    ap.add_argument("--latency-clips", type=int, default=60)
    ap.add_argument("--session-min", type=float, default=30.0)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: cer, latency, session")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/out/streaming/results.json")
    args = ap.parse_args()
    lm = args.lm or next(iter(sorted(args.stream.parent.glob("lm-*.arpa"))), None)
    chunks = [int(c) for c in args.chunks.split(",") if c]
    skip = set(args.skip.split(","))
    work = args.out.parent
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.update({"stream": str(args.stream), "baseline": str(args.baseline), "lm": str(lm) if lm else None})

    if "cer" not in skip:
        print("== test CER per chunk ==", flush=True)
        cer = {"stream": {str(c): evaluate_cer(args.stream, args.shards, c, lm, work / "eval") for c in chunks}}
        cer["stream"]["full"] = evaluate_cer(args.stream, args.shards, None, lm, work / "eval")
        if args.baseline.is_file():
            cer["baseline"] = {"full": evaluate_cer(args.baseline, args.shards, None, lm, work / "eval")}
        results["cer"] = cer
    clips = test_clips(args.shards, args.data, max(args.check, args.latency_clips, 200))
    if args.check and "cer" not in skip:
        results["streams_differing_from_masked"] = {"clips": args.check,
                                                    "differ": check_streams(args.stream, clips[:args.check], 640)}
    if "latency" not in skip:
        print("== latency (1 thread) ==", flush=True)
        results["latency"] = {str(c): latency(args.stream, clips[:args.latency_clips], c) for c in chunks}
    if "session" not in skip:
        print(f"== a {args.session_min:g}-minute session ==", flush=True)
        results["session"] = session(args.stream, clips, args.session_min, work / "session")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    report(results)


def report(r: dict) -> None:
    print(f"\nstreaming model: {r['stream']}\nbaseline:        {r['baseline']}\n")
    if "cer" in r:
        full = r["cer"]["stream"]["full"]
        print(f"{'test CER':<28}{'greedy':>9}{'x full':>8}{'beam+LM':>9}{'x full':>8}")
        for name, row in [*(("stream, " + (f"{c} ms" if c != "full" else "full context"), v)
                            for c, v in r["cer"]["stream"].items()),
                          *(("baseline (non-streaming)", v) for v in r["cer"].get("baseline", {}).values())]:
            g = row["greedy"]["cer"]
            b = row.get("beam_lm", {}).get("cer")
            print(f"{name:<28}{100 * g:8.2f}%{g / full['greedy']['cer']:7.3f}x"
                  + (f"{100 * b:8.2f}%{b / full['beam_lm']['cer']:7.3f}x" if b is not None else ""))
        if "baseline" in r["cer"]:
            base = r["cer"]["baseline"]["full"]["greedy"]["cer"]
            print(f"streaming full context / baseline, greedy: {full['greedy']['cer'] / base:.3f}x "
                  f"(bar {BARS['full_vs_baseline']}x)")
        if "640" in r["cer"]["stream"]:
            print(f"640 ms / full context, greedy: {r['cer']['stream']['640']['greedy']['cer'] / full['greedy']['cer']:.3f}x "
                  f"(bar {BARS['chunk640_vs_full']}x)")
    if "streams_differing_from_masked" in r:
        d = r["streams_differing_from_masked"]
        print(f"streamed clips whose text differs from the masked decode: {d['differ']} of {d['clips']}")
    if "latency" in r:
        print(f"\n{'chunk':>7}{'words':>7}{'median':>9}{'p90':>8}{'chunk ms':>10}{'p90':>7}{'RTF':>8}   (1 thread)")
        for c, v in r["latency"].items():
            print(f"{c:>5}ms{v['words']:>7}{v['median_s']:8.3f}s{v['p90_s']:7.3f}s{v['chunk_compute_ms_median']:10.1f}"
                  f"{v['chunk_compute_ms_p90']:7.1f}{v['rtf']:8.4f}")
        print(f"bars at 640 ms: median latency <= {BARS['median_latency_s']} s, compute per chunk <= "
              f"{BARS['chunk_ms_640']:g} ms")
    if "session" in r:
        s = r["session"]
        print(f"\nsession: {s['minutes']} min, {s['utterances']} utterances, {s['segments']} segments, "
              f"{s['wall_s']} s of compute on 1 thread")
        print(f"  resident memory (MB) each minute: {s['rss_mb_per_minute']}  growth after minute 1: "
              f"{s['rss_growth_mb']} MB")
        print(f"  WER streamed {100 * s['wer_stream']:.2f} % against the windowed whole-file decode's "
              f"{100 * s['wer_windowed_whole']:.2f} %: {s['wer_ratio']:.3f}x (bar {BARS['session_wer_ratio']}x)")


if __name__ == "__main__":
    main()
