"""The training precision, chosen by timing it on this machine rather than by reading CPU flags.

    --precision fp32 | bf16 | fp16   taken as given (fp32 on CUDA with TF32 matmuls and convolutions)
    --precision auto | fast          a few real training steps (forward + backward) in fp32 and in
                                     bf16 on the first train batches, interleaved, the faster kept
                                     (fp32 alone where the device has no bf16 hardware)

Why measure: a CPU's bf16 flags say it *can*, not that it is *faster*. The demo's recipe ran
2,572 steps in bf16 against 1,800 in fp32 in 15 minutes on 2 AVX512-BF16 EPYC cores, but on a
2-core Intel Xeon with AVX512-BF16 (no AMX) 60 steps ran at 87 audio s/s in bf16 against 119 in
fp32: a flag-based choice picked the slower precision there. The same holds on a GPU: bf16
autocast, once taken without measuring on CUDA, ran conformer-base on an H200 at the default
batch slower than fp32 (581 against 1,460 audio-s/s loader-fed, issue 34): at small batches
the casts cost more than the faster matmuls save. So CUDA is measured too, against fp32 with
TF32 (what fp32 means on our CUDA runs: `enable_tf32`).

The probe changes nothing of the run: no optimizer step is taken, gradients are dropped, and the
model's buffers (BatchNorm statistics) and the RNG states are put back as they were. Under DDP
every rank probes at the same time (as they will train) and the timings are averaged over ranks,
so all ranks make the same choice. A run shorter than `PROBE_MIN_STEPS` is not probed (fp32):
the probe would cost more than it could save. A resumed run keeps its checkpoint's choice.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist

from asr.runtime.distributed import Dist, autocast_dtype, native_bf16

PROBE_STEPS = 3  # timed steps per precision, after one untimed warm-up step each
PROBE_MIN_STEPS = 200  # shorter runs take fp32 unmeasured


def enable_tf32(device: torch.device) -> None:
    """fp32 on CUDA computes matmuls and convolutions in TF32 (10-bit mantissa inputs, fp32
    accumulation): the tensor cores' fp32, about 8x the plain fp32 rate on an H100."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def candidates(precision: str, device: torch.device) -> list[str]:
    """The precisions to time for `precision` on `device` (one name: nothing to measure)."""
    if precision in ("auto", "fast"):
        return ["fp32", "bf16"] if native_bf16(device) else ["fp32"]
    dtype = autocast_dtype(precision, device)  # validates the name
    return [{None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]]


def pick_faster(seconds: dict[str, list[float]]) -> str:
    """The precision with the lowest median step time (ties: the first named, fp32)."""
    return min(seconds, key=lambda name: statistics.median(seconds[name]))


def time_step(model: torch.nn.Module, batch, name: str, device: torch.device) -> float:
    """Seconds of one forward + backward of `batch` in precision `name`; gradients dropped."""
    dtype = autocast_dtype(name, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        loss = model(batch)["loss"]
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t
    model.zero_grad(set_to_none=True)
    return seconds


@contextlib.contextmanager
def untouched(model: torch.nn.Module):
    """Trial steps inside leave `model` as they found it: its buffers (BatchNorm statistics),
    the RNG states (CPU and CUDA) and train / eval mode put back; gradients are the caller's."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    was_training = model.training
    model.train()
    try:
        yield model
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        model.train(was_training)


def measure(model: torch.nn.Module, batches: list, names: list[str], device: torch.device,
            d: Dist, steps: int = PROBE_STEPS) -> dict[str, list[float]]:
    """Step times per precision -> {name: [seconds, ...]}, interleaved (fp32, bf16, fp32, ...)
    so that a load that comes and goes weighs on both; averaged over ranks under DDP."""
    seconds: dict[str, list[float]] = {name: [] for name in names}
    with untouched(model):
        for i in range(steps + 1):
            for name in names:
                s = time_step(model, batches[i % len(batches)], name, device)
                if i:  # the first of each: warm-up (allocations, kernel selection)
                    seconds[name].append(s)
    if d.active:  # the same figures, hence the same choice, on every rank
        flat = torch.tensor([s for name in names for s in seconds[name]], dtype=torch.float64)
        dist.all_reduce(flat)
        flat /= d.world
        seconds = {name: flat[j * steps:(j + 1) * steps].tolist() for j, name in enumerate(names)}
    return seconds


def choose(precision: str, device: torch.device, model: torch.nn.Module,
           batches: Callable[[], Iterable], d: Dist, max_steps: int) -> tuple[str, dict]:
    """The precision to train in -> (fp32 | bf16 | fp16, the report for the log and summary.json).
    `batches()` gives the probe's batches (already on `device`), called only if a probe runs.
    On CUDA as on a CPU: `measure` times both where the device has bf16 (tests inject timings
    by replacing this module's `measure` and `native_bf16`)."""
    enable_tf32(device)
    names = candidates(precision, device)
    report: dict = {"asked": precision}
    if len(names) == 1:
        report.update(chosen=names[0], measured=False)
    elif max_steps < PROBE_MIN_STEPS:
        report.update(chosen="fp32", measured=False, why=f"fewer than {PROBE_MIN_STEPS} steps: not worth a probe")
    else:
        seconds = measure(model, list(batches()), names, device, d)
        chosen = pick_faster(seconds)
        ms = {name: round(1000 * statistics.median(s), 1) for name, s in seconds.items()}
        other = next(name for name in names if name != chosen)
        report.update(chosen=chosen, measured=True, ms_per_step=ms,
                      speedup=round(ms[other] / ms[chosen], 3))
    return report["chosen"], report


def describe(report: dict) -> str:
    """One log line for a `choose` report."""
    if not report["measured"]:
        why = f" ({report['why']})" if "why" in report else ""
        return f"precision {report['chosen']}{why}"
    ms = report["ms_per_step"]
    timings = ", ".join(f"{name} {v:g} ms/step" for name, v in ms.items())
    return (f"precision {report['chosen']}: measured {timings} on {PROBE_STEPS} steps each; "
            f"{report['chosen']} is {report['speedup']:.2f}x faster here")
