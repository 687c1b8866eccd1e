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

import re
from pathlib import Path

import torch

from asr import checkpoint
import asr.models  # noqa: F401  (registers build_model, which checkpoint.load checks configs with)

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


def averaged_payload(paths: list[Path]) -> dict:
    """The payload of `paths`' mean (see the module docstring); the files must hold one model
    config."""
    if not paths:
        raise ValueError("nothing to average: no checkpoint given")
    payloads = [checkpoint.load(p, train_state=False) for p in paths]
    first = payloads[0]["model"]
    for p, pl in zip(paths, payloads):
        if pl["model"] != first:
            raise ValueError(f"{p} holds another model ({pl['model']['kind']}/{pl['model']['preset']}) than "
                             f"{paths[0]}: only checkpoints of one model can be averaged")
    last = payloads[-1]
    out = {k: v for k, v in last.items() if k not in ("format", *checkpoint.TRAIN_STATE)}
    out["state_dict"] = average_state_dicts([pl["state_dict"] for pl in payloads])
    out["averaged_from"] = [str(p) for p in paths]
    return out


def average_checkpoints(paths: list[Path], out: Path) -> dict:
    """Write the mean of `paths` to `out` (atomically); returns its payload."""
    payload = averaged_payload([Path(p) for p in paths])
    checkpoint.save(Path(out), payload)
    return payload


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


def keep(folder: Path, step: int, payload: dict, n: int) -> list[Path]:
    """Save `payload`'s weights and decoding metadata (not its training state) as
    <folder>/step-<step>.pt, then delete all but the last `n` kept; returns the kept paths."""
    light = {k: v for k, v in payload.items() if k not in checkpoint.TRAIN_STATE}
    checkpoint.save(Path(folder) / f"step-{step:08d}.pt", light)
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
