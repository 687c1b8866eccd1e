"""Streaming shard loader: webdataset tars -> CMVN-normalised, length-bucketed, padded batches.

    shards (`pipeline.shardformat.read_samples`: local paths read whole, with their tar
            headers parsed directly; URLs or `pipe:` commands through webdataset's openers)
      -> per epoch, a seeded permutation of the shard list, the same on every rank
      -> split over (rank, dataloader worker) "slots": whole shards when there are at
         least as many shards as slots, otherwise every slot reads every shard and keeps
         one sample in `slots` (no duplicate, no idle slot, whatever the shard count)
      -> decode features (any codec) / .json, tokenise, drop utterances over the frame limit
      -> sample shuffle buffer (training)
      -> bucketing: a pool of utterances is sorted by length and cut into batches of at
         most `batch_frames` padded frames (B x T_max), batches shuffled
      -> Batch: feats [B, T, F] float32 (global CMVN applied), lengths, padded targets;
         T rounded up to a multiple of `pad_to` (see `LoaderConfig.pad_to`)

Training streams never run dry: when a slot has read its part of the epoch's shards it
goes on into the next permutation, and the training loop takes a fixed number of batches
per epoch (`steps_per_epoch`: the steps that carry the split's frames once, were batches
full). Every rank therefore takes the same number of batches, so DDP cannot hang on a
rank that ran out. Evaluation streams are one ordered pass, split over ranks exactly once.

The stream of an epoch is a pure function of (seed, epoch, rank, world size, workers), so
a resumed run regenerates it and skips the batches it already trained on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.shardformat import META, FeatureDecodeError, ShardReadError, ShardSet, decode_features, read_samples


# --------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------
@dataclass
class Batch:
    feats: torch.Tensor  # [B, T, F] float32, normalised, zero-padded
    feat_lens: torch.Tensor  # [B] int64
    targets: torch.Tensor  # [B, L] int64, padded with 0
    target_lens: torch.Tensor  # [B] int64
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.feats.shape[0]

    @property
    def real_frames(self) -> int:
        return int(self.feat_lens.sum())

    @property
    def padded_frames(self) -> int:
        return self.feats.shape[0] * self.feats.shape[1]

    @property
    def padded_fraction(self) -> float:
        return 1.0 - self.real_frames / max(self.padded_frames, 1)

    def to(self, device, non_blocking: bool = True) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.feats), move(self.feat_lens), move(self.targets), move(self.target_lens),
                     self.ids, self.texts)

    def pin_memory(self) -> "Batch":  # called by the DataLoader's pinning thread
        return Batch(self.feats.pin_memory(), self.feat_lens.pin_memory(), self.targets.pin_memory(),
                     self.target_lens.pin_memory(), self.ids, self.texts)


@dataclass
class Utterance:
    id: str
    feats: np.ndarray  # [T, F] as decoded: float16 (float16 shards) or float32 (qdelta)
    tokens: list[int]
    text: str

    def __len__(self) -> int:
        return self.feats.shape[0]


def padded_length(frames: int, pad_to: int) -> int:
    """`frames` rounded up to a multiple of `pad_to`: a batch's T."""
    return -(-frames // pad_to) * pad_to


def collate(utts: list[Utterance], mean: np.ndarray, std: np.ndarray, pad_to: int = 1) -> Batch:
    """Utterances -> Batch, CMVN applied, padded with zeros (the mean after normalisation) to
    the longest one's length rounded up to a multiple of `pad_to`."""
    B, T = len(utts), padded_length(max(len(u) for u in utts), pad_to)
    L = max((len(u.tokens) for u in utts), default=0)
    feats = np.zeros((B, T, mean.shape[0]), np.float32)
    targets = np.zeros((B, max(L, 1)), np.int64)
    for i, u in enumerate(utts):
        row = feats[i, : len(u)]  # in place: no float32 temporaries per utterance
        np.subtract(u.feats, mean, out=row, dtype=np.float32)
        np.divide(row, std, out=row)
        targets[i, : len(u.tokens)] = u.tokens
    return Batch(
        torch.from_numpy(feats),
        torch.tensor([len(u) for u in utts], dtype=torch.int64),
        torch.from_numpy(targets),
        torch.tensor([len(u.tokens) for u in utts], dtype=torch.int64),
        [u.id for u in utts],
        [u.text for u in utts],
    )


def bucket(utts: list[Utterance], batch_frames: int, max_batch: int, pad_to: int = 1) -> list[list[Utterance]]:
    """Sort by length and cut into batches of at most `batch_frames` padded frames (each
    batch's longest length rounded up to a multiple of `pad_to`, as `collate` pads it)."""
    batches, current, longest = [], [], 0
    for u in sorted(utts, key=len):
        padded = padded_length(len(u), pad_to)
        longest_if_added = max(longest, padded)
        if current and (longest_if_added * (len(current) + 1) > batch_frames or len(current) >= max_batch):
            batches.append(current)
            current, longest_if_added = [], padded
        current.append(u)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


# --------------------------------------------------------------------------------------
# the stream
# --------------------------------------------------------------------------------------
@dataclass
class LoaderConfig:
    batch_frames: int = 20000  # padded input frames per batch (10 ms frames: 200 s of audio)
    max_batch: int = 256  # utterances per batch at most
    max_frames: int = 2000  # longer utterances (20 s) are skipped
    # A batch's T rounded up to a multiple of this. On a GPU a new shape costs: cuDNN picks
    # its convolution and RNN plans per shape and the caching allocator splits new blocks, so a
    # stream of batches whose T takes hundreds of values never reaches the speed of one batch
    # kept on the device (issue 34: loader-fed 0.19-0.47x of resident). Rounded to 32 frames
    # (8 encoder frames after 4x subsampling), 20 s utterances give at most 63 values of T,
    # and a full batch's B follows from T. On a CPU nothing is cached per shape, so the CPU
    # keeps 1 (no extra padding to compute): TrainConfig.pad_to picks it.
    pad_to: int = 1
    shuffle_buffer: int = 1000  # utterances in the sample shuffle buffer (training)
    bucket_pool: int = 1000  # utterances sorted together to cut batches
    workers: int = 2
    prefetch: int = 4  # batches prefetched per worker
    seed: int = 0


class ShardStream(IterableDataset):
    """Batches of one split for one rank (see the module docstring)."""

    def __init__(self, urls: list[str], tokenizer, cmvn: tuple[np.ndarray, np.ndarray], cfg: LoaderConfig,
                 train: bool, rank: int = 0, world: int = 1, epoch: int = 0):
        super().__init__()
        self.urls, self.tokenizer, self.cfg = list(urls), tokenizer, cfg
        self.mean, self.std = cmvn
        self.train, self.rank, self.world, self.epoch = train, rank, world, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def slot(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + worker, self.world * workers

    def __iter__(self) -> Iterator[Batch]:
        slot, slots = self.slot()
        rng = random.Random(f"{self.cfg.seed}-{self.epoch}-{slot}")
        utts = self._utterances(slot, slots)
        if self.train:
            utts = _shuffled(utts, self.cfg.shuffle_buffer, rng)
        pool: list[Utterance] = []
        for u in utts:
            pool.append(u)
            if len(pool) >= self.cfg.bucket_pool:
                yield from self._batches(pool, rng)
                pool = []
        if pool:
            yield from self._batches(pool, rng)

    def _batches(self, pool: list[Utterance], rng: random.Random) -> Iterator[Batch]:
        batches = bucket(pool, self.cfg.batch_frames, self.cfg.max_batch, self.cfg.pad_to)
        if self.train:
            rng.shuffle(batches)
        for b in batches:
            yield collate(b, self.mean, self.std, self.cfg.pad_to)

    def _rounds(self) -> Iterator[list[str]]:
        if not self.train:
            yield self.urls
            return
        r = self.epoch
        while True:
            order = list(self.urls)
            random.Random(f"{self.cfg.seed}-shards-{r}").shuffle(order)
            yield order
            r += 1

    def _utterances(self, slot: int, slots: int) -> Iterator[Utterance]:
        for order in self._rounds():
            by_shard = len(order) >= slots
            mine = order[slot::slots] if by_shard else order
            produced = 0
            for i, sample in enumerate(read_samples(mine)):
                if not by_shard and i % slots != slot:
                    continue
                u = self._decode(sample)
                if u is not None:
                    produced += 1
                    yield u
            if self.train and produced == 0 and by_shard:
                raise RuntimeError(f"shards {mine} gave no usable utterance (all over {self.cfg.max_frames} "
                                   f"frames or without text?)")

    def _decode(self, sample: dict) -> Utterance | None:
        try:
            meta = json.loads(bytes(sample[META]))
            text = meta["text"]
            frames = meta.get("frames")  # the index's count, checked against the member's own claim
            feats = decode_features(sample, len(self.mean), frames if isinstance(frames, int) else None)
        except (FeatureDecodeError, KeyError, TypeError, ValueError) as e:  # a member missing, corrupt features or JSON
            raise ShardReadError.of(sample.get("__url__", "?"), f"sample {sample.get('__key__')} is unreadable "
                                    f"({type(e).__name__}: {e})") from None
        if feats.shape[0] > self.cfg.max_frames:
            return None
        tokens = self.tokenizer.encode(text)
        if self.train and not tokens:
            return None
        return Utterance(sample["__key__"], feats, tokens, text)


def _shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Reservoir-style shuffle buffer of `size` items."""
    buf = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(size)
        buf[j], item = item, buf[j]
        yield item
    rng.shuffle(buf)
    yield from buf


def steps_per_epoch(shards: ShardSet, split: str, cfg: LoaderConfig, world: int = 1) -> int:
    """Training steps per epoch: the split's frames carried once by full batches, per rank.

    Bounded by what a batch can hold: at least one utterance (however long, so never more
    steps than utterances) and at most `max_batch` (so never fewer than that many take).
    """
    utterances = shards.split(split).get("utterances", 0)
    by_frames = math.ceil(shards.frames(split) / (cfg.batch_frames * world))
    by_count = math.ceil(utterances / (cfg.max_batch * world))
    one_each = math.ceil(utterances / world)
    return max(1, min(max(by_frames, by_count), one_each))


POOL_BATCHES = 8  # batches' worth of utterances a bucket pool holds at least (make_loader)


def make_loader(shards: ShardSet, split: str, tokenizer, cfg: LoaderConfig, train: bool,
                rank: int = 0, world: int = 1, epoch: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader of Batch over `split`; set `loader.dataset.set_epoch(e)` before each epoch."""
    workers = cfg.workers
    utterances = shards.split(split).get("utterances", 0)
    # A pool sorted into batches must hold several batches, or each batch spans the whole length
    # distribution and is mostly padding: 1,000 utterances are 18 batches of the default 20,000
    # frames on the demo (370 frames an utterance), but not one of an auto batch of 400,000.
    mean_frames = shards.frames(split) / utterances if utterances else 0
    if mean_frames:
        cfg = dataclasses.replace(cfg, bucket_pool=max(cfg.bucket_pool, math.ceil(
            POOL_BATCHES * min(cfg.max_batch, cfg.batch_frames / mean_frames))))
    # A slot (rank x worker) sees about utterances / slots of the split per pass: buffers no
    # larger than that, or a small split is read many times over before the first batch.
    per_slot = math.ceil(utterances / (world * max(1, workers))) or 1
    if train and per_slot < max(cfg.shuffle_buffer, cfg.bucket_pool):
        cfg = dataclasses.replace(cfg, shuffle_buffer=min(cfg.shuffle_buffer, per_slot),
                                  bucket_pool=min(cfg.bucket_pool, per_slot))
    stream = ShardStream(shards.urls(split), tokenizer, shards.cmvn, cfg, train, rank, world, epoch)
    return DataLoader(
        stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
        prefetch_factor=cfg.prefetch if workers > 0 else None,
        persistent_workers=False,
        # its own generator: starting an epoch must not draw from the global torch RNG, or a
        # resumed run's dropout and SpecAugment masks would drift from the uninterrupted run's
        generator=torch.Generator().manual_seed(cfg.seed + 7919 * rank),
    )


def check_epoch_trained(skipped: int, steps: int, epoch: int) -> None:
    """RuntimeError when every one of an epoch's `steps` batches was skipped (a non-finite loss
    or gradient each time): nothing is being learnt, and going on would end with exit 0 and a
    model as it started."""
    if steps > 0 and skipped >= steps:
        raise RuntimeError(f"epoch {epoch}: all {steps} batches were skipped (non-finite loss or gradient): the "
                           "features or their CMVN are not finite (check the shards with `asr-cli shards verify`), "
                           "or the learning rate is too high")
