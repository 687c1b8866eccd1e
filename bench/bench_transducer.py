"""The transducer's costs on the demo corpus: training steps against CTC, the joint's memory,
decoding speed, and ONNX against PyTorch.

    .venv/bin/python bench/bench_transducer.py steps --shards shards/demo-fr
    .venv/bin/python bench/bench_transducer.py memory --shards shards/demo-fr
    .venv/bin/python bench/bench_transducer.py decode --checkpoint runs/demo-rnnt/best.pt --lm runs/demo-rnnt/lm-3gram.arpa
    .venv/bin/python bench/bench_transducer.py onnx --checkpoint runs/demo-rnnt/best.pt --n 20

steps    one training step (forward, backward) of conformer-small as CTC (its demo recipe,
         upsample 2), as a pruned transducer, and as a transducer on the full joint, on the same
         real demo batches (5,000 feature frames: a demo rank's), 1 thread, the three
         interleaved, best of --repeats; bf16 autocast as the demo trains (--fp32: fp32)
steps    -> ms a step each, and the transducer's time over CTC's (what "equal wall clock" costs)
memory   peak resident memory of one training step in a fresh process, per loss: pruned, full
         in one group, full in groups of JOINT_CELLS, on a --batch-frames batch
decode   real-time factor on --n test clips, 1 thread: greedy, beam, beam + LM
onnx     --n test clips through the checkpoint and its export (greedy and beam): texts equal
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def demo_batches(shards: Path, batch_frames: int, n: int, tokenizer=None):
    from asr.data.loader import LoaderConfig, ShardStream
    from asr.tokens.tokenizer import CharTokenizer
    from pipeline.shardformat import ShardSet

    s = ShardSet.open(shards)
    tok = tokenizer or CharTokenizer(s.vocab)
    stream = ShardStream(s.urls("train"), tok, s.cmvn, LoaderConfig(batch_frames=batch_frames, workers=0), train=True)
    out = []
    for batch in stream:
        out.append(batch)
        if len(out) == n:
            return out, tok
    return out, tok


def models(vocab: int):
    from asr.nets.models import build_model, model_config

    torch.manual_seed(0)
    return {"ctc": build_model(model_config("ctc", "conformer-small", vocab, 80, {"upsample": 2})),
            "rnnt pruned": build_model(model_config("rnnt", "conformer-small", vocab, 80)),
            "rnnt full": build_model(model_config("rnnt", "conformer-small", vocab, 80, {"loss": "full"}))}


def steps(args) -> dict:
    torch.set_num_threads(1)
    batches, tok = demo_batches(args.shards, 5000, args.batches)
    nets = models(len(tok))
    times = {k: [] for k in nets}
    for _ in range(args.repeats + 1):  # the first pass warms up
        for name, model in nets.items():
            t0 = time.perf_counter()
            for b in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.fp32):
                    loss = model(b)["loss"]
                loss.backward()
                model.zero_grad(set_to_none=True)
            times[name].append((time.perf_counter() - t0) / len(batches))
    ms = {k: round(1000 * min(v[1:]), 1) for k, v in times.items()}
    return {"ms_per_step": ms, "vs_ctc": {k: round(v / ms["ctc"], 2) for k, v in ms.items()},
            "batches": len(batches), "precision": "fp32" if args.fp32 else "bf16"}


def one_step_peak(shards: str, loss: str, cells: int, batch_frames: int) -> float:
    """(child process) MB of peak RSS over one step, above the RSS before it."""
    torch.set_num_threads(1)
    from asr.nets.models import build_model, model_config

    batches, tok = demo_batches(Path(shards), batch_frames, 1)
    model = build_model(model_config("rnnt", "conformer-small", len(tok), 80, {"loss": loss}))
    model.joint_cells = cells
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model(batches[0])["loss"].backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def memory(args) -> dict:
    from asr.nets.transducer import JOINT_CELLS

    out = {}
    for name, loss, cells in (("pruned", "pruned", JOINT_CELLS), ("full, one group", "full", 10**12),
                              (f"full, groups of {JOINT_CELLS} cells", "full", JOINT_CELLS)):
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.bench_transducer import one_step_peak; "
                f"print(one_step_peak({str(args.shards)!r}, {loss!r}, {cells}, {args.batch_frames}))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
        out[name] = float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else done.stderr[-300:]
    return {"peak_mb_above_start": out, "batch_frames": args.batch_frames}


def demo_test_clips(n: int):
    import csv

    rows = list(csv.DictReader(open(ROOT / "data/demo/fr/test.tsv", encoding="utf-8"), delimiter="\t"))
    return [ROOT / "data/demo/fr/clips" / r["path"] for r in rows[:n]]


def decode(args) -> dict:
    import soundfile as sf

    from asr import Recognizer

    torch.set_num_threads(1)
    clips = demo_test_clips(args.n)
    audio = sum(sf.info(str(c)).duration for c in clips)
    rec = Recognizer.load(args.checkpoint, device="cpu")
    out = {}
    for name, options in (("greedy", {}), ("beam", {"beam": 4}), ("beam + LM", {"lm": args.lm})):
        r = rec.with_options(**options)
        t0 = time.perf_counter()
        for c in clips:
            r.transcribe(c)
        out[name] = round((time.perf_counter() - t0) / audio, 4)
    return {"rtf": out, "clips": len(clips), "audio_s": round(audio, 1)}


def onnx(args) -> dict:
    from asr import Recognizer
    from asr.inference.export import export_onnx

    clips = demo_test_clips(args.n)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(args.checkpoint, path)
        for name, options in (("greedy", {}), ("beam", {"beam": 4})):
            a = Recognizer.load(args.checkpoint, device="cpu", **options)
            b = Recognizer.load(path, **options)
            same = sum(a.transcribe(c).text == b.transcribe(c).text for c in clips)
            out[name] = f"{same} of {len(clips)}"
    return {"same_text": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["steps", "memory", "decode", "onnx"])
    ap.add_argument("--shards", type=Path, default=ROOT / "shards/demo-fr")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs/demo-rnnt/best.pt")
    ap.add_argument("--lm", type=Path, default=ROOT / "runs/demo-rnnt/lm-3gram.arpa")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-frames", type=int, default=20000)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--fp32", action="store_true")
    args = ap.parse_args()
    result = {"steps": steps, "memory": memory, "decode": decode, "onnx": onnx}[args.what](args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
