"""PyTorch vs onnxruntime on the CPU for a CTC checkpoint: the same clips, the same threads.

    .venv/bin/python bench/bench_onnx.py --checkpoint runs/demo-ctc/best.pt \\
        --clips data/demo/fr/clips --tsv data/demo/fr/test.tsv --n 100 --threads 2

The checkpoint is exported (asr/inference/export.py) to a temporary folder (or to --onnx), the clips'
features are computed once (the checkpoint's feature config, CMVN applied), and then each
runtime runs the acoustic model (`log_probs`: what differs between them; greedy decoding
on top is the same code for both) over every clip:

    batch 1        one clip at a time, as `asr-cli transcribe` does
    batch N        clips sorted by length, N at a time (padded), as `asr-cli eval` does

Each row is the best of --repeats passes, the two runtimes' passes interleaved (after one
warm-up pass each). Printed per runtime: ms
of compute per second of audio, real-time factor (compute / audio duration), and the speed-up
of onnxruntime; then how many greedy transcripts agree between the two.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.decoding.decoder import greedy_texts  # noqa: E402
from asr.inference.export import export_onnx  # noqa: E402
from asr.inference.loading import open_model  # noqa: E402
from asr.inference.onnx_model import load_onnx  # noqa: E402
from pipeline.audio import compute_features  # noqa: E402


def pick_clips(clips: Path, tsv: Path | None, n: int) -> list[Path]:
    if tsv is not None:
        with open(tsv, encoding="utf-8", newline="") as f:
            names = [row["path"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
        paths = [clips / name for name in names]
    else:
        paths = sorted(p for p in clips.iterdir() if p.suffix in (".mp3", ".wav", ".flac"))
    return paths[:n]


def batches(feats: list[torch.Tensor], size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Padded batches of `size` utterances, sorted by length (eval's bucketing, simplified)."""
    order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
    out = []
    for start in range(0, len(order), size):
        group = [feats[i] for i in order[start:start + size]]
        lengths = torch.tensor([g.shape[0] for g in group])
        x = torch.zeros(len(group), int(lengths.max()), group[0].shape[1])
        for j, g in enumerate(group):
            x[j, : g.shape[0]] = g
        out.append((x, lengths))
    return out


def one_pass(model, work: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        for x, lengths in work:
            model.log_probs(x, lengths)
    return time.perf_counter() - t0


def time_models(models: list, work: list[tuple[torch.Tensor, torch.Tensor]], repeats: int) -> list[float]:
    """Best wall time (s) of each model over `work`, in `repeats` interleaved passes (so that a
    busy spell of the machine hits both runtimes alike), after one warm-up pass each."""
    for model in models:  # warm-up: allocations, oneDNN kernels, onnxruntime's arena
        one_pass(model, work)
    best = [float("inf")] * len(models)
    for _ in range(repeats):
        for i, model in enumerate(models):
            best[i] = min(best[i], one_pass(model, work))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="CTC checkpoint (.pt) made by `asr-cli train`.")
    ap.add_argument("--clips", type=Path, default=Path("data/demo/fr/clips"), help="Folder of audio clips.")
    ap.add_argument("--tsv", type=Path, default=None, help="Take the clips this TSV names (e.g. test.tsv), in order.")
    ap.add_argument("--n", type=int, default=100, help="Number of clips.")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="Intra-op threads, both runtimes.")
    ap.add_argument("--batch", type=int, default=16, help="Utterances per batch of the batched rows.")
    ap.add_argument("--repeats", type=int, default=3, help="Timed passes per row (the best is kept).")
    ap.add_argument("--onnx", type=Path, default=None, help="Export here (default: a temporary folder).")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    loaded = open_model(args.checkpoint, "cpu")
    model, tokenizer, features, mean, std = loaded.model, loaded.tokenizer, loaded.features, loaded.mean, loaded.std
    paths = pick_clips(args.clips, args.tsv, args.n)
    feats, seconds = [], 0.0
    for path in paths:
        f, info = compute_features(path, features)
        feats.append(torch.from_numpy((f.astype(np.float32) - mean) / std))
        seconds += info["duration"]

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx or Path(tmp) / "model.onnx"
        t0 = time.perf_counter()
        export_onnx(args.checkpoint, onnx_path)
        export_s = time.perf_counter() - t0
        onnx_model, _, _ = load_onnx(onnx_path, threads=args.threads)

        print(f"{args.checkpoint}: {loaded.card.name}, "
              f"{len(paths)} clips, {seconds:.1f} s of audio, {args.threads} thread(s), "
              f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}; "
              f"export took {export_s:.1f} s")
        print(f"{'batch':>8} {'runtime':>12} {'ms / s audio':>13} {'RTF':>8} {'speed-up':>9}")
        singles = [(f[None], torch.tensor([f.shape[0]])) for f in feats]
        for label, work in (("1", singles), (str(args.batch), batches(feats, args.batch))):
            t_torch, t_onnx = time_models([model, onnx_model], work, args.repeats)
            for name, t in (("pytorch", t_torch), ("onnxruntime", t_onnx)):
                speed = f"{t_torch / t:.2f}x" if name == "onnxruntime" else ""
                print(f"{label:>8} {name:>12} {1000 * t / seconds:>13.2f} {t / seconds:>8.4f} {speed:>9}")

        same = sum(greedy_texts(model, tokenizer, x, n) == greedy_texts(onnx_model, tokenizer, x, n)
                   for x, n in singles)
        print(f"greedy transcripts identical: {same} of {len(singles)}")


if __name__ == "__main__":
    main()
