"""The shard loader side by side with decoding on the fly.

    make bench            (or: .venv/bin/python bench/bench_loader.py --shards shards/fr,
                           or: asr-cli bench-loader --shards shards/fr)

Rows, each over the train split with the same number of DataLoader workers:
  shards (this loader)   webdataset tars -> float16 features -> CMVN -> bucketed batches
  on the fly (the lab)   a map-style Dataset that, for every sample, reads the MP3,
                         resamples and computes the log-Mel (the same feature function),
                         batched by a fixed count in random order
  training consumes      utterances/s of a few training steps of a model preset on this
                         machine (what the loader must stay well above)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.data.loader import LoaderConfig, Utterance, collate, make_loader  # noqa: E402
from asr.nets.models import build_model, model_config  # noqa: E402
from asr.data.specaug import SpecAugment  # noqa: E402
from asr.tokens.tokenizer import CharTokenizer  # noqa: E402
from pipeline.audio import FeatureConfig, compute_features  # noqa: E402
from pipeline.shardformat import ShardSet  # noqa: E402


@dataclass
class Throughput:
    name: str
    utterances: int
    audio_s: float
    seconds: float
    padded_fraction: float
    workers: int

    @property
    def utt_per_s(self) -> float:
        return self.utterances / self.seconds

    @property
    def audio_h_per_s(self) -> float:
        return self.audio_s / 3600 / self.seconds


class OnTheFly(Dataset):
    """The original lab's path: MP3 -> features inside __getitem__, every time."""

    def __init__(self, rows: list[dict], clips_dir: Path, tokenizer, mean, std):
        self.rows, self.clips_dir, self.tokenizer, self.mean, self.std = rows, clips_dir, tokenizer, mean, std

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Utterance:
        row = self.rows[i]
        feats, _ = compute_features(self.clips_dir / row["path"])
        return Utterance(row["id"], feats, self.tokenizer.encode(row["text"]), row["text"])


def _measure(name: str, batches, limit_utts: int, limit_s: float, fps: float, workers: int) -> Throughput:
    it = iter(batches)
    first = next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    utts = frames = padded = 0
    for batch in it:
        utts += len(batch)
        frames += batch.real_frames
        padded += batch.padded_frames
        if utts >= limit_utts or time.perf_counter() - t0 > limit_s:
            break
    dt = time.perf_counter() - t0
    del it, first
    if utts == 0:
        raise ValueError(f"{name}: the split holds a single batch; too small to time")
    return Throughput(name, utts, frames / fps, dt, 1 - frames / max(padded, 1), workers)


def _training_rate(shards: ShardSet, tokenizer, lcfg: LoaderConfig, preset: str, steps: int, fps: float) -> Throughput:
    model = build_model(model_config("ctc", preset, len(tokenizer), shards.dataset["features"]["n_mels"]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    aug = SpecAugment()
    cfg = LoaderConfig(**{**lcfg.__dict__, "workers": 0})
    batches = []
    for b in make_loader(shards, "train", tokenizer, cfg, train=True):
        batches.append(b)
        if len(batches) > steps:
            break
    model.train()
    loss = model(batches[0])["loss"]  # warm-up step, not timed
    loss.backward()
    t0 = time.perf_counter()
    utts = frames = padded = 0
    for b in batches[1:]:
        opt.zero_grad()
        b.feats = aug(b.feats, b.feat_lens)
        model(b)["loss"].backward()
        opt.step()
        utts, frames, padded = utts + len(b), frames + b.real_frames, padded + b.padded_frames
    dt = time.perf_counter() - t0
    return Throughput(f"training consumes (ctc/{preset}, {torch.get_num_threads()} threads)", utts, frames / fps,
                      dt, 1 - frames / max(padded, 1), 0)


def bench_loader(shards_dir: Path, workers: int = 2, batch_frames: int = 20000, utterances: int = 2000,
                 seconds: float = 30.0, fly_batch: int = 16, train_preset: str | None = "small",
                 train_steps: int = 5) -> list[Throughput]:
    shards = ShardSet.open(shards_dir)
    tokenizer = CharTokenizer(shards.vocab)
    fps = FeatureConfig.from_dict(shards.dataset["features"]).frames_per_second()
    lcfg = LoaderConfig(batch_frames=batch_frames, workers=workers)
    rows: list[Throughput] = []

    loader = make_loader(shards, "train", tokenizer, lcfg, train=True)
    rows.append(_measure("shards (this loader)", loader, utterances, seconds, fps, workers))

    build = shards.dataset["build"]
    clips_dir = Path(build["cv_root"]) / shards.dataset["lang"] / "clips"
    index = shards.read_index(split="train")
    if clips_dir.is_dir() and index:
        mean, std = shards.cmvn
        fly = DataLoader(OnTheFly(index, clips_dir, tokenizer, mean, std), batch_size=fly_batch, shuffle=True,
                         num_workers=workers, collate_fn=lambda u: collate(u, mean, std),
                         generator=torch.Generator().manual_seed(0))
        rows.append(_measure("on the fly (MP3 -> features per sample)", fly, max(utterances // 10, fly_batch * 4),
                             seconds, fps, workers))
    else:
        print(f"(no MP3 clips at {clips_dir}: the on-the-fly row is left out)")
    if train_preset:
        rows.append(_training_rate(shards, tokenizer, lcfg, train_preset, train_steps, fps))
    return rows


def format_rows(rows: list[Throughput]) -> str:
    lines = [f"{'path':<44} {'utt/s':>8} {'audio h/s':>10} {'per worker utt/s':>17} {'padded':>7}"]
    for r in rows:
        per = f"{r.utt_per_s / r.workers:>17.1f}" if r.workers else f"{'-':>17}"
        lines.append(f"{r.name:<44} {r.utt_per_s:>8.1f} {r.audio_h_per_s:>10.3f} {per} {r.padded_fraction:>6.1%}")
    shard, fly = rows[0], next((r for r in rows if r.name.startswith("on the fly")), None)
    if fly:
        lines.append(f"shards / on the fly, per worker: {shard.utt_per_s / fly.utt_per_s:.1f}x")
    consume = next((r for r in rows if r.name.startswith("training")), None)
    if consume:
        lines.append(f"shards / training consumption: {shard.utt_per_s / consume.utt_per_s:.1f}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True, help="shard folder made by `asr-cli shards`")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for both paths")
    ap.add_argument("--batch-frames", type=int, default=20000, help="padded frames per batch of the shard loader")
    ap.add_argument("--utterances", type=int, default=2000, help="utterances to time the shard loader on")
    ap.add_argument("--seconds", type=float, default=30.0, help="time limit per row")
    ap.add_argument("--train-preset", default="small", help="CTC preset whose training rate is shown ('' to skip)")
    args = ap.parse_args()
    try:
        rows = bench_loader(args.shards, workers=args.workers, batch_frames=args.batch_frames,
                            utterances=args.utterances, seconds=args.seconds, train_preset=args.train_preset or None)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e))
    print(format_rows(rows))


if __name__ == "__main__":
    main()
