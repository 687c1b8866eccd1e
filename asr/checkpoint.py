"""Self-contained checkpoints: one .pt is enough to transcribe and to resume (file I/O only:
asr/models.py's `load_model` rebuilds the model and tokenizer from one).

Contents: format tag, model config and weights, tokenizer, feature config, normaliser,
CMVN, language, training step / epoch position, optimizer, scheduler, scaler and RNG
states, training config, and the metrics at the time it was written.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_path, write_text

FORMAT = "cv-asr-checkpoint-1"


class CheckpointError(Exception):
    pass


def save(path: Path, payload: dict) -> None:
    """Write atomically: a crash mid-write never leaves a half checkpoint under `path`. A full
    disk raises OSError(ENOSPC) naming `path` (torch's own writer would only say "unexpected
    pos"), and the previous file stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save({"format": FORMAT, **payload}, f)
        except RuntimeError as e:  # torch wraps the failed write() of the file object
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise


def trim_log(path: Path, step: int) -> int:
    """Drop the lines of a JSON-lines log (metrics.jsonl) whose "step" is past `step` (a resumed
    run's checkpoint: those steps are trained again), and any unreadable line; rewritten
    atomically. Returns how many lines were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()

    def keep(line: str) -> bool:
        try:
            return json.loads(line).get("step", 0) <= step
        except (ValueError, AttributeError):
            return False

    kept = [line for line in lines if keep(line)]
    if len(kept) < len(lines):
        write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def load(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # pickle, zip and torch errors all mean "not a checkpoint"
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cv-asr checkpoint (made by `asr-cli train`)")
    return ckpt


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def summary_writer(folder: Path):
    """TensorBoard's writer for `folder`. A write its background thread cannot make (a full
    disk) is raised in the training thread, the first time naming `folder`, instead of being
    printed as a thread's traceback."""
    from torch.utils.tensorboard import SummaryWriter

    if threading.excepthook is not _quiet_event_writer:
        global _previous_hook
        _previous_hook, threading.excepthook = threading.excepthook, _quiet_event_writer
    try:
        return SummaryWriter(str(folder))
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(folder)) from None


_previous_hook = threading.excepthook


def _quiet_event_writer(args) -> None:
    """tensorboard's writer thread re-raises its OSError in the thread that writes next."""
    if not (issubclass(args.exc_type, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
        _previous_hook(args)
