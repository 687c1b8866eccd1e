"""`--batch-frames auto`: the largest batch of the longest utterances that fits the device.

    --batch-frames 20000     taken as given (padded 10 ms frames per batch, per process)
    --batch-frames auto      on CUDA: searched at start-up, as NeMo's OOMptimizer does; on a CPU: 20000

Why search: the fixed default batch (20,000 frames, 200 s of audio) filled 3 GiB of a 141 GiB
H200 for conformer-base, which then trained at 581 audio-s/s; 120,000 frames ran it at 1,997
(issue 34). How: one training step (forward and backward, fp32: the larger footprint, so the
answer holds for bf16 too) on a synthetic batch of the longest bucket (utterances of
`max_frames`, padded as the loader pads them, with the longest transcripts the train split
has per frame), its peak memory plus the optimizer's two moments (allocated at its first real
step), against `MEMORY_FRACTION` of the memory free at start-up. Doubling from one utterance,
then bisection, on whole utterances; a step that runs out of memory counts as too large. The
longest bucket is the worst case: shorter utterances fill the same frame budget with more
rows, which costs the same in the linear layers and less in attention (T^2 per row).

The learning rate follows the batch by the square-root rule of Adam-type optimizers (Malladi
et al. 2022, "On the SDEs and scaling rules for adaptive gradient algorithms"): a batch k times
the 20,000-frame reference takes sqrt(k) times the peak lr, at most `LR_CAP` (3e-3, the highest
peak any of our recipes trains at: the demo's small CTC model). Only an lr the run was not
given is scaled; the warm-up and the step count are kept (a larger batch is more audio per
step: `--max-steps` counts steps). A resumed run keeps the batch and lr it started with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

AUTO = "auto"
CPU_FRAMES = 20000  # `auto` on a CPU, where speed, not memory, bounds the batch
REFERENCE_FRAMES = 20000  # the batch the default learning rates were set at
MEMORY_FRACTION = 0.8  # of the memory free at start-up: room for fragmentation and the loader's pinned copies
MAX_FRAMES = 1_000_000  # 10,000 s of audio a step: 320 MB a batch on the host, times the loader's prefetch
LR_CAP = 3e-3


def parse(value) -> int | None:
    """--batch-frames as given -> frames, or None for `auto`; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        frames = value
    elif str(value).strip().lower() == AUTO:
        return None
    else:
        try:
            frames = int(str(value).strip())
        except ValueError:
            raise ValueError(f"--batch-frames: {value!r} is neither auto nor a whole number; allowed: auto or >=1") \
                from None
    if frames < 1:
        raise ValueError(f"--batch-frames: {frames} is out of range; allowed: auto or >=1")
    return frames


def largest_fitting(peak: Callable[[int], float | None], budget: float, unit: int, cap: int) -> tuple[int, float]:
    """The largest multiple of `unit` frames (at most `cap`, at least `unit`) whose `peak(frames)`
    (bytes; None: out of memory) is within `budget` -> (frames, its peak). Doubling, then
    bisection: about 2 log2(cap / unit) trial steps."""
    most = max(1, cap // unit)
    good, good_peak, bad = 0, 0.0, None
    n = 1
    while n <= most:
        p = peak(n * unit)
        if p is None or p > budget:
            bad = n
            break
        good, good_peak = n, p
        n *= 2
    if good == 0:  # not even one utterance of the longest bucket fits: the run will say so itself
        return unit, float("nan")
    hi = bad if bad is not None else most + 1
    while hi - good > 1:
        mid = (good + hi) // 2
        p = peak(mid * unit)
        if p is None or p > budget:
            hi = mid
        else:
            good, good_peak = mid, p
    return good * unit, good_peak


def scaled_lr(lr: float, frames: int, reference: int = REFERENCE_FRAMES, cap: float = LR_CAP) -> float:
    """The square-root rule: `lr` at `reference` frames -> the lr at `frames`, at most `cap`
    (never below `lr` on account of the cap: a given peak above it stays)."""
    return min(lr * math.sqrt(frames / reference), max(cap, lr)) if frames > reference else lr


def describe(report: dict) -> str:
    """One log line for the choice `asr.training.run.choose_batch` made."""
    if not report.get("searched"):
        return f"batch {report['frames']} frames ({report['why']})"
    gib = 2**30
    line = (f"batch auto: {report['frames']} frames ({report['utterances']} utterances of {report['max_frames']} "
            f"frames), trial peak {report['peak_bytes'] / gib:.1f} GiB of the {report['budget_bytes'] / gib:.1f} GiB "
            f"allowed ({MEMORY_FRACTION:.0%} of {report['free_bytes'] / gib:.1f} GiB free) after {report['trials']} "
            "trial steps")
    if report.get("lr_from") is not None:
        line += (f"; peak lr {report['lr_from']:g} -> {report['lr']:g} (square root of the batch ratio, at most "
                 f"{LR_CAP:g})")
    return line
