"""A trained model opened for use: `open_model(path, device) -> LoadedModel`, the one type that
eval, transcribe, the Python API, live streams, serve and export take.

    loaded = open_model(Path("runs/fr-ctc/best.pt"), device)     # or an `asr-cli export` .onnx
    loaded.model, loaded.tokenizer, loaded.features, loaded.mean, loaded.std, loaded.normalizer
    loaded.kind, loaded.streaming, loaded.step, loaded.dev_cer

A checkpoint (asr/nets/models.py's `load_model`) or an ONNX export (asr/inference/onnx_model.py's
`load_onnx`, onnxruntime on the CPU), told apart by the file's suffix. Either way the model has
`kind` and what asr/decoding/ needs of its kind, and its metadata (asr/store/payload.py's
ModelCard: features, CMVN, units, language) was checked once, when the file was opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr.store.payload import ModelCard
from asr.tokens.tokenizer import Tokenizer
from pipeline.audio import FeatureConfig

ONNX_SUFFIX = ".onnx"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to decode, with everything decoding needs of its training (immutable: many
    sessions and threads share one; they never share a decoder, asr/decoding/decoder.py)."""

    path: Path
    model: object  # torch nn.Module in eval mode, or an asr/inference/onnx_model.py model
    tokenizer: Tokenizer
    card: ModelCard
    device: torch.device
    features: FeatureConfig  # the training shards' feature config: what audio is turned into
    mean: np.ndarray  # CMVN [F], float32: features are normalised as (feats - mean) / std
    std: np.ndarray
    normalizer: object  # pipeline.text's normaliser of the training language: hypotheses go through it
    step: int | None = None  # the training step it was saved at
    metrics: dict | None = None  # the dev figures it was saved with (loss, cer, wer ...)
    best_cer: float | None = None  # the run's best dev CER up to then
    onnx: bool = False
    meta: dict | None = None  # an ONNX export's own metadata (chunk, left context ...), None for a .pt

    @property
    def dev_cer(self) -> float | None:
        return (self.metrics or {}).get("cer")

    @property
    def kind(self) -> str:
        return self.card.kind

    @property
    def lang(self) -> str:
        return self.card.lang

    @property
    def streaming(self) -> bool:
        """Whether it decodes chunk by chunk (a Conformer CTC or transducer model trained with
        --streaming, or its streaming ONNX export)."""
        return can_stream(self.model)

    def describe(self) -> str:
        step = f", step {self.step}" if self.step is not None else ""
        return f"{self.card.name}{step}{' (onnx)' if self.onnx else ''}"


def can_stream(model) -> bool:
    """Whether `model` (torch or ONNX) decodes chunk by chunk."""
    if hasattr(model, "chunk_runner"):
        return getattr(model, "streaming", False)
    cfg = getattr(getattr(model, "encoder", None), "cfg", None)
    return getattr(model, "kind", None) in ("ctc", "rnnt") and bool(getattr(cfg, "streaming", False))


def open_model(path: str | Path, device="cpu") -> LoadedModel:
    """The model at `path` on `device` (an ONNX export runs on the CPU). Raises
    asr.store.checkpoint.CheckpointError, naming the file and why, for anything else."""
    from asr.nets.models import load_model
    from pipeline.text import get_normalizer

    path = Path(path)
    device = torch.device(device)
    if path.suffix == ONNX_SUFFIX:
        from asr.inference.onnx_model import load_onnx

        model, tokenizer, meta = load_onnx(path)
        card = ModelCard.of(meta, path)
        step, metrics, best, extra = meta.get("step"), meta.get("metrics") or {}, meta.get("best_cer"), meta
    else:
        model, tokenizer, ckpt = load_model(path, device)
        card, step, metrics, best, extra = ckpt.card, ckpt.step, ckpt.metrics, ckpt.best_cer, None
    mean, std = card.cmvn_arrays()
    return LoadedModel(path=path, model=model, tokenizer=tokenizer, card=card, device=device,
                       features=card.feature_config(), mean=mean, std=std, normalizer=get_normalizer(card.lang),
                       step=step, metrics=metrics, best_cer=best, onnx=extra is not None, meta=extra)
