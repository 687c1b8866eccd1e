"""Does the loader keep the device busy? Per preset and precision: the loader-fed training rate
side by side with the same step on one batch kept on the device (resident), and where a fed
step's time goes.

    python bench/bench_gpu.py --shards shards/demo-fr                       (make bench-gpu)
    python bench/bench_gpu.py --shards shards/fr --presets conformer-base --precisions bf16 fp32 --batch-frames auto

Each row sets a run up as `asr-cli train` does (asr/training/run.py's `setup`: the loader with
its workers and pinned memory, the batch `--batch-frames` resolves to, `--pad-to`'s shapes, the
fused optimizer), then times `--steps` steps of the training loop's own step
(asr/training/loop.py `fed_step`: copy, SpecAugment, forward, backward, optimizer) after
`--warmup` untimed ones:
  fed        batches from the loader, as training takes them
  resident   the loader's first batch, kept on the device, stepped on again and again
  fed / resident: 1.0 means the data path costs nothing; the issue's bar is 0.9.
The breakdown of a fed step: `wait` is the time the loop blocked on the loader; `syncs` the host
synchronisations per step that CUDA's sync debug mode reports (on a CPU: not measured, `-`);
`shapes` the distinct batch shapes seen. Peak memory is CUDA's max_memory_allocated. On a CPU the
default configuration is small (the small CTC model, fp32, 20 steps) so that the test suite runs
it; on CUDA the defaults are the issue's presets in bf16 and fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asr.data.specaug import SpecAugmentConfig  # noqa: E402
from asr.runtime.distributed import Dist  # noqa: E402
from asr.training.config import TrainConfig  # noqa: E402
from asr.training.loop import fed_step  # noqa: E402
from asr.training.run import setup  # noqa: E402
from pipeline.shardformat import DATASET  # noqa: E402

CUDA_PRESETS = ("small", "conformer-small", "conformer-base")
CPU_PRESETS = ("small",)


@dataclass
class Row:
    preset: str
    precision: str
    batch_frames: int
    fed_audio_s_per_s: float
    resident_audio_s_per_s: float
    fed_ms: float
    resident_ms: float
    wait_ms: float  # per fed step, blocked on the loader
    syncs_per_step: float | None  # None: not measurable (CPU)
    shapes: int
    peak_gib: float | None

    @property
    def ratio(self) -> float:
        return self.fed_audio_s_per_s / self.resident_audio_s_per_s


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _SyncCounter:
    """Host synchronisations CUDA reports (torch.cuda.set_sync_debug_mode 'warn') while inside."""

    def __init__(self, device: torch.device):
        self.device, self.count = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            self._catch = warnings.catch_warnings(record=True)
            self.records = self._catch.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
            self._catch.__exit__(*exc)
            self.count = sum("synchroniz" in str(r.message) for r in self.records)


def time_row(shards: Path, preset: str, precision: str, batch_frames: str, steps: int, warmup: int, workers: int,
             device: str, model: str, out: Path, compile_: bool = False) -> Row:
    cfg = TrainConfig(shards=str(shards), out=str(out), model=model, preset=preset, precision=precision,
                      batch_frames=batch_frames, max_steps=10**6, eval_every=0, eval_utts=1, workers=workers,
                      progress=False, force=True, compile=compile_,
                      specaug=SpecAugmentConfig())  # the masks on: the real step's work
    d = Dist()
    run = setup(cfg, d, torch.device(device) if device != "auto" else
                torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    dev, fps = run.device, run.frames_per_second
    run.model.train()
    batches = iter(run.loader)
    first = next(batches)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    # fed: the loop's own step on the loader's batches
    for i in range(warmup):
        fed_step(run, next(batches), i)
    _sync(dev)
    wait = frames = 0.0
    shapes = set()
    with _SyncCounter(dev) as syncs:
        start = time.perf_counter()
        for i in range(steps):
            t = time.perf_counter()
            host = next(batches)
            wait += time.perf_counter() - t
            frames += host.real_frames
            shapes.add(tuple(host.feats.shape[:2]))
            fed_step(run, host, warmup + i)
        _sync(dev)
        fed_s = time.perf_counter() - start
    # resident: one batch on the device, the same step again and again
    kept = first.to(dev)
    for i in range(warmup):
        fed_step(run, kept, i)
    _sync(dev)
    start = time.perf_counter()
    for i in range(steps):
        fed_step(run, kept, warmup + i)
    _sync(dev)
    resident_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return Row(preset + (" compiled" if compile_ else ""), run.precision["chosen"], run.cfg.batch_frames,
               frames / fps / fed_s,
               kept.real_frames * steps / fps / resident_s, 1000 * fed_s / steps, 1000 * resident_s / steps,
               1000 * wait / steps, None if syncs.count is None else syncs.count / steps, len(shapes), peak)


def format_rows(rows: list[Row]) -> str:
    head = (f"{'preset':<18}{'prec':<6}{'batch':>8}{'fed a-s/s':>11}{'resident':>10}{'fed/res':>8}"
            f"{'fed ms':>8}{'res ms':>8}{'wait ms':>8}{'syncs':>7}{'shapes':>7}{'peak GiB':>9}")
    lines = [head]
    for r in rows:
        syncs = "-" if r.syncs_per_step is None else f"{r.syncs_per_step:.1f}"
        peak = "-" if r.peak_gib is None else f"{r.peak_gib:.1f}"
        lines.append(f"{r.preset:<18}{r.precision:<6}{r.batch_frames:>8}{r.fed_audio_s_per_s:>11.0f}"
                     f"{r.resident_audio_s_per_s:>10.0f}{r.ratio:>8.2f}{r.fed_ms:>8.1f}{r.resident_ms:>8.1f}"
                     f"{r.wait_ms:>8.1f}{syncs:>7}{r.shapes:>7}{peak:>9}")
    by_preset: dict[str, list[Row]] = {}
    for r in rows:
        by_preset.setdefault(r.preset.split()[0], []).append(r)
    for preset, rs in by_preset.items():
        if len(rs) > 1:
            best = max(rs, key=lambda r: r.fed_audio_s_per_s)
            lines.append(f"{preset}: fastest fed {best.precision}{' compiled' * best.preset.endswith('compiled')} "
                         f"({best.fed_audio_s_per_s / min(r.fed_audio_s_per_s for r in rs):.2f}x the slowest)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=Path, default=ROOT / "shards/demo-fr")
    p.add_argument("--model", default="ctc")
    p.add_argument("--presets", nargs="+", default=list(CUDA_PRESETS if cuda else CPU_PRESETS))
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"] if cuda else ["fp32"])
    p.add_argument("--batch-frames", default="auto" if cuda else "20000")
    p.add_argument("--steps", type=int, default=40 if cuda else 20)
    p.add_argument("--warmup", type=int, default=10 if cuda else 3)
    p.add_argument("--workers", type=int, default=4 if cuda else 1)
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="also time each row with --compile")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    if not (args.shards / DATASET).is_file():
        raise SystemExit(f"no {args.shards / DATASET}: run `make demo` first, or pass --shards")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for prec in args.precisions:
                for compiled in (False, True) if args.compile else (False,):
                    rows.append(time_row(args.shards, preset, prec, args.batch_frames, args.steps, args.warmup,
                                         args.workers, args.device, args.model, Path(tmp) / f"{preset}-{prec}",
                                         compiled))
                    print(format_rows(rows[-1:]).splitlines()[1], flush=True)
    device = torch.cuda.get_device_name() if cuda and args.device != "cpu" else "CPU"
    print(f"\n{device}, {args.steps} steps a row after {args.warmup} untimed, {args.workers} loader workers")
    print(format_rows(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"ratio": r.ratio} for r in rows], indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
