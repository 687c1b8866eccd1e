"""Construction and loading: the one place that maps (kind, preset, options) to a network.

A model config is a plain dict (what checkpoints store): kind, preset, vocab_size, n_mels and
the flat options (EncoderConfig fields, then the model's own: CTC's `upsample`, LASConfig's
fields), made by `model_config` from a preset of asr/nets/presets.py. `build_model` builds it
through BUILDERS, one function per model kind (a new kind: its network's file and a line
there); `load_model` rebuilds a trained model and its tokenizer from a checkpoint file
(asr/inference/loading.py opens either a checkpoint or an ONNX export for use).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

import asr.nets.ctc_frames as ctc_frames
import asr.store.checkpoint as checkpoint  # `from asr import` would count as importing the package (the API)
from asr.nets.ctc import CTCConfig, CTCModel
from asr.nets.encoders import EncoderConfig
from asr.nets.kinds import KINDS
from asr.nets.las import LASConfig, LASModel
from asr.nets.presets import CTC_PRESETS, LAS_PRESETS, PRESETS  # noqa: F401  (the tables, by kind)
from asr.nets.transducer import RNNTConfig, TransducerModel
from asr.store.payload import Checkpoint
from asr.tokens.tokenizer import Tokenizer, tokenizer_from_state

ENCODER_FIELDS = {f.name for f in dataclasses.fields(EncoderConfig)} - {"n_mels"}
LAS_FIELDS = {f.name for f in dataclasses.fields(LASConfig)} - {"vocab_size", "encoder"}
RNNT_FIELDS = {f.name for f in dataclasses.fields(RNNTConfig)} - {"vocab_size", "encoder"}


def presets(kind: str) -> dict[str, dict]:
    if kind not in PRESETS:
        raise ValueError(f"unknown model kind {kind!r} (choose from {', '.join(KINDS)})")
    return PRESETS[kind]


def encoder_config(n_mels: int, options: dict) -> EncoderConfig:
    enc = {k: v for k, v in options.items() if k in ENCODER_FIELDS}
    if "conv_kernels" in enc:
        enc["conv_kernels"] = tuple(tuple(k) for k in enc["conv_kernels"])
    return EncoderConfig(n_mels=n_mels, **enc)


def model_config(kind: str, preset: str, vocab_size: int, n_mels: int, overrides: dict | None = None) -> dict:
    """A plain-dict model config (what checkpoints store): preset values, then overrides."""
    table = presets(kind)
    if preset not in table:
        raise ValueError(f"unknown {kind} preset {preset!r} (choose from {', '.join(table)})")
    options = {**table[preset], **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return {"kind": kind, "preset": preset, "vocab_size": vocab_size, "n_mels": n_mels, "options": options}


def _build_ctc(config: dict, options: dict) -> nn.Module:
    upsample = options.pop("upsample", 1)
    if upsample == "auto":  # not resolved from a train split (asr/nets/ctc_frames.py): a benchmark, a count
        upsample = ctc_frames.UNRESOLVED
    unknown = set(options) - ENCODER_FIELDS
    if unknown:
        raise ValueError(f"options {sorted(unknown)} do not apply to the CTC model")
    if options.get("streaming") and options.get("encoder") != "conformer":
        raise ValueError("streaming needs the Conformer encoder (a conformer-* preset, or --encoder conformer)")
    return CTCModel(CTCConfig(config["vocab_size"], encoder_config(config["n_mels"], options), upsample))


def _build_las(config: dict, options: dict) -> nn.Module:
    unknown = set(options) - ENCODER_FIELDS - LAS_FIELDS
    if unknown:
        raise ValueError(f"options {sorted(unknown)} do not apply to the LAS model "
                         f"(known: {', '.join(sorted(ENCODER_FIELDS | LAS_FIELDS))})")
    if options.get("streaming"):
        raise ValueError("streaming is for CTC and transducer models (--model ctc, rnnt): attention decoding needs "
                         "the whole input")
    las = {k: v for k, v in options.items() if k in LAS_FIELDS}
    return LASModel(LASConfig(config["vocab_size"], encoder_config(config["n_mels"], options), **las))


def _build_rnnt(config: dict, options: dict) -> nn.Module:
    unknown = set(options) - ENCODER_FIELDS - RNNT_FIELDS
    if unknown:
        raise ValueError(f"options {sorted(unknown)} do not apply to the transducer (rnnt) "
                         f"(known: {', '.join(sorted(ENCODER_FIELDS | RNNT_FIELDS))})")
    if options.get("streaming") and options.get("encoder") != "conformer":
        raise ValueError("streaming needs the Conformer encoder (a conformer-* preset, or --encoder conformer)")
    rnnt = {k: v for k, v in options.items() if k in RNNT_FIELDS}
    return TransducerModel(RNNTConfig(config["vocab_size"], encoder_config(config["n_mels"], options), **rnnt))


BUILDERS = {"ctc": _build_ctc, "las": _build_las, "rnnt": _build_rnnt}  # model kind -> (config, its options) -> network


def build_model(config: dict) -> nn.Module:
    """Model from a config made by `model_config` (or read from a checkpoint)."""
    kind = config["kind"]
    if kind not in BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}")
    return BUILDERS[kind](config, dict(config["options"]))


checkpoint.register_model_builder(build_model)  # the config check of checkpoint.load (before any weight)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_model(path: Path, device="cpu") -> tuple[nn.Module, Tokenizer, Checkpoint]:
    """A checkpoint written by `asr-cli train` -> (model in eval mode on `device`, tokenizer,
    Checkpoint without training state). Raises checkpoint.CheckpointError when `path` is not
    one, or lacks what decoding needs (asr/store/payload.py's ModelCard)."""
    ckpt = Checkpoint.read(Path(path))  # no optimizer or RNG states: decoding only
    try:
        model = build_model(ckpt.card.model)
        model.load_state_dict(ckpt.weights)
        tokenizer = tokenizer_from_state(ckpt.card.tokenizer)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a config or weights that do not fit
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise checkpoint.CheckpointError(f"{path}: its model config, weights or tokenizer do not fit ({reason})") from None
    model.to(device).eval()
    return model, tokenizer, ckpt
