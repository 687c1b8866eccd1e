"""What a checkpoint holds, typed: training writes a `Checkpoint`, everything else reads one.

    ckpt = Checkpoint.read("runs/fr-ctc/best.pt")          no optimizer / RNG state
    ckpt.card.kind, ckpt.card.feature_config(), ckpt.step, ckpt.metrics["cer"]
    Checkpoint(card, weights, position=..., ...).save(path)

`ModelCard` is what decoding needs besides the weights (model config, units, features, CMVN,
language, normaliser): the same in a checkpoint and in an ONNX export's metadata, and checked
once, when it is made (`ModelCard.of`), with the checks `asr.store.checkpoint` applies to a
file: a card that exists is usable. The file format is `asr.store.checkpoint`'s (a dict
payload as safetensors + JSON); these classes are its keys with types, so a file written
before them reads the same, and keys this version does not know are kept (`extra`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr.store import checkpoint

CARD_KEYS = ("model", "tokenizer", "features", "cmvn", "lang")  # a card's required keys (normalizer: optional)


@dataclass(frozen=True)
class ModelCard:
    """A trained model's decoding metadata: model config {kind, preset, vocab_size, n_mels,
    options}, tokenizer state, feature config, CMVN {mean [F], std [F]} as training applied it,
    language, normaliser description (None before normalisers were recorded)."""

    model: dict
    tokenizer: dict
    features: dict
    cmvn: dict
    lang: str
    normalizer: dict | None = None

    @classmethod
    def of(cls, meta: dict, where: str | Path) -> "ModelCard":
        """The card in `meta` (a checkpoint payload or an ONNX export's metadata); CheckpointError,
        one line naming `where`, for a missing or unusable field."""
        if not isinstance(meta, dict):
            raise checkpoint.CheckpointError(f"{where}: its metadata is not a JSON object")
        missing = [k for k in CARD_KEYS if k not in meta]
        if missing:
            raise checkpoint.CheckpointError(f"{where} lacks {', '.join(missing)}: not a model written by "
                                             "`asr-cli train` or `asr-cli export`")
        if not isinstance(meta["cmvn"], dict) or meta["cmvn"].get("mean") is None:
            raise checkpoint.CheckpointError(f"{where} holds no CMVN statistics")
        try:
            checkpoint.check_card(meta)
        except checkpoint.CheckpointError as e:
            raise checkpoint.CheckpointError(f"{where}: {e}") from None
        return cls(**{k: meta.get(k) for k in (*CARD_KEYS, "normalizer")})

    @property
    def kind(self) -> str:
        return self.model["kind"]

    @property
    def preset(self) -> str:
        return self.model.get("preset", "?")

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.preset}"

    def feature_config(self):
        from pipeline.audio import FeatureConfig

        return FeatureConfig.from_dict(self.features)

    def cmvn_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """mean [F], std [F] (float32), applied to features as (feats - mean) / std."""
        return np.asarray(self.cmvn["mean"], np.float32), np.asarray(self.cmvn["std"], np.float32)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunPosition:
    """Where the run stood when the checkpoint was written (`--resume` continues from it)."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    skipped: int = 0  # batches not applied (non-finite loss or gradient)


_KNOWN = set(CARD_KEYS) | {"normalizer", "format", checkpoint.WEIGHTS, "position", "best_cer", "train_seconds",
                           "train_config", "metrics", "precision", "init_from", "averaged_from",
                           *checkpoint.TRAIN_STATE}


@dataclass
class Checkpoint:
    """A checkpoint file's contents: the card, the weights (the model's state dict), where and
    how the run stood, and (read with `train_state`) what only `--resume` needs."""

    card: ModelCard
    weights: dict
    position: RunPosition = field(default_factory=RunPosition)
    best_cer: float | None = None
    train_seconds: float = 0.0
    train_config: dict | None = None  # the TrainConfig the run was started with, as a dict
    metrics: dict = field(default_factory=dict)  # the dev figures it was written with (loss, cer, wer, ...)
    precision: str | None = None  # the precision trained in (fp32, bf16, ...)
    init_from: dict | None = None  # --init-from's report: the parent and the rows kept
    averaged_from: list | None = None  # the files an averaged checkpoint is the mean of
    train_state: dict | None = None  # optimizer, scheduler, scaler, rng (checkpoint.TRAIN_STATE)
    extra: dict = field(default_factory=dict)  # keys of a later version, kept as they are

    @property
    def step(self) -> int:
        return self.position.step

    @classmethod
    def from_payload(cls, payload: dict, where: str | Path = "checkpoint") -> "Checkpoint":
        p = payload.get("position") or {}
        known = {f.name for f in dataclasses.fields(RunPosition)}
        train = {k: payload[k] for k in checkpoint.TRAIN_STATE if k in payload}
        return cls(card=ModelCard.of(payload, where), weights=payload.get(checkpoint.WEIGHTS) or {},
                   position=RunPosition(**{k: int(v) for k, v in p.items() if k in known}),
                   best_cer=payload.get("best_cer"), train_seconds=float(payload.get("train_seconds") or 0.0),
                   train_config=payload.get("train_config"), metrics=payload.get("metrics") or {},
                   precision=payload.get("precision"), init_from=payload.get("init_from"),
                   averaged_from=payload.get("averaged_from"), train_state=train or None,
                   extra={k: v for k, v in payload.items() if k not in _KNOWN})

    def to_payload(self) -> dict:
        """The dict `asr.store.checkpoint.save` writes (the file format's keys)."""
        out = {**self.extra, **self.card.to_dict(), checkpoint.WEIGHTS: self.weights,
               "position": dataclasses.asdict(self.position), "best_cer": self.best_cer,
               "train_seconds": self.train_seconds, "train_config": self.train_config, "metrics": self.metrics,
               "precision": self.precision}
        for key in ("init_from", "averaged_from"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out.update(self.train_state or {})
        return out

    @classmethod
    def read(cls, path: str | Path, train_state: bool = False, map_location="cpu") -> "Checkpoint":
        """The checkpoint at `path`; CheckpointError (one line naming it) for anything else."""
        payload = checkpoint.load(Path(path), map_location=map_location, train_state=train_state)
        return cls.from_payload(payload, path)

    def save(self, path: str | Path) -> None:
        """Written atomically (asr.store.checkpoint.save)."""
        checkpoint.save(Path(path), self.to_payload())

    def without_train_state(self) -> "Checkpoint":
        return dataclasses.replace(self, train_state=None)
