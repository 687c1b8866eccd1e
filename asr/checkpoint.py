"""Self-contained checkpoints: one .pt is enough to transcribe and to resume (file I/O only:
asr/models.py's `load_model` rebuilds the model and tokenizer from one).

Contents: format tag, model config and weights, tokenizer, feature config, normaliser,
CMVN, language, training step / epoch position, optimizer, scheduler, scaler and RNG
states, training config, and the metrics at the time it was written.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_path

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
