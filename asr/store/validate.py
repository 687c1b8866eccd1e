"""What a checkpoint says must fit its tensors, and be usable, before anything is built from it.

`check_payload` (asr/store/checkpoint.py's `load` calls it before reading any weight): the
model config is built on PyTorch's "meta" device (shapes, no memory) and must give exactly
the file's tensor names and shapes, so a crafted config (an RNN of 60 x 6000) fails in
milliseconds instead of allocating gigabytes; `check_card`: the feature config, CMVN,
language and tokenizer must be usable (also what an ONNX export's metadata is checked with).
`check_resume_compatible`: a resumed run meets the options and shards it was started with.
Every failure is a CheckpointError naming the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.shardformat import applied_cmvn


class CheckpointError(ValueError):  # a ValueError: every command that reports bad input reports it
    pass


# --------------------------------------------------------------------------------------
# what a checkpoint says must fit its tensors (and be usable) before anything is built
# --------------------------------------------------------------------------------------
MIN_N_FFT = 16
MAX_SAMPLE_RATE = 384000  # the highest rate audio is made at; features at 1e9 Hz are a crafted file
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
    _field(MIN_SAMPLE_RATE <= cfg.sample_rate <= MAX_SAMPLE_RATE, "features.sample_rate", cfg.sample_rate,
           f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}")
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
RESUME_OPTIONS = ("model", "preset", "tokens", "lr", "warmup")  # the schedule too: the restored one would win
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
