"""Training-step cost of the CTC encoders on the demo's batches: BiGRU `small` beside Conformer
candidates, timed interleaved in one run (the machine is shared and noisy), best of several.

    .venv/bin/python bench/bench_encoders.py --shards shards/demo-fr [--rounds 3 --batches 4]

One training step = forward + CTC loss + backward + gradient clipping + AdamW, on real batches
of the demo's train split cut as a DDP rank of the demo gets them (DEMO_TRAIN's batch_frames
split over DemoConfig's two processes: 5,000 padded frames), with 1 thread (each of the two
ranks has one core). Per model: parameters, ms/step (the best round's mean over the same
batches), audio seconds per second, and the steps it would reach in the demo's 15 minutes,
scaled from BiGRU small's measured 1,634 steps: 1634 x (BiGRU ms/step) / (its ms/step).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.data.loader import LoaderConfig, make_loader  # noqa: E402
from asr.nets.models import build_model, count_parameters, model_config  # noqa: E402
from asr.tokens.tokenizer import CharTokenizer  # noqa: E402
from pipeline.audio import FeatureConfig  # noqa: E402
from pipeline.shardformat import ShardSet  # noqa: E402

BIGRU_DEMO_STEPS = 1634  # BiGRU small in the demo's 15 minutes on 2 cores (2 DDP processes)

# name -> (preset, overrides); the first is the baseline
CANDIDATES: dict[str, tuple[str, dict]] = {
    "bigru-small": ("small", {}),
    "conformer-small": ("conformer-small", {}),  # x4 d144 b6 k15
    "x4 d144 b4 k15": ("conformer-small", dict(blocks=4)),
    "x8 d144 b6 k15 up2": ("conformer-small", dict(subsampling=8, conv_channels=64, upsample=2)),
    "x8 d144 b8 k15 up2": ("conformer-small", dict(subsampling=8, conv_channels=64, upsample=2, blocks=8)),
    "x8 d176 b6 k15 up2": ("conformer-small", dict(subsampling=8, conv_channels=64, upsample=2, d_model=176)),
    "x8 d192 b4 k15 up2": ("conformer-small", dict(subsampling=8, conv_channels=64, upsample=2, d_model=192,
                                                   blocks=4)),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=Path, default=Path("shards/demo-fr"))
    p.add_argument("--batch-frames", type=int, default=5000)
    p.add_argument("--batches", type=int, default=4, help="batches per round (the same for every model)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shards = ShardSet.open(args.shards)
    tokenizer = CharTokenizer(shards.vocab)
    fps = FeatureConfig.from_dict(shards.dataset["features"]).frames_per_second()
    loader = make_loader(shards, "train", tokenizer, LoaderConfig(batch_frames=args.batch_frames, workers=0),
                         train=True)
    batches = []
    for b in loader:
        batches.append(b)
        if len(batches) == args.batches:
            break
    audio_s = sum(b.feat_lens.sum().item() for b in batches) / fps
    names = [n for n in CANDIDATES if not args.only or n in args.only.split(",") or n == "bigru-small"]
    models = {}
    for name in names:
        preset, over = CANDIDATES[name]
        m = build_model(model_config("ctc", preset, len(tokenizer), shards.dataset["features"]["n_mels"], over))
        models[name] = (m, torch.optim.AdamW(m.parameters(), lr=1e-4))
    best = {n: float("inf") for n in names}
    for r in range(args.rounds):
        for name in names:
            m, opt = models[name]
            m.train()
            m(batches[0])["loss"].backward()  # warm-up step, untimed
            opt.zero_grad()
            t = time.perf_counter()
            for b in batches:
                loss = m(b)["loss"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
                opt.step()
                opt.zero_grad()
            best[name] = min(best[name], (time.perf_counter() - t) / len(batches))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {1000 * best[n]:.0f}" for n in names), flush=True)
    base = best["bigru-small"]
    print(f"\n{len(batches)} batches of <= {args.batch_frames} frames ({audio_s / len(batches):.1f} s of audio "
          f"per batch), {args.threads} thread(s), best of {args.rounds} rounds")
    print(f"{'model':24s} {'params':>8s} {'ms/step':>8s} {'audio s/s':>9s} {'15-min steps':>12s}")
    for name in names:
        m, _ = models[name]
        ms = 1000 * best[name]
        print(f"{name:24s} {count_parameters(m) / 1e6:7.2f}M {ms:8.0f} {audio_s / len(batches) / best[name]:9.1f} "
              f"{BIGRU_DEMO_STEPS * base / best[name]:12.0f}")


if __name__ == "__main__":
    main()
