"""Model presets, construction and loading: one place that maps (kind, preset, options) to a model.

    ctc/tiny    tests: a few seconds on a CPU
    ctc/small   the demo: 3.38 M parameters, learns the synthetic corpus on 2 CPU cores in minutes
    ctc/lab     the original lab's DeepSpeech2-like model: two wide convs, 4 x 1024 BiGRU (~70 M)
    ctc/conformer-tiny    tests: a 1-block Conformer (asr/encoders/conformer.py), 0.02 M
    ctc/conformer-small   Conformer sized for the CPU demo: x4 front, d 144, 6 blocks, kernel 15 (3.02 M)
    ctc/conformer-base    Conformer for a GPU and a full release: x4, d 256, 12 blocks, kernel 31 (32.8 M)
    ctc/conformer-small-streaming, ctc/conformer-base-streaming   the same, trained to stream too
    las/tiny, las/small, las/small-pyramid, las/lab   Listen, Attend and Spell (asr/las.py)
    las/conformer-small   LAS with a Conformer listener (x4, d 144, 6 blocks; 3.66 M)

(parameter counts with the demo's 46 character units)

A model config is a plain dict (what checkpoints store): kind, preset, vocab_size, n_mels and
the flat options (EncoderConfig fields, then the model's own: CTC's `upsample`, LASConfig's
fields). `load_model` rebuilds a model and its tokenizer from a checkpoint file (asr/loading.py
opens either a checkpoint or an exported ONNX model for use).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from torch import nn

import asr.checkpoint as checkpoint  # `from asr import` would count as importing the package (the API)
import asr.ctc_frames as ctc_frames
from asr.ctc import CTCConfig, CTCModel
from asr.encoders import EncoderConfig
from asr.kinds import KINDS
from asr.las import LASConfig, LASModel
from asr.tokenizer import Tokenizer, tokenizer_from_state

CTC_PRESETS: dict[str, dict] = {
    "tiny": dict(conv_channels=8, proj_dim=64, rnn_layers=1, rnn_hidden=64, dropout=0.0),
    # padded batches in training (1.6x faster than packed on a CPU; inference packs, asr/encoders/rnn.py) and a
    # LayerNorm after each BiGRU layer; two CTC frames per encoder frame (upsample 2: 50 a second behind the x4 front): at 25 a second, characters
    # left CTC too few frames for fast speech. In the demo's 15 minutes (bf16, speed copies) it took dev CER
    # from 19.1 % to 15.8 %, test from 17.3 % to 13.9 %, and the outside voices at 215-230 words a minute
    # from 44-53 % to 24-30 % (bench/external_fr.py), for 0.7 % more parameters and the same step time.
    # Three (upsample 3) made every figure worse: dev 18.7 %, test 16.4 %, the fast voices 28-34 %.
    "small": dict(conv_channels=32, proj_dim=256, rnn="gru", rnn_layers=3, rnn_hidden=256, dropout=0.1,
                  pack=False, layer_norm=True, upsample="auto"),
    "lab": dict(conv_channels=32, conv_kernels=((11, 41), (11, 21)), proj_dim=1024, rnn_layers=4,
                rnn_hidden=1024, dropout=0.1),
    # tests: seconds on a CPU
    "conformer-tiny": dict(encoder="conformer", subsampling=4, conv_channels=8, d_model=32, blocks=1, heads=2,
                           ff_mult=2, conv_kernel=7, dropout=0.0),
    # Conformer (asr/encoders/conformer.py): x4 conv front, d 144, 6 blocks, 4 heads, kernel 15, rotary MHSA, characters.
    # Chosen on dev at equal wall time (bench/bench_encoders.py, 1 thread, 5,000-frame demo batches, idle
    # machine: BiGRU small 453 ms/step; this 444 ms = 1,666 steps in the demo's 15 minutes; the x8
    # FastConformer front + upsample 2, d 144 x 6: 288 ms = 2,568 steps), with a quarter-budget proxy of the
    # demo recipe (lr 3e-3, warm-up 100, 1 process, batch 10,000 frames, dev CER on 400 utterances):
    # BiGRU small 400 steps 33.0 %; this 408 steps 73.8 % (at lr 2e-3, warm-up 200: 79.5 %); x8 + upsample 2,
    # 630 steps 77.4 %; x8 at lr 1e-3, 400 steps 92.5 %. Every Conformer sits on CTC's blank plateau for
    # 300-500 steps where the BiGRU leaves it at ~150. Full 15-minute demo runs (2 ranks, 1,700 steps, 201 audio
    # s/s): at the BiGRU's lr 3e-3 it never leaves the plateau (dev 89 %); at lr 1e-3, warm-up 300 it does by
    # step 500: dev 27.8 %, test 24.8 % greedy, against the BiGRU's 20.9 % / 18.3 % (README, "Recipes").
    # With small's two CTC frames per encoder frame (upsample 2), bf16 and the demo's speed copies:
    # 2,247 steps, dev 21.7 %, test 19.6 % (the BiGRU's recipe with them: 15.8 % / 13.9 %).
    # LayerScale 0.1: without it, two seeds in three sat on the blank plateau (60-minute recipe, no speed
    # copies: dev CER at step 750 98 % and 85 %, seed 0 still 93 % at step 2,000); with it all three left it
    # by step 500 (dev 39.5, 44.4 and 39.8 %; 30.5, 33.6 and 31.5 % at 750; seed 1 without it: 71 and 40 %).
    # In the demo's 15 minutes (seed 0, speed copies): dev 39.8 % at step 500 against 75.1 %, 19.6 % at the
    # end against 21.7 % (2,112 steps against 2,247), test 18.1 % against 19.6 %.
    "conformer-small": dict(encoder="conformer", subsampling=4, conv_channels=32, d_model=144, blocks=6, heads=4,
                            ff_mult=4, conv_kernel=15, dropout=0.1, upsample="auto", layer_scale=0.1),
    # the GPU recipe for a full release (ESPnet's Common Voice Conformer sizes: d 256, FFN 2048, x4 front, 32.8 M).
    # Schedule (not measured here): ESPnet's recipe peaks at lr 2e-3 after 25k warm-up steps then decays (Noam);
    # the loop's warm-up + cosine stands in: --lr 2e-3 --warmup 25000 --max-steps 150000 or more, large batches
    # (--batch-frames 100000+ per GPU, bf16), SpecAugment's masks on (the CLI default)
    "conformer-base": dict(encoder="conformer", subsampling=4, conv_channels=256, d_model=256, blocks=12, heads=4,
                           ff_mult=8, conv_kernel=31, dropout=0.1),
}
# The streaming twins (asr/encoders/conformer.py, "Streaming"): the same sizes with a causal conv and
# dynamic chunk masks in training; one checkpoint decodes whole files and streams (asr/streaming.py).
CTC_PRESETS["conformer-small-streaming"] = dict(CTC_PRESETS["conformer-small"], streaming=True)
CTC_PRESETS["conformer-base-streaming"] = dict(CTC_PRESETS["conformer-base"], streaming=True)

# name -> options (EncoderConfig fields and LASConfig fields); parameters with 45 units
LAS_PRESETS: dict[str, dict] = {
    # tests: seconds on a CPU (0.20 M)
    "tiny": dict(conv_channels=8, proj_dim=64, rnn="gru", rnn_layers=1, rnn_hidden=64, dropout=0.0,
                 embed_dim=32, decoder_hidden=96, att_dim=48, att_conv_channels=4, att_conv_kernel=15),
    # the demo: ctc/small's encoder (conv front + 3 x 256 BiGRU with LayerNorm, padded batches, see
    # asr/encoders/rnn.py) + a 1 x 256 LSTM speller (1.17 M)
    "small": dict(conv_channels=32, proj_dim=256, rnn="gru", rnn_layers=3, rnn_hidden=256, dropout=0.1,
                  pack=False, layer_norm=True, embed_dim=64, decoder_hidden=256, att_dim=128, att_conv_channels=10,
                  att_conv_kernel=31),
    # the same sizes with Chan et al.'s pyramidal listener (x8, 5.96 M): use with --tokens unigram:N
    "small-pyramid": dict(listener="pyramid", proj_dim=256, rnn="gru", rnn_layers=3, rnn_hidden=256,
                          dropout=0.1, embed_dim=64, decoder_hidden=256, att_dim=128, att_conv_channels=10,
                          att_conv_kernel=15),
    # Chan et al.'s LAS on a GPU: stacked frames, 1 BLSTM + 2 pBLSTM of 512 per direction (x8),
    # 2 x 512 LSTM speller (32.3 M); use with --tokens unigram:N (see asr/las.py's docstring)
    "lab": dict(listener="pyramid", proj_dim=512, rnn="lstm", rnn_layers=3, rnn_hidden=512, dropout=0.2,
                embed_dim=256, decoder_layers=2, decoder_hidden=512, att_dim=256, att_conv_channels=10,
                att_conv_kernel=31),
    # ctc/conformer-small's blocks behind the x4 front (the speller needs no x8 saving, and x4
    # keeps the joint CTC term feasible for characters) + small's speller
    "conformer-small": dict(encoder="conformer", subsampling=4, conv_channels=32, d_model=144, blocks=6, heads=4,
                            ff_mult=4, conv_kernel=15, dropout=0.1, embed_dim=64, decoder_hidden=256, att_dim=128,
                            att_conv_channels=10, att_conv_kernel=31),
}

ENCODER_FIELDS = {f.name for f in dataclasses.fields(EncoderConfig)} - {"n_mels"}
LAS_FIELDS = {f.name for f in dataclasses.fields(LASConfig)} - {"vocab_size", "encoder"}
DECODING_KEYS = ("features", "cmvn", "lang")  # what a checkpoint needs besides the model to decode


def presets(kind: str) -> dict[str, dict]:
    if kind == "ctc":
        return CTC_PRESETS
    if kind == "las":
        return LAS_PRESETS
    raise ValueError(f"unknown model kind {kind!r} (choose from {', '.join(KINDS)})")


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


def build_model(config: dict) -> nn.Module:
    """Model from a config made by `model_config` (or read from a checkpoint)."""
    kind, options = config["kind"], dict(config["options"])
    if kind == "ctc":
        upsample = options.pop("upsample", 1)
        if upsample == "auto":  # not resolved from a train split (asr/ctc_frames.py): a benchmark, a count
            upsample = ctc_frames.UNRESOLVED
        unknown = set(options) - ENCODER_FIELDS
        if unknown:
            raise ValueError(f"options {sorted(unknown)} do not apply to the CTC model")
        if options.get("streaming") and options.get("encoder") != "conformer":
            raise ValueError("streaming needs the Conformer encoder (a conformer-* preset, or --encoder conformer)")
        return CTCModel(CTCConfig(config["vocab_size"], encoder_config(config["n_mels"], options), upsample))
    if kind == "las":
        unknown = set(options) - ENCODER_FIELDS - LAS_FIELDS
        if unknown:
            raise ValueError(f"options {sorted(unknown)} do not apply to the LAS model "
                             f"(known: {', '.join(sorted(ENCODER_FIELDS | LAS_FIELDS))})")
        if options.get("streaming"):
            raise ValueError("streaming is for CTC models (--model ctc): attention decoding needs the whole input")
        las = {k: v for k, v in options.items() if k in LAS_FIELDS}
        return LASModel(LASConfig(config["vocab_size"], encoder_config(config["n_mels"], options), **las))
    raise ValueError(f"unknown model kind {kind!r}")



checkpoint.register_model_builder(build_model)  # the config check of checkpoint.load (before any weight)

def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_model(path: Path, device="cpu") -> tuple[nn.Module, Tokenizer, dict]:
    """A checkpoint written by `asr-cli train` -> (model in eval mode on `device`, tokenizer,
    checkpoint dict). Raises checkpoint.CheckpointError when `path` is not one, or lacks what
    decoding needs (the feature config, CMVN, language)."""
    ckpt = checkpoint.load(Path(path), train_state=False)  # no optimizer or RNG states: decoding only
    missing = [k for k in DECODING_KEYS if k not in ckpt]
    if missing:
        raise checkpoint.CheckpointError(f"{path} lacks {', '.join(missing)}: not a checkpoint written by "
                                         "`asr-cli train`")
    if ckpt["cmvn"].get("mean") is None:
        raise checkpoint.CheckpointError(f"{path} holds no CMVN statistics")
    try:
        model = build_model(ckpt["model"])
        model.load_state_dict(ckpt["state_dict"])
        tokenizer = tokenizer_from_state(ckpt["tokenizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a config or weights that do not fit
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise checkpoint.CheckpointError(f"{path}: its model config, weights or tokenizer do not fit ({reason})") from None
    model.to(device).eval()
    return model, tokenizer, ckpt


def checkpoint_cmvn(ckpt: dict) -> tuple[np.ndarray, np.ndarray]:
    """The training data's CMVN a checkpoint holds: mean [F], std [F] (float32), applied to
    features as (feats - mean) / std."""
    return np.asarray(ckpt["cmvn"]["mean"], np.float32), np.asarray(ckpt["cmvn"]["std"], np.float32)
