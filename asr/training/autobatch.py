"""The batch a run trains with: `--batch-frames` and `--pad-to` resolved on its device.

    cfg, report = choose_batch(cfg, model, shards, tokenizer, device, d, lr_given)

`auto` on CUDA searches the largest batch of the longest bucket that fits (the rule, the
memory fraction and the learning-rate scaling are asr/runtime/batchsize.py's); on a CPU it is
20000 frames. The trial steps run on synthetic batches shaped as the loader shapes the longest
utterances, inside `precision.untouched` (the model, its buffers and the RNG as they were).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from asr.data.loader import Batch, padded_length
from asr.runtime import batchsize
from asr.runtime.distributed import Dist, max_over_ranks
from asr.runtime.precision import untouched

CUDA_PAD_TO = 32  # LoaderConfig.pad_to's reason: a bounded set of shapes on a GPU


def pad_to(cfg, device: torch.device) -> int:
    """--pad-to resolved: as given, or 32 on CUDA and 1 on a CPU."""
    return cfg.pad_to or (CUDA_PAD_TO if device.type == "cuda" else 1)


def tokens_per_frame(shards, split: str) -> float:
    """The longest transcripts per frame of the split (99.9th percentile of characters per
    frame: a stray row does not set it), so that trial batches carry realistic targets."""
    rows = shards.read_index(columns=["text", "frames"], split=split)
    ratios = [len(r["text"]) / r["frames"] for r in rows if r["frames"]]
    return float(np.quantile(ratios, 0.999)) if ratios else 0.2


def synthetic_batch(frames: int, max_frames: int, pad: int, n_mels: int, vocab: int, per_frame: float,
                    device: torch.device) -> Batch:
    """The longest bucket's batch of about `frames` padded frames: utterances of `max_frames`
    (padded to a multiple of `pad`), random features, targets of `per_frame` tokens a frame."""
    t = padded_length(max_frames, pad)
    b = max(1, frames // t)
    length = max(1, math.ceil(max_frames * per_frame))
    g = torch.Generator().manual_seed(0)
    return Batch(torch.randn(b, t, n_mels, generator=g), torch.full((b,), max_frames, dtype=torch.int64),
                 torch.randint(2, max(vocab, 3), (b, length), generator=g),
                 torch.full((b,), length, dtype=torch.int64)).to(device)


def cuda_peak(model: torch.nn.Module, batch_of: Callable[[int], Batch], device: torch.device) -> Callable:
    """frames -> bytes one fp32 training step on `batch_of(frames)` needs beyond the weights
    (activations, gradients, the optimizer's two moments), or None when it runs out of memory."""
    moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)

    def peak(frames: int) -> float | None:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            model(batch_of(frames))["loss"].backward()
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) - base + moments
        except torch.cuda.OutOfMemoryError:
            return None
        except RuntimeError as e:  # cuDNN / cuBLAS say it their way
            if "ALLOC_FAILED" in str(e) or "out of memory" in str(e):
                return None
            raise
        finally:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    return peak


def choose_batch(cfg, model: torch.nn.Module, shards, tokenizer, device: torch.device, d: Dist, lr_given: bool,
                 peak: Callable[[int], float | None] | None = None,
                 free_bytes: Callable[[], int] | None = None) -> tuple[object, dict]:
    """`cfg` (a resolved TrainConfig) with `batch_frames`, `pad_to` (and, for an auto batch and
    an lr not given, `lr`) filled in -> (cfg, report for the log and summary.json). `peak`
    and `free_bytes` stand for the device's memory (tests inject their own; CUDA's otherwise)."""
    pad = pad_to(cfg, device)
    frames = batchsize.parse(cfg.batch_frames)
    if frames is not None:
        return dataclasses.replace(cfg, batch_frames=frames, pad_to=pad), {"frames": frames, "searched": False,
                                                                           "why": "as given"}
    if device.type != "cuda" and peak is None:
        return dataclasses.replace(cfg, batch_frames=batchsize.CPU_FRAMES, pad_to=pad), {
            "frames": batchsize.CPU_FRAMES, "searched": False, "why": "auto on a CPU: its speed, not memory, bounds it"}
    unit = padded_length(cfg.max_frames, pad)  # one utterance of the longest bucket
    if peak is None:
        per_frame = tokens_per_frame(shards, cfg.train_split)
        n_mels = shards.dataset["features"]["n_mels"]
        peak = cuda_peak(model, lambda f: synthetic_batch(f, cfg.max_frames, pad, n_mels, len(tokenizer), per_frame,
                                                          device), device)
        free_bytes = free_bytes or (lambda: torch.cuda.mem_get_info(device)[0])
    trials = []

    def counted(f: int) -> float | None:
        trials.append(f)
        return peak(f)

    free = free_bytes()
    budget = batchsize.MEMORY_FRACTION * free
    with untouched(model):
        chosen, used = batchsize.largest_fitting(counted, budget, unit, batchsize.MAX_FRAMES)
    chosen = -int(max_over_ranks(-chosen, d, device))  # the smallest over ranks: the same batch everywhere
    report = {"frames": chosen, "searched": True, "utterances": chosen // unit, "max_frames": cfg.max_frames,
              "peak_bytes": used, "budget_bytes": budget, "free_bytes": free, "trials": len(trials)}
    lr = cfg.lr
    if not lr_given:
        lr = batchsize.scaled_lr(cfg.lr, chosen)
        report.update(lr_from=cfg.lr, lr=lr)
    return dataclasses.replace(cfg, batch_frames=chosen, pad_to=pad, lr=lr), report
