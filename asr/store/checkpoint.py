"""Self-contained checkpoints that cannot carry code: one .pt is enough to transcribe and to
resume (file I/O only: asr/nets/models.py's `load_model` rebuilds the model and tokenizer from one).

A checkpoint file (`best.pt`, `last.pt`) is a safetensors file (https://github.com/huggingface/
safetensors: a JSON header, then raw tensor bytes; reading one runs no code, unlike a pickle):

    tensors   "model/<name>"   the model's weights (its state_dict)
              "data/<n>"       the other tensors the payload holds (optimizer moments, RNG states)
    metadata  "format"         FORMAT
              "meta"           JSON: model config, tokenizer (a unigram model's bytes as base64),
                               feature config, normaliser, CMVN, language, position, best CER,
                               training seconds, training config, metrics
              "train_state"    JSON: optimizer, scheduler, scaler and every rank's RNG states
                               (what only `--resume` reads)

The JSON spells what plain JSON cannot with one-key objects: {"$tensor": name}, {"$ndarray":
name, "dtype": ...} (numpy's RNG state), {"$tuple": [...]}, {"$bytes": base64}, {"$items": [[k,
v], ...]} (a dict with non-string keys: the optimizer's per-parameter state). Anything else (an
arbitrary object) cannot be saved: `save` raises TypeError.

`load` sniffs the file first: a pickle (raw, or PyTorch's zip of one, which is what cv-asr
wrote before this format, "cv-asr-checkpoint-1") is refused with a one-line CheckpointError and
never unpickled. Then, before anything is built from it, the metadata is checked against the
tensors (`check_payload`): the model config is built on PyTorch's "meta" device (shapes, no
memory) and must give exactly the file's tensor names and shapes, so a crafted config (an RNN
of 60 x 6000) fails in milliseconds instead of allocating gigabytes; the feature config, CMVN,
language and tokenizer must be usable. Every failure is a CheckpointError naming the field.
"""

from __future__ import annotations

import base64
import json
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from asr.store.validate import (CheckpointError, check_card, check_cmvn, check_features,  # noqa: F401  (re-exported)
                                check_model, check_model_config, check_payload, check_resume_compatible,
                                register_model_builder, resume_differences)
from pipeline.atomic import atomic_path

FORMAT = "cv-asr-checkpoint-2"
OLD_FORMAT = "cv-asr-checkpoint-1"  # a pickled dict (torch.save), written by cv-asr before FORMAT
WEIGHTS = "state_dict"  # the payload key whose tensors are the model's weights
TRAIN_STATE = ("optimizer", "scheduler", "scaler", "rng")  # payload keys only `--resume` reads
_MODEL, _DATA = "model/", "data/"




# --------------------------------------------------------------------------------------
# plain data <-> JSON + tensors
# --------------------------------------------------------------------------------------
def _encode(obj, tensors: dict):
    if isinstance(obj, torch.Tensor):
        name = f"{_DATA}{len(tensors)}"
        tensors[name] = obj
        return {"$tensor": name}
    if isinstance(obj, np.ndarray):
        name = f"{_DATA}{len(tensors)}"
        tensors[name] = torch.from_numpy(obj.astype(np.int64) if obj.dtype.kind == "u" else obj.copy())
        return {"$ndarray": name, "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"$items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"a checkpoint holds plain data and tensors only, not {type(obj).__name__}")


def _decode(obj, tensor):
    if isinstance(obj, list):
        return [_decode(v, tensor) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "$tensor" in obj:
        return tensor(obj["$tensor"])
    if "$ndarray" in obj:
        dtype = _array_dtype(obj.get("dtype"))  # before the tensor is even looked up
        return tensor(obj["$ndarray"]).numpy().astype(dtype)
    if "$bytes" in obj:
        return base64.b64decode(obj["$bytes"])
    if "$tuple" in obj:
        return tuple(_decode(v, tensor) for v in obj["$tuple"])
    if "$items" in obj:
        return {_decode(k, tensor): _decode(v, tensor) for k, v in obj["$items"]}
    return {k: _decode(v, tensor) for k, v in obj.items()}


def _array_dtype(spec) -> np.dtype:
    """The dtype of a JSON-described array: numbers only, at most 16 bytes an item (numpy's RNG
    state is uint32). A crafted `<U200000000` would allocate 800 MB an element."""
    try:
        dtype = np.dtype(spec if isinstance(spec, str) and len(spec) <= 16 else None)
    except TypeError:
        dtype = None
    if spec is None or dtype is None or dtype.kind not in "biufc" or dtype.itemsize > 16:
        raise CheckpointError(f"an array's dtype {str(spec)[:40]!r} is not a plain number type")
    return dtype


def _plain_tensors(tensors: dict) -> dict:
    """On the CPU, contiguous, no two sharing memory (safetensors refuses shared storage)."""
    out, seen = {}, set()
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[name] = t
    return out


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
def save(path: Path, payload: dict) -> None:
    """Write atomically: a crash mid-write never leaves a half checkpoint under `path`. A full
    disk raises OSError(ENOSPC) naming `path`, and the previous file stays as it was."""
    from safetensors.torch import save as safetensors_bytes

    path = Path(path)
    tensors = {_MODEL + k: v for k, v in payload.get(WEIGHTS, {}).items()}
    train = {k: payload[k] for k in TRAIN_STATE if k in payload}
    rest = {k: v for k, v in payload.items() if k != WEIGHTS and k not in TRAIN_STATE}
    metadata = {"format": FORMAT, "meta": json.dumps(_encode(rest, tensors)),
                "train_state": json.dumps(_encode(train, tensors))}
    data = safetensors_bytes(_plain_tensors(tensors), metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def _head(z: zipfile.ZipFile, name: str, size: int = 1 << 20) -> bytes:
    """The first bytes of a member (an old checkpoint's pickle names its format first)."""
    with z.open(name) as f:
        return f.read(size)


def _safetensors_head(head: bytes, size: int) -> bool:
    """Whether a file starts as safetensors does: an 8-byte little-endian header length that fits
    the file, then the JSON header's "{". Checked before the pickle test: the length's first byte
    is 0x80 (a pickle's first opcode) for one header length in 256 (it happened to a checkpoint
    with a 9,856-byte header)."""
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= size - 8 and head[8:9] == b"{"


def _refuse_pickle(path: Path) -> None:
    """A pickle (what torch.save writes) can run code when loaded: say what the file is, never
    unpickle it."""
    with open(path, "rb") as f:
        head = f.read(9)
    if _safetensors_head(head, path.stat().st_size):
        return
    if head.startswith(b"PK\x03\x04") and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                pickles = [n for n in z.namelist() if n.endswith(".pkl")]
                old = any(OLD_FORMAT.encode() in _head(z, n) for n in pickles)
        except (zipfile.BadZipFile, OSError, RuntimeError):
            pickles, old = [], False
        if old:
            raise CheckpointError(
                f"{path} was made by an earlier cv-asr in a format that can carry code (a pickle) and will not "
                f"be loaded: retrain, or convert it with `asr-cli checkpoint upgrade {path}` (which reads only "
                "tensors and plain data from it)")
        if pickles:
            raise CheckpointError(f"{path} is not a cv-asr checkpoint: it is a pickled PyTorch file, which can run "
                                  "code when loaded, and is not loaded")
    if head[:1] == b"\x80":  # a pickle's protocol opcode (torch.save's legacy format too)
        raise CheckpointError(f"{path} is not a cv-asr checkpoint: it is a pickle, which can run code when loaded, "
                              "and is not loaded")


def load(path: Path, map_location="cpu", train_state: bool = True) -> dict:
    """The payload `save` wrote (the weights under "state_dict"); without the optimizer,
    scheduler, scaler and RNG states (what only `--resume` needs) when not `train_state`. Raises CheckpointError, with
    one line naming `path`, for anything else; never unpickles anything."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint: give a file in it, e.g. {path / 'best.pt'}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    _refuse_pickle(path)
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a cv-asr checkpoint (made by `asr-cli train`): a safetensors "
                                      "file without cv-asr's metadata")
            ckpt = {"format": FORMAT, **_decode(json.loads(meta["meta"]), f.get_tensor)}
            shapes = {k[len(_MODEL):]: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith(_MODEL)}
            check_payload(ckpt, shapes)  # before any weight is read, and before anything is built
            ckpt[WEIGHTS] = {k[len(_MODEL):]: f.get_tensor(k) for k in f.keys() if k.startswith(_MODEL)}
            if train_state:
                ckpt.update(_decode(json.loads(meta["train_state"]), f.get_tensor))
    except CheckpointError as e:
        if str(path) not in str(e):
            raise CheckpointError(f"{path}: {e}") from None
        raise
    except Exception as e:  # safetensors' header errors, bad JSON, a missing tensor
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason})") from None
    return ckpt


def upgrade(old: Path, new: Path) -> dict:
    """Convert a checkpoint written by an earlier cv-asr (OLD_FORMAT: a pickled dict) into this
    format. It is read with torch's restricted unpickler (`weights_only=True`: tensors, plain
    containers and numbers, plus numpy's arrays for the RNG state), which refuses any other
    object instead of building it, so a crafted file runs nothing here either."""
    old, new = Path(old), Path(new)
    if not old.is_file():
        raise CheckpointError(f"checkpoint {old} does not exist")
    try:
        _refuse_pickle(old)
    except CheckpointError as e:
        if "earlier cv-asr" not in str(e):
            raise
    else:
        raise CheckpointError(f"{old} is not a checkpoint of an earlier cv-asr (nothing to upgrade)")
    np_core = getattr(np, "_core", None) or np.core
    allowed = [np_core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    try:
        with torch.serialization.safe_globals(allowed):
            payload = torch.load(old, map_location="cpu", weights_only=True)
    except Exception as e:  # the restricted unpickler met something else: refused, not built
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{old} holds more than tensors and plain data, not converted ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != OLD_FORMAT:
        raise CheckpointError(f"{old} is not a checkpoint of an earlier cv-asr (nothing to upgrade)")
    payload = {k: v for k, v in payload.items() if k != "format"}
    save(new, payload)
    return payload


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
