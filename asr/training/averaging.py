"""Checkpoint averaging (as icefall and ESPnet do it): the mean of several checkpoints' weights.

    asr-cli train ... --average 5          keeps <out>/avg/step-XXXXXXXX.pt (the weights at the
                                           last 5 validations) and writes <out>/averaged.pt
    asr-cli checkpoint average a.pt b.pt --out avg.pt

The last few checkpoints of a run sit around the same minimum; their mean is usually a
little better on dev than any one of them (the noise of the last steps cancels out). Every
floating-point tensor of the state dict (parameters and float buffers, such as a BatchNorm's
running statistics) is averaged in float64 and cast back to its dtype; an integer buffer
(a BatchNorm's `num_batches_tracked`) is taken from the last checkpoint.

The averaged checkpoint is a normal one: the last checkpoint's payload (model config,
tokenizer, CMVN, features, ...) with the mean weights and no training state (optimizer,
RNG: an averaged model is not resumed from), plus `averaged_from`, the files averaged.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

import asr.nets.models  # noqa: F401  (registers build_model, which checkpoint.load checks configs with)
from asr.store.payload import Checkpoint

KEEP_DIR = "avg"  # <out>/avg/: the checkpoints `--average` keeps
AVERAGED = "averaged.pt"
_KEEP_NAME = re.compile(r"^step-(\d+)\.pt$")


def average_state_dicts(state_dicts: list[dict]) -> dict:
    """The element-wise mean of state dicts with the same keys and shapes (integer tensors:
    the last one's values)."""
    if not state_dicts:
        raise ValueError("nothing to average: no checkpoint given")
    keys = list(state_dicts[-1])
    for i, sd in enumerate(state_dicts):
        if set(sd) != set(keys):
            missing = sorted(set(keys) ^ set(sd))[:3]
            raise ValueError(f"checkpoint {i + 1} of {len(state_dicts)} holds other weights than the last "
                             f"(e.g. {missing}): only checkpoints of one model can be averaged")
    out = {}
    for k in keys:
        last = state_dicts[-1][k]
        shapes = {tuple(sd[k].shape) for sd in state_dicts}
        if len(shapes) > 1:
            raise ValueError(f"weight {k!r} has different shapes {sorted(shapes)}: only checkpoints of one "
                             "model can be averaged")
        if last.is_floating_point() or last.is_complex():
            total = torch.zeros(last.shape, dtype=torch.float64)
            for sd in state_dicts:
                total += sd[k].detach().to("cpu", torch.float64)
            out[k] = (total / len(state_dicts)).to(last.dtype)
        else:
            out[k] = last.detach().to("cpu").clone()
    return out


def averaged(paths: list[Path]) -> Checkpoint:
    """The mean of `paths` (see the module docstring); the files must hold one model config."""
    if not paths:
        raise ValueError("nothing to average: no checkpoint given")
    ckpts = [Checkpoint.read(p) for p in paths]
    first = ckpts[0].card.model
    for p, c in zip(paths, ckpts):
        if c.card.model != first:
            raise ValueError(f"{p} holds another model ({c.card.name}) than {paths[0]}: only checkpoints of one "
                             "model can be averaged")
    return dataclasses.replace(ckpts[-1], weights=average_state_dicts([c.weights for c in ckpts]),
                               averaged_from=[str(p) for p in paths], train_state=None)


def average_checkpoints(paths: list[Path], out: Path) -> Checkpoint:
    """Write the mean of `paths` to `out` (atomically); returns it."""
    mean = averaged([Path(p) for p in paths])
    mean.save(out)
    return mean


# --------------------------------------------------------------------------------------
# the checkpoints a run keeps for averaging
# --------------------------------------------------------------------------------------
def kept(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints kept in `folder` (<out>/avg), by step."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _KEEP_NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def keep(folder: Path, step: int, ckpt: Checkpoint, n: int) -> list[Path]:
    """Save `ckpt`'s weights and decoding metadata (not its training state) as
    <folder>/step-<step>.pt, then delete all but the last `n` kept; returns the kept paths."""
    ckpt.without_train_state().save(Path(folder) / f"step-{step:08d}.pt")
    return prune(folder, n)


def prune(folder: Path, n: int, after_step: int | None = None) -> list[Path]:
    """Delete the kept checkpoints past `after_step` (a resumed run trains those steps again),
    then all but the last `n`; returns the paths left."""
    entries = kept(folder)
    if after_step is not None:
        for step, p in entries:
            if step > after_step:
                p.unlink(missing_ok=True)
        entries = [(s, p) for s, p in entries if s <= after_step]
    for _, p in entries[:-n] if n > 0 else entries:
        p.unlink(missing_ok=True)
    return [p for _, p in (entries[-n:] if n > 0 else [])]
