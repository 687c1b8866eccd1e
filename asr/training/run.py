"""A training run's state and its set-up: what `asr.training.loop` trains with.

    run = setup(cfg, d, device)        data, tokenizer, model (restored on --resume, or from
                                       --init-from's parent), optimizer, schedule, loader, dev subset
    run.checkpoint(metrics)            the typed checkpoint of where the run stands (asr/store/payload.py)

`Position` is where a run stands (saved in every checkpoint, restored by `--resume`); `Run`
holds everything one invocation of the loop uses. Nothing here takes a step.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from asr.data.loader import Batch, LoaderConfig, ShardStream, make_loader, steps_per_epoch
from asr.data.specaug import SpecAugment
from asr.nets import ctc_frames
from asr.nets.models import build_model, count_parameters, model_config
from asr.runtime import batchsize, precision
from asr.runtime.distributed import Dist, autocast_dtype, cpu_threads
from asr.store import checkpoint
from asr.store.payload import Checkpoint, ModelCard, RunPosition
from asr.tokens.subword import UnigramTokenizer
from asr.tokens.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_state
from asr.training import autobatch, averaging, finetune
from asr.training.config import TrainConfig, lr_factor, resolved  # every training default, the schedule
from asr.training.log import summary_writer, trim_log
from pipeline.audio import FeatureConfig
from pipeline.shardformat import ShardSet

if TYPE_CHECKING:
    from torch.utils.data import DataLoader
    from torch.utils.tensorboard import SummaryWriter


def make_tokenizer(cfg: TrainConfig, shards: ShardSet, out: Path) -> Tokenizer:
    if cfg.tokens == "char":
        return CharTokenizer(shards.vocab)
    if cfg.tokens.startswith("unigram:"):
        size = int(cfg.tokens.split(":", 1)[1])
        texts = [r["text"] for r in shards.read_index(columns=["text"], split=cfg.train_split)]
        return UnigramTokenizer.train(texts, size, out / "unigram")
    raise ValueError(f"--tokens must be 'char' or 'unigram:N', not {cfg.tokens!r}")


@dataclass
class Position:
    """Where a run stands; saved in every checkpoint and restored by `--resume`."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    skipped: int = 0  # batches not applied (non-finite loss or gradient)
    best_cer: float = float("inf")
    trained_before: float = 0.0  # training seconds of the invocations before this one
    time_fraction: float = 0.0  # of the time budget spent (TrainConfig.anneal_by_time)

    @classmethod
    def saved(cls, state: Checkpoint) -> "Position":
        """The position a `last.pt` was written at (`--resume` continues from it)."""
        p = state.position
        return cls(step=p.step, epoch=p.epoch, step_in_epoch=p.step_in_epoch, skipped=p.skipped,
                   best_cer=float("inf") if state.best_cer is None else state.best_cer,
                   trained_before=state.train_seconds)


@dataclass
class Run:
    """What one invocation of the loop holds; built by `setup`, used by the steps below."""

    cfg: TrainConfig
    d: Dist
    device: torch.device
    amp_dtype: torch.dtype | None
    precision: dict  # asr.runtime.precision.choose's report: the precision trained in and how it was chosen
    batch: dict  # asr.training.autobatch.choose_batch's report: the batch trained with and how it was chosen
    out: Path
    shards: ShardSet
    tokenizer: Tokenizer
    mconf: dict
    model: torch.nn.Module  # the bare model: checkpoints, evaluation
    train_model: torch.nn.Module  # what the steps call: compiled and / or DDP-wrapped
    specaug: SpecAugment
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    pos: Position
    loader: DataLoader | None = None
    per_epoch: int = 1
    frames_per_second: float = 100.0
    dev_batches: list[Batch] = field(default_factory=list)  # rank 0's dev subset, loaded once
    writer: SummaryWriter | None = None  # TensorBoard, rank 0 only
    started: float = field(default_factory=time.time)
    run_steps: int = 0
    run_utts: int = 0
    last_dev: dict = field(default_factory=dict)
    init_report: dict | None = None  # --init-from: the parent and the output rows kept (asr/training/finetune.py)
    frozen: bool = False  # --freeze-encoder-steps: the encoder takes no gradient yet

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    def checkpoint(self, metrics: dict) -> Checkpoint:
        """Everything `last.pt` / `best.pt` hold (every rank must call it: RNG states are gathered)."""
        rngs = [checkpoint.rng_state()]
        if self.d.active:
            rngs = [None] * self.d.world
            dist.all_gather_object(rngs, checkpoint.rng_state())
        p, data = self.pos, self.shards.dataset
        card = ModelCard(model=self.mconf, tokenizer=self.tokenizer.state_dict(), features=data["features"],
                         cmvn=self.shards.applied_cmvn, lang=data["lang"], normalizer=data["normalizer"])
        return Checkpoint(
            card=card, weights=self.model.state_dict(),
            position=RunPosition(p.step, p.epoch, p.step_in_epoch, p.skipped), best_cer=p.best_cer,
            train_seconds=p.trained_before + time.time() - self.started, train_config=dataclasses.asdict(self.cfg),
            metrics=metrics, precision=self.precision["chosen"], init_from=self.init_report,
            train_state={"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                         "scaler": self.scaler.state_dict(), "rng": rngs})


def restore(run: Run, state: Checkpoint) -> None:
    """Continue from a `last.pt` (read with its training state): weights, optimizer, schedule,
    RNG (the position is read before the run is built: `Position.saved`)."""
    run.model.load_state_dict(state.weights)
    train = state.train_state or {}
    run.optimizer.load_state_dict(train["optimizer"])
    run.scheduler.load_state_dict(train["scheduler"])
    run.scaler.load_state_dict(train["scaler"])
    rngs = train["rng"]
    if run.d.rank < len(rngs) and rngs[run.d.rank]:
        checkpoint.set_rng_state(rngs[run.d.rank])


# --------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------
# What a run writes in its folder besides last.pt: a folder holding any of them holds a run
# (a best.pt without last.pt was overwritten by a new run before), and a run started over with
# --force keeps none of them (not the old run's metrics lines nor its TensorBoard events).
RUN_FILES = ("best.pt", "summary.json", averaging.AVERAGED, "metrics.jsonl")


def previous_run(cfg: TrainConfig, d: Dist) -> Checkpoint | None:
    """The `last.pt` to resume from, None for a new run; refuses to overwrite a run silently."""
    out = Path(cfg.out)
    last = out / "last.pt"
    others = [name for name in RUN_FILES if (out / name).exists()]
    if not last.exists() and others and not cfg.force:
        raise FileExistsError(f"{cfg.out} already holds a run ({', '.join(others)}, but no last.pt to "
                              f"{'resume' if cfg.resume else 'continue'}): pass --force to start over (it replaces "
                              "them), or another --out")
    if last.exists() and not cfg.force:
        if cfg.init_from:
            raise FileExistsError(f"{cfg.out} already holds a run (last.pt): --init-from starts a new one, so pass "
                                  "--force to start over, or another --out")
        if not cfg.resume:
            raise FileExistsError(f"{cfg.out} already holds a run (last.pt): pass --resume to continue it, "
                                  f"--force to start over, or another --out")
        return Checkpoint.read(last, train_state=True)
    if cfg.resume and d.main:
        print(f"note: nothing to resume in {cfg.out}, starting a new run")
    return None


def clear_run_files(out: Path) -> None:
    """A new run in `out` (--force, or a folder without a run): the files and logs of any run
    before it go, so its metrics.jsonl, TensorBoard events and checkpoints are its own."""
    for name in ("last.pt", *RUN_FILES):
        (out / name).unlink(missing_ok=True)
    averaging.prune(out / averaging.KEEP_DIR, 0)
    tb = out / "tb"
    if tb.is_dir():
        for event in tb.glob("events.out.tfevents.*"):
            event.unlink()


def new_tokenizer_and_config(cfg: TrainConfig, d: Dist, shards: ShardSet,
                             parent: Checkpoint | None = None) -> tuple[Tokenizer, dict]:
    """A new run's tokenizer (a unigram model is trained once, on rank 0) and model config (with
    --init-from, `parent`'s network for these units)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if d.active:
        dist.barrier()
    tokenizer = make_tokenizer(cfg, shards, out) if d.main else None
    if d.active:
        obj = [tokenizer.state_dict() if d.main else None]
        dist.broadcast_object_list(obj, src=0)
        tokenizer = tokenizer_from_state(obj[0])
    if parent is not None:
        return tokenizer, finetune.child_model_config(parent.card.model, len(tokenizer), cfg.ctc_weight)
    mconf = model_config(cfg.model, cfg.preset, len(tokenizer), shards.dataset["features"]["n_mels"],
                         dict(cfg.model_options))
    if mconf["kind"] in ("las", "rnnt"):  # the CTC head --ctc-weight gives it (configure_training), recorded
        mconf["options"]["ctc_weight"] = cfg.ctc_weight
    if mconf["kind"] == "ctc" and mconf["options"].get("upsample") == "auto":  # from the train split's speed
        rows = shards.read_index(columns=["text", "frames"], split=cfg.train_split)
        mconf, report = ctc_frames.resolve(mconf, [r["text"] for r in rows], [r["frames"] for r in rows],
                                           tokenizer, build_model(mconf).encoder)
        if d.main:
            print(ctc_frames.describe(report))
    return tokenizer, mconf


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, no weight decay on biases and norm / 1-d parameters. Fused (one kernel for every
    parameter, on CUDA and on a CPU): it can skip a step the device found not finite without
    the host reading the verdict (asr/training/loop.py's train_step)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=True)


def dev_subset(shards: ShardSet, split: str, tokenizer: Tokenizer, cfg: TrainConfig) -> list[Batch]:
    """The first `eval_utts` utterances of the dev split, batched once and kept in memory."""
    lcfg = LoaderConfig(batch_frames=cfg.batch_frames, max_batch=cfg.max_batch, max_frames=cfg.max_frames,
                        bucket_pool=cfg.eval_utts, workers=0)
    batches, n = [], 0
    for batch in ShardStream(shards.urls(split), tokenizer, shards.cmvn, lcfg, train=False):
        batches.append(batch)
        n += len(batch)
        if n >= cfg.eval_utts:
            break
    return batches


def wrap_model(run: Run) -> None:
    """`run.train_model`: the model compiled and / or DDP-wrapped. DDP is wrapped again when the
    encoder is unfrozen: it registers the parameters that take a gradient when it is built."""
    run.train_model = torch.compile(run.model) if run.cfg.compile else run.model
    if run.d.active:
        run.train_model = torch.nn.parallel.DistributedDataParallel(
            run.train_model, device_ids=[run.device.index] if run.device.type == "cuda" else None)


def unfreeze_encoder(run: Run, say) -> None:
    """--freeze-encoder-steps reached: every layer trains from this step on."""
    finetune.set_encoder_trainable(run.model, True)
    run.frozen = False
    if run.d.active:
        wrap_model(run)
    if run.d.main:
        say(f"step {run.pos.step}: encoder unfrozen, every layer trains now")


def setup(cfg: TrainConfig, d: Dist, device: torch.device) -> Run:
    """Data, model, optimizer (restored on --resume), loader and dev subset, on `device`."""
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or cpu_threads(d))
    shards = ShardSet.open(cfg.shards, cfg.shard_url)
    parent = finetune.prepare(cfg, shards.dataset)  # --init-from's checkpoint, refused before anything is written
    state = previous_run(cfg, d)
    lr_given = cfg.lr is not None
    cfg = resolved(cfg, state and state.train_config, parent and parent.card.model)
    if state:  # the old network and units must meet the options and data they were trained with
        checkpoint.check_resume_compatible(state.to_payload(), dataclasses.asdict(cfg), shards.dataset, cfg.out)
    random.seed(cfg.seed + d.rank)
    np.random.seed(cfg.seed + d.rank)
    torch.manual_seed(cfg.seed)  # the same initial parameters on every rank
    if state:
        tokenizer, mconf = tokenizer_from_state(state.card.tokenizer), state.card.model
    else:
        tokenizer, mconf = new_tokenizer_and_config(cfg, d, shards, parent)
    model = build_model(mconf)
    if hasattr(model, "configure_training"):
        model.configure_training(cfg, tokenizer)
    init_report = state.init_from if state else None
    if parent is not None:  # the same weights on every rank: seeded fresh rows, copied trained ones
        init_report = finetune.init_weights(model, parent, tokenizer, cfg.init_from)
        init_report["freeze_encoder_steps"] = cfg.freeze_encoder_steps
    model.to(device)
    cfg, batch_report = autobatch.choose_batch(cfg, model, shards, tokenizer, device, d, lr_given or bool(state))
    if state and state.precision:  # a resumed run trains on in the precision it started in (TF32 as fp32 on CUDA)
        _, prec = precision.choose(state.precision, device, model, list, d, cfg.max_steps)  # one name: no probe
        prec.update(asked=cfg.precision, why="kept from last.pt")
    else:
        _, prec = precision.choose(cfg.precision, device, model, lambda: probe_batches(shards, cfg, tokenizer, device),
                                   d, cfg.max_steps)
    amp_dtype = autocast_dtype(prec["chosen"], device)
    optimizer = make_optimizer(model, cfg)
    pos = Position.saved(state) if state else Position()  # the run's one Position, never replaced
    # the loop moves pos.time_fraction (anneal_by_time); the schedule's step count is its own state
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, pos.time_fraction))
    run = Run(cfg=cfg, d=d, device=device, amp_dtype=amp_dtype, precision=prec, batch=batch_report,
              out=Path(cfg.out), shards=shards, tokenizer=tokenizer, mconf=mconf, model=model, train_model=model,
              specaug=SpecAugment(cfg.specaug).to(device), optimizer=optimizer, scheduler=scheduler,
              scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16), pos=pos,
              init_report=init_report)
    if state:
        restore(run, state)
        if d.main:  # metrics never ahead of the checkpoint (a failed checkpoint write left them so)
            trim_log(run.out / "metrics.jsonl", run.pos.step)
    if d.main and not state:  # a run started over keeps nothing of the one before
        clear_run_files(run.out)
    elif d.main and cfg.average:  # resumed: none past its step (those steps are trained again)
        averaging.prune(run.out / averaging.KEEP_DIR, cfg.average, after_step=run.pos.step)
    run.frozen = run.pos.step < cfg.freeze_encoder_steps
    finetune.set_encoder_trainable(model, not run.frozen)
    wrap_model(run)
    lcfg = LoaderConfig(batch_frames=cfg.batch_frames, max_batch=cfg.max_batch, max_frames=cfg.max_frames,
                        workers=cfg.workers, seed=cfg.seed, pad_to=cfg.pad_to)
    run.loader = make_loader(shards, cfg.train_split, tokenizer, lcfg, train=True, rank=d.rank, world=d.world,
                             pin_memory=device.type == "cuda")
    run.per_epoch = steps_per_epoch(shards, cfg.train_split, lcfg, d.world)
    run.frames_per_second = FeatureConfig.from_dict(shards.dataset["features"]).frames_per_second()
    if d.main:
        run.dev_batches = dev_subset(shards, cfg.dev_split, tokenizer, cfg)
        run.writer = summary_writer(run.out / "tb")
        print(f"{mconf['kind']}/{mconf['preset']}: {count_parameters(model) / 1e6:.2f} M parameters, "
              f"{len(tokenizer)} units, device {device}{f' x {d.world} ranks' if d.active else ''}, "
              f"{run.per_epoch} steps per epoch" + (f", resuming at step {run.pos.step}" if state else ""))
        print(batchsize.describe(batch_report))
        print(precision.describe(prec))
        frozen_until = cfg.freeze_encoder_steps if run.frozen else 0
        for line in finetune.log_lines(parent, init_report, shards.dataset, frozen_until):
            print(line)
    run.started = time.time()
    return run


def probe_batches(shards: ShardSet, cfg: TrainConfig, tokenizer, device: torch.device, n: int = 2) -> list:
    """The first `n` train batches in shard order (no shuffle: the loader's stream is untouched),
    on `device`: what `asr.runtime.precision` times."""
    lcfg = LoaderConfig(batch_frames=cfg.batch_frames, max_batch=cfg.max_batch, max_frames=cfg.max_frames,
                        bucket_pool=64, workers=0, pad_to=cfg.pad_to)
    batches = []
    for batch in ShardStream(shards.urls(cfg.train_split), tokenizer, shards.cmvn, lcfg, train=False):
        batches.append(batch.to(device))
        if len(batches) == n:
            break
    return batches
