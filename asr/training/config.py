"""`TrainConfig` and `SpecAugmentConfig`: every training default, in one place.

asr/training/loop.py trains by a TrainConfig; `asr-cli train` (commands/training.py) takes each
field made with `option(default, help)` as an option of the same name, its default and
`--help` read from here (tests/test_train_config.py proves the CLI's defaults are these).
A leaf module (no torch), so `asr-cli --help` shows the real defaults without loading a
model library, as asr/decoding/options.py does for decoding.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from asr.data.config import SpecAugmentConfig  # noqa: F401  (the masks' defaults)
from asr.nets.presets import preset_help
from pipeline.options import (AT_LEAST_0, AT_LEAST_1,  # noqa: F401  (re-exported: the commands read the options here)
                              FRACTION, FRACTION_BELOW_1, HELP, POSITIVE, Bound, option, options)

# Defaults of the options that are None until `resolved` fills them in: a new run takes these; a
# resumed run its own values; a fine-tuning run (--init-from) its parent's network and the
# fine-tuning schedule, so whether an option was given is never guessed from its value.
MODEL, PRESET = "ctc", "small"
LR, WARMUP = 1e-3, 500
# Fine-tuning (--init-from): the network has left its random start, so a lower peak and a shorter
# warm-up. Measured (docs/RESULTS.md part 9, bench/bench_finetune.py): the demo parent on a
# 0.4 h child, 500 steps, test CER 12.0 % at these scales against 15.3 % at the recipe's own.
FINETUNE_LR_SCALE, FINETUNE_WARMUP_SCALE = 0.3, 0.25


@dataclass
class TrainConfig:
    shards: str
    out: str = "runs/fr-ctc"
    model: str | None = option(None, f"ctc (Graves), las (Listen, Attend and Spell) or rnnt (transducer) (default "
                                     f"{MODEL}; with --init-from the parent's).")
    preset: str | None = option(None, f"Model size: {preset_help()}; see asr/nets/presets.py (default {PRESET}; "
                                      "with --init-from the parent's).")
    model_options: dict = field(default_factory=dict)  # overrides of the preset (sizes, rnn, ...)
    tokens: str = option("char", "Output units: char, or unigram:N (SentencePiece, N pieces, trained on the train "
                                 "text).")
    shard_url: str | None = option(None, "Read tars from this URL prefix or '{path}' template (http://..., "
                                         "pipe:...).")
    train_split: str = "train"
    dev_split: str = "dev"
    max_steps: int = option(20000, "Training steps (the learning-rate schedule ends there).", bounds=AT_LEAST_1)
    epochs: int = option(0, "Stop after this many epochs (0: only --max-steps).", bounds=AT_LEAST_0)
    steps_this_run: int = option(0, "Stop with a checkpoint after N steps of this invocation.", bounds=AT_LEAST_0)
    time_budget: float = option(0.0, "Stop with a checkpoint after this many seconds (0: none).", bounds=AT_LEAST_0)
    # With a time budget: the cosine decay follows steps or training time, whichever is further
    # along, and the budget counts the run's training time over resumes. A run cut by the clock
    # (a slow or busy machine) still ends annealed; a fast one ends at max_steps, as without.
    # Not bit-reproducible (the learning rate depends on the clock).
    anneal_by_time: bool = option(False, "With --time-budget: decay the learning rate by steps or time, whichever "
                                         "is further along, so a run the clock cuts short still ends annealed.")
    batch_frames: str = option("auto", "Padded feature frames per batch (10 ms each), per process, or auto: on "
                               "CUDA the largest batch of the longest utterances that fits 80 % of the "
                               "free memory, its lr scaled by the square root of the batch ratio "
                               "(asr/runtime/batchsize.py); on a CPU 20000.")
    pad_to: int = option(0, "Round each batch's frame count up to a multiple of N, so that the GPU sees a bounded set "
                            "of shapes (0: auto, 32 on CUDA, 1 on a CPU).", bounds=AT_LEAST_0)
    max_batch: int = option(256, "Utterances per batch at most.", bounds=AT_LEAST_1)
    max_frames: int = option(2000, "Skip training utterances longer than this many frames.", bounds=AT_LEAST_1)
    lr: float | None = option(None, f"Peak learning rate (AdamW) (default {LR:g}; with --init-from "
                                    f"{LR * FINETUNE_LR_SCALE:g}).", bounds=POSITIVE)
    warmup: int | None = option(None, f"Warm-up steps before the cosine decay (default {WARMUP}; with "
                                      f"--init-from {round(WARMUP * FINETUNE_WARMUP_SCALE)}).", bounds=AT_LEAST_0)
    min_lr_ratio: float = 0.05
    weight_decay: float = option(0.01, "AdamW weight decay.", bounds=AT_LEAST_0)
    clip: float = option(5.0, "Gradient norm clipping.", bounds=POSITIVE)
    device: str = option("auto", "auto, cpu, cuda, cuda:1 ...")
    precision: str = option("auto", "auto or fast (fp32 or bf16, whichever a few timed training steps find faster on "
                                    "this device; fp32 uses TF32 on CUDA: asr/runtime/precision.py), bf16, fp16, "
                                    "fp32.")
    compile: bool = option(False, "torch.compile the model (each new batch shape compiles again: with --pad-to's "
                                  "shapes on a GPU; on 2 CPU cores a shape took 1.5-3.5 min, so it does not pay).")
    eval_every: int = option(500, "Dev loss / CER and checkpoints every N steps.", bounds=AT_LEAST_0)
    eval_utts: int = option(200, "Dev utterances used for the periodic CER.", bounds=AT_LEAST_1)
    log_every: int = option(20, "TensorBoard / metrics.jsonl every N steps.", bounds=AT_LEAST_1)
    seed: int = option(0, "Seed of everything (initial weights, data order, masks).", bounds=AT_LEAST_0)
    workers: int = option(2, "DataLoader worker processes.", bounds=AT_LEAST_0)
    threads: int = option(0, "CPU threads per process (0: cores / processes).", bounds=AT_LEAST_0)
    procs: int = option(1, "Data-parallel processes on this machine (gloo; faster than threads for small models on a "
                           "CPU); --batch-frames is per process.", bounds=AT_LEAST_1)
    resume: bool = option(False, "Continue from <out>/last.pt.")
    init_from: str | None = option(None, "Start from this checkpoint's network (a .pt of cv-asr; units that differ get new "
                                "output rows, shared ones keep theirs); new optimizer, schedule and steps.")
    freeze_encoder_steps: int = option(0, "With --init-from: train only the layers outside the encoder (output "
                                          "layer, speller) for the first N steps, then everything.", bounds=AT_LEAST_0)
    force: bool = option(False, "Start over even if <out> holds a run.")
    progress: bool = option(True, "Show a progress bar.")
    specaug: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    # a short run learns faster without the masks at first; the frequency warp, if any, is on from the first step
    specaug_start: int = option(0, "SpecAugment's masks from this step on (0: from the first step).", bounds=AT_LEAST_0)
    ctc_weight: float = option(0.3, "las, rnnt: weight w of the joint CTC loss, w * ctc + (1 - w) * attention "
                                    "(or transducer) (0: no CTC head).", bounds=FRACTION)
    label_smoothing: float = option(0.1, "las: label smoothing of the attention loss.", bounds=FRACTION_BELOW_1)
    sampling_rate: float = option(0.0, "las: scheduled sampling probability, ramped from 0 to this over training.",
                                  bounds=FRACTION)
    average: int = option(0, "Keep the weights of the last N evaluations (<out>/avg) and write their mean, "
                             "<out>/averaged.pt, at the end (0: off).",
                     bounds=Bound(0, 100, why="checkpoints kept on disk, each the model's size"))


def finetune_schedule(lr: float, warmup: int) -> tuple[float, int]:
    """The fine-tuning peak lr and warm-up of a recipe's (`lr`, `warmup`)."""
    return lr * FINETUNE_LR_SCALE, round(warmup * FINETUNE_WARMUP_SCALE)


def resolved(cfg: TrainConfig, before: dict | None = None, parent: dict | None = None) -> TrainConfig:
    """`cfg` with its None options filled in, the one place that does it: from `before` (the
    train_config a resumed run was started with: its schedule goes on), else from `parent` (the
    model config of --init-from's checkpoint: its network, the fine-tuning schedule), else the
    new-run defaults above."""
    model, preset, lr, warmup = MODEL, PRESET, LR, WARMUP
    if parent is not None:
        model, preset = parent["kind"], parent["preset"]
        lr, warmup = finetune_schedule(lr, warmup)
    init_from, freeze = cfg.init_from, cfg.freeze_encoder_steps
    batch_frames, pad_to = cfg.batch_frames, cfg.pad_to
    if before:  # a fine-tuning run resumed (with --resume alone) is still one, frozen as it started
        model, preset = before.get("model", model), before.get("preset", preset)
        lr, warmup = before.get("lr", lr), before.get("warmup", warmup)
        init_from, freeze = init_from or before.get("init_from", ""), freeze or before.get("freeze_encoder_steps", 0)
        if str(batch_frames) == "auto":  # the batch (and its lr) the run chose when it started
            batch_frames = before.get("batch_frames", batch_frames)
        pad_to = pad_to or before.get("pad_to", 0)  # the same batches, so the data stream is regenerated
    pick = lambda given, default: default if given is None else given  # noqa: E731
    return dataclasses.replace(cfg, model=pick(cfg.model, model), preset=pick(cfg.preset, preset),
                               lr=pick(cfg.lr, lr), warmup=pick(cfg.warmup, warmup), init_from=init_from,
                               freeze_encoder_steps=freeze, batch_frames=batch_frames, pad_to=pad_to)


def lr_factor(step: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up to 1, then cosine decay to `min_lr_ratio` at `max_steps` (or, with
    `anneal_by_time`, when `time_fraction` of the time budget is spent, if that comes first)."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = min(1.0, max((step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup), time_fraction))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
