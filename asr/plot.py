"""Figures: a minibatch of log-Mel spectrograms with their transcripts (the lab's plot_spectro).

    asr-cli plot --shards shards/fr --split dev --out spectro_dev.png [--augment]

Features are shown as the model sees them (after global CMVN), time in seconds on the x
axis, Mel bins on the y axis, one colorbar per panel; `--augment` applies SpecAugment
exactly as training does, so masks can be checked by eye.
"""

from __future__ import annotations

from pathlib import Path

import torch

from asr.data import LoaderConfig, ShardSet, ShardStream
from asr.specaug import SpecAugment, SpecAugmentConfig
from asr.tokenizer import CharTokenizer
from pipeline.audio import FeatureConfig


def first_batch(shards: ShardSet, split: str, n: int):
    """The first `n` utterances of a split, as one Batch (shard order, no shuffling)."""
    lcfg = LoaderConfig(batch_frames=10**9, max_batch=n, bucket_pool=n, workers=0)
    return next(iter(ShardStream(shards.urls(split), CharTokenizer(shards.vocab), shards.cmvn, lcfg, train=False)))


def plot_spectrograms(shards_dir: Path, split: str, out: Path, n: int = 4, augment: bool = False,
                      specaug: SpecAugmentConfig | None = None, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shards = ShardSet.open(shards_dir)
    batch = first_batch(shards, split, n)
    feats = batch.feats
    if augment:
        torch.manual_seed(seed)
        feats = SpecAugment(specaug or SpecAugmentConfig()).train()(feats, batch.feat_lens)
    fps = FeatureConfig.from_dict(shards.dataset["features"]).frames_per_second()
    fig, axes = plt.subplots(len(batch), 1, figsize=(11, 2.6 * len(batch)), squeeze=False)
    for ax, x, n_frames, text in zip(axes[:, 0], feats, batch.feat_lens.tolist(), batch.texts):
        img = ax.imshow(x[:n_frames].T.numpy(), origin="lower", aspect="auto", cmap="magma",
                        extent=(0, n_frames / fps, 0, x.shape[1]))
        ax.set_title(text if len(text) < 110 else text[:107] + "...", fontsize=9)
        ax.set_ylabel("Mel bin")
        fig.colorbar(img, ax=ax, pad=0.01, label="normalised log-Mel")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{shards.root.name} / {split}" + (" with SpecAugment" if augment else ""))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
