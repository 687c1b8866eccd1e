"""Figures: log-Mel spectrograms with their transcripts (the lab's plot_spectro), and attention.

    asr-cli plot --shards shards/fr --split dev --out spectro_dev.png [--augment]
    asr-cli plot --attention --checkpoint runs/fr-las/best.pt --shards shards/fr --out att.png

Features are shown as the model sees them (after global CMVN), time in seconds on the x
axis, Mel bins on the y axis, one colorbar per panel; `--augment` applies SpecAugment
exactly as training does, so masks can be checked by eye. `--attention` draws an attention
model's greedy alignments under each spectrogram (`plot_attention`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from asr.data.loader import LoaderConfig, ShardStream
from asr.data.specaug import SpecAugment, SpecAugmentConfig
from asr.decoding.decoder import DecodeOptions
from asr.decoding.las import LASGreedyDecoder
from asr.inference.loading import open_model
from asr.tokens.tokenizer import CharTokenizer
from asr.tokens.units import SPACE
from pipeline.audio import FeatureConfig
from pipeline.shardformat import ShardSet

MAX_TICK_LABELS = 60  # attention figure: name the output units when there are at most this many


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


def plot_attention(checkpoint: Path, shards: Path, split: str, out: Path, n: int = 4) -> Path:
    """Greedy alignments of a LAS checkpoint on the first `n` utterances of `split`.

    Per utterance: the log-Mel spectrogram (as the model sees it), then the attention weights
    (one row per emitted unit, <eos> last) on the same time axis, with the hypothesis above.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = open_model(Path(checkpoint))
    model, tokenizer = loaded.model, loaded.tokenizer
    if getattr(model, "kind", None) != "las":
        raise ValueError(f"{checkpoint} holds a {getattr(model, 'kind', '?')} model: --attention needs an "
                         f"attention model (asr-cli train --model las)")
    data = ShardSet.open(shards)
    lcfg = LoaderConfig(batch_frames=10**9, max_batch=n, bucket_pool=n, workers=0)
    batch = next(iter(ShardStream(data.urls(split), CharTokenizer(data.vocab), (loaded.mean, loaded.std), lcfg,
                                  train=False)))
    hyps, alignments = LASGreedyDecoder(model, DecodeOptions()).with_attention(batch.feats, batch.feat_lens)
    fps = loaded.features.frames_per_second()
    step_s = model.time_reduction / fps

    rows = len(batch)
    fig, axes = plt.subplots(2 * rows, 1, figsize=(11, 4.2 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.3] * rows})
    for u in range(rows):
        frames = int(batch.feat_lens[u])
        ax_s, ax_a = axes[2 * u, 0], axes[2 * u + 1, 0]
        ax_s.imshow(batch.feats[u, :frames].T.numpy(), origin="lower", aspect="auto", cmap="magma",
                    extent=(0, frames / fps, 0, batch.feats.shape[2]))
        ax_s.set_ylabel("Mel bin")
        ax_s.set_title(f"ref: {batch.texts[u]}\nhyp: {tokenizer.decode(hyps[u])}", fontsize=8, loc="left")
        att = alignments[u].numpy()
        ax_a.imshow(att, origin="upper", aspect="auto", cmap="viridis", interpolation="nearest",
                    extent=(0, att.shape[1] * step_s, att.shape[0] - 0.5, -0.5))
        labels = [_unit_label(tokenizer, t) for t in hyps[u]] + (["</s>"] if att.shape[0] > len(hyps[u]) else [])
        if len(labels) <= MAX_TICK_LABELS:
            ax_a.set_yticks(range(len(labels)))
            ax_a.set_yticklabels(labels, fontsize=5)
        ax_a.set_ylabel("output unit")
        ax_a.set_xlim(0, frames / fps)
        ax_s.set_xlim(0, frames / fps)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"{Path(checkpoint).name}: attention on {data.root.name} / {split}")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _unit_label(tokenizer, unit_id: int) -> str:
    """A unit as a readable label ("␣" for the space)."""
    u = tokenizer.units[unit_id]
    return "\u2423" if u == SPACE else u
