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

from pipeline.atomic import atomic_path
from pipeline.shardformat import applied_cmvn

FORMAT = "cv-asr-checkpoint-2"
OLD_FORMAT = "cv-asr-checkpoint-1"  # a pickled dict (torch.save), written by cv-asr before FORMAT
WEIGHTS = "state_dict"  # the payload key whose tensors are the model's weights
TRAIN_STATE = ("optimizer", "scheduler", "scaler", "rng")  # payload keys only `--resume` reads
_MODEL, _DATA = "model/", "data/"


class CheckpointError(ValueError):  # a ValueError: every command that reports bad input reports it
    pass


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


# --------------------------------------------------------------------------------------
# what a checkpoint says must fit its tensors (and be usable) before anything is built
# --------------------------------------------------------------------------------------
MIN_N_FFT = 16
MAX_LANG = 64


def _field(ok: bool, name: str, value, want: str) -> None:
    if not ok:
        raise CheckpointError(f"field {name!r} is {str(value)[:80]!r}: {want}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def check_features(features) -> None:
    """The feature config: a sample rate, window, hop and FFT that make frames at all."""
    from pipeline.audio import MIN_SAMPLE_RATE, FeatureConfig

    _field(isinstance(features, dict), "features", features, "expected the feature config (a JSON object)")
    defaults = FeatureConfig()
    for name in ("sample_rate", "n_mels", "n_fft"):
        value = features.get(name, getattr(defaults, name))
        _field(isinstance(value, int) and not isinstance(value, bool) and value > 0, f"features.{name}", value,
               "expected a positive integer")
    for name in ("win_ms", "hop_ms", "f_min", "f_max", "log_offset"):
        _field(_number(features.get(name, getattr(defaults, name))), f"features.{name}", features.get(name),
               "expected a finite number")
    try:
        cfg = FeatureConfig.from_dict(features)
    except TypeError as e:
        raise CheckpointError(f"field 'features' does not make a feature config ({e})") from None
    _field(cfg.sample_rate >= MIN_SAMPLE_RATE, "features.sample_rate", cfg.sample_rate, f"at least {MIN_SAMPLE_RATE}")
    _field(cfg.hop_length >= 1, "features.hop_ms", cfg.hop_ms, "expected a hop of at least one sample")
    _field(MIN_N_FFT <= cfg.n_fft <= 1 << 16, "features.n_fft", cfg.n_fft, f"expected {MIN_N_FFT} to 65536")
    _field(1 <= cfg.win_length <= cfg.n_fft, "features.win_ms", cfg.win_ms,
           f"expected a window of 1 to n_fft ({cfg.n_fft}) samples")
    _field(0 <= cfg.f_min < cfg.f_max <= cfg.sample_rate / 2, "features.f_max", cfg.f_max,
           "expected 0 <= f_min < f_max <= sample_rate / 2")
    _field(cfg.log_offset > 0, "features.log_offset", cfg.log_offset, "expected a positive number")
    _field(cfg.n_mels <= cfg.n_fft // 2 + 1, "features.n_mels", cfg.n_mels, "expected at most n_fft / 2 + 1 bins")
    _field(cfg.resample_quality in ("QQ", "LQ", "MQ", "HQ", "VHQ"), "features.resample_quality",
           cfg.resample_quality, "expected one of soxr's QQ, LQ, MQ, HQ, VHQ")
    _field(cfg.dtype in ("float16", "float32"), "features.dtype", cfg.dtype, "expected float16 or float32")


def check_cmvn(cmvn, n_mels: int | None) -> None:
    """mean and std: n_mels finite numbers each, every std above zero (features are divided by it)."""
    _field(isinstance(cmvn, dict), "cmvn", cmvn, "expected {'mean': [...], 'std': [...]}")
    if cmvn.get("mean") is None and cmvn.get("std") is None:
        return  # no statistics: asr.nets.models.load_model says so in its own words
    for name in ("mean", "std"):
        values = cmvn.get(name)
        ok = isinstance(values, list) and (n_mels is None or len(values) == n_mels) and all(map(_number, values))
        _field(ok, f"cmvn.{name}", values, f"expected {n_mels or 'n_mels'} finite numbers")
    _field(all(v > 0 for v in cmvn["std"]), "cmvn.std", cmvn["std"], "expected every std above zero")


def _tokenizer_size(state) -> int:
    from asr.tokens.tokenizer import tokenizer_from_state

    _field(isinstance(state, dict) and isinstance(state.get("kind"), str), "tokenizer", state,
           "expected a tokenizer state")
    if state["kind"] == "char":
        vocab = state.get("vocab")
        _field(isinstance(vocab, list) and all(isinstance(c, str) and c for c in vocab), "tokenizer.vocab",
               vocab, "expected a list of characters")
    try:
        return len(tokenizer_from_state(state))
    except Exception as e:  # a unigram model's bytes sentencepiece cannot read, duplicate units
        raise CheckpointError(f"field 'tokenizer' does not make a tokenizer ({str(e)[:120]})") from None


# The function that builds a model from its config: asr.nets.models registers its `build_model` when
# imported (every reader of checkpoints imports it: models, train, averaging). A hook, not an
# import: asr.nets.models reads checkpoints through this module, which must not import it back.
_BUILD_MODEL: list = []


def register_model_builder(build) -> None:
    _BUILD_MODEL[:] = [build]


def check_model_config(config) -> None:
    """A model config's shape: {kind, options: {...}, vocab_size, n_mels} with positive sizes."""
    _field(isinstance(config, dict) and isinstance(config.get("options"), dict)
           and isinstance(config.get("kind"), str), "model", config, "expected a model config with 'kind' and 'options'")
    for name in ("vocab_size", "n_mels"):
        value = config.get(name)
        _field(isinstance(value, int) and not isinstance(value, bool) and value > 0, f"model.{name}", value,
               "expected a positive integer")


def check_model(config, shapes: dict[str, tuple]) -> None:
    """The model config must build (on the meta device: no memory) exactly the file's tensors."""
    if not _BUILD_MODEL:
        raise RuntimeError("asr.store.checkpoint: no model builder registered (import asr.nets.models first)")
    build_model = _BUILD_MODEL[0]
    check_model_config(config)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    except Exception as e:  # an unknown kind or option, a size the layers refuse
        raise CheckpointError(f"field 'model' does not build a model ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or extra:
        raise CheckpointError(f"field 'model' does not fit the weights: {len(missing)} tensor(s) it needs are not in "
                              f"the file ({', '.join(missing[:3])}), {len(extra)} in the file it has no place for "
                              f"({', '.join(extra[:3])})")
    for name, shape in expected.items():
        if not name.endswith("_extra_state") and shapes[name] != shape:
            raise CheckpointError(f"field 'model' does not fit the weights: it gives {name} the shape {list(shape)}, "
                                  f"the file holds {list(shapes[name])}")


def check_payload(ckpt: dict, shapes: dict[str, tuple]) -> None:
    """CheckpointError, naming the field, unless what the checkpoint says fits its tensors and
    can be used: model config (against `shapes`, the file's "model/" tensor shapes), then the
    rest of its card (`check_card`). Fields a checkpoint lacks are left to the caller
    (asr.store.payload.ModelCard names what decoding needs)."""
    if "model" in ckpt:
        check_model(ckpt["model"], shapes)
    check_card(ckpt)


def check_card(meta: dict) -> None:
    """The decoding metadata of a checkpoint or an ONNX export, whichever fields it has: language,
    feature config, CMVN, model config (its shape: the sizes it says), the feature config's and
    the model's n_mels alike, and a tokenizer whose size is the model's output layer."""
    if "lang" in meta:
        lang = meta["lang"]
        _field(isinstance(lang, str) and 0 < len(lang) <= MAX_LANG and lang.isprintable(), "lang", lang,
               "expected a language code such as 'fr'")
    if "features" in meta:
        check_features(meta["features"])
    model = meta.get("model")
    if "model" in meta:
        check_model_config(model)
    if "cmvn" in meta:
        check_cmvn(meta["cmvn"], model["n_mels"] if isinstance(model, dict) else None)
    if "model" in meta and isinstance(meta.get("features"), dict) and "n_mels" in meta["features"]:
        _field(meta["features"]["n_mels"] == model["n_mels"], "model.n_mels", model["n_mels"],
               f"expected the feature config's n_mels ({meta['features']['n_mels']})")
    if "tokenizer" in meta:
        size = _tokenizer_size(meta["tokenizer"])
        if isinstance(model, dict):
            _field(size == model["vocab_size"], "tokenizer", f"{size} units",
                   f"expected the model's output layer's {model['vocab_size']} units")


# What a resumed run keeps from the run before: its network and units. These options and the
# shards' contents must be those the run was started with, or resuming would train the old
# network on other data (or record options it never used).
RESUME_OPTIONS = ("model", "preset", "tokens")
RESUME_DATA = ("lang", "features", "cmvn", "vocab")


def resume_differences(state: dict, options: dict, dataset: dict) -> list[str]:
    """What differs between the run in `state` (a last.pt payload) and this command: its
    options (`options`: the TrainConfig as a dict) and shards (`dataset`: dataset.json), one
    phrase each ("--preset small, not tiny")."""
    before = state.get("train_config") or {}
    out = [f"--{k} {options[k]}, not {before[k]}" for k in RESUME_OPTIONS
           if k in before and k in options and before[k] != options[k]]
    old_opts, new_opts = before.get("model_options") or {}, options.get("model_options") or {}
    out += [f"--{k.replace('_', '-')} {v}, not {old_opts.get(k, '(the preset value)')}"
            for k, v in sorted(new_opts.items()) if old_opts.get(k) != v]
    old_data = {"lang": state.get("lang"), "features": state.get("features"), "cmvn": state.get("cmvn"),
                "vocab": (state.get("tokenizer") or {}).get("vocab")}
    for k in RESUME_DATA:
        if k == "vocab" and (state.get("tokenizer") or {}).get("kind") != "char":
            continue  # sub-word units are trained from the text, not listed in dataset.json
        # a run records its cmvn as applied (std floored); runs before the floor, as read
        now = [dataset.get(k)] + ([applied_cmvn(dataset["cmvn"])] if k == "cmvn" and dataset.get(k) else [])
        if old_data[k] is not None and old_data[k] not in now:
            shown = f" {dataset.get(k)}, not {old_data[k]}" if k == "lang" else ""
            out.append(f"the shards' {k}{shown}")
    return out


def check_resume_compatible(state: dict, options: dict, dataset: dict, out: str | Path) -> None:
    """ValueError, in one line, when `--resume` would go on with the old network and units
    while recording other options or another data set's statistics (see `resume_differences`)."""
    changed = resume_differences(state, options, dataset)
    if changed:
        raise ValueError(f"--resume: the run in {out} was started with other options or shards ({'; '.join(changed)}): "
                         "resume with the options and shards it was started with, or start over with --force "
                         "or another --out")


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
