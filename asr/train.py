"""One training loop for every model: `loss = model(batch)["loss"]`.

    asr-cli train --shards shards/fr --model ctc --preset small --out runs/fr-ctc
    torchrun --nproc-per-node 4 cli.py train --shards shards/fr ...      (DDP: NCCL / gloo)

Per step: a batch from the streaming loader, SpecAugment on the device, forward under
autocast (bf16 on CUDA), a batch whose loss is not finite is skipped (on every rank at
once), backward, gradient clipping (a non-finite gradient norm also skips the step),
AdamW, warm-up then cosine decay. Every `eval_every` steps: dev loss and greedy CER on a
fixed dev subset, `last.pt` and (when the dev CER improves) `best.pt`, each written
atomically. SIGTERM / Ctrl-C finish the step, write `last.pt` and exit cleanly;
`--resume` continues from it with the same step count and the same data stream.
Logs: TensorBoard events in <out>/tb, one JSON line per log step in <out>/metrics.jsonl
(on `--resume`, its lines past the checkpoint's step are dropped: they are trained again).
One process owns <out> at a time (pipeline/lock.py; rank 0 under torchrun, the parent with
`--procs`); a second run into it stops with the holder's pid.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import jiwer
import numpy as np
import torch
import torch.distributed as dist

from asr import averaging, checkpoint, ctc_frames, finetune, precision
from asr.data import Batch, LoaderConfig, ShardStream, check_epoch_trained, make_loader, steps_per_epoch
from asr.decoding import greedy_texts
from asr.distributed import (Dist, any_rank, autocast_dtype, cpu_threads, max_over_ranks, pick_device,
                             run_distributed, spawn_local)
from asr.models import build_model, count_parameters, model_config
from asr.specaug import SpecAugment
from asr.subword import UnigramTokenizer
from asr.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_state
from asr.train_config import TrainConfig, resolved  # every training default (asr-cli train reads them there)
from asr.trainlog import (ESTIMATE_AFTER, Meter, log_validation, rank_report, summary_writer, time_estimate,
                          trim_log)
from pipeline import atomic
from pipeline.audio import FeatureConfig
from pipeline.lock import lock_folder
from pipeline.shardformat import ShardSet

if TYPE_CHECKING:
    from torch.utils.data import DataLoader
    from torch.utils.tensorboard import SummaryWriter

FINISHED = ("max_steps", "epochs", "time_budget")  # why a run ends for good (not to be resumed)


class _StopFlag:
    """SIGTERM / SIGINT ask the loop to stop after the current step (a second Ctrl-C kills)."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------------------
# schedule, tokenizer, checkpoints
# --------------------------------------------------------------------------------------
def lr_factor(step: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up to 1, then cosine decay to `min_lr_ratio` at `max_steps` (or, with
    `anneal_by_time`, when `time_fraction` of the time budget is spent, if that comes first)."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = min(1.0, max((step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup), time_fraction))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


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
    def saved(cls, state: dict) -> "Position":
        """The position a `last.pt` payload was written at (`--resume` continues from it)."""
        p = state["position"]
        return cls(step=p["step"], epoch=p["epoch"], step_in_epoch=p["step_in_epoch"], skipped=p["skipped"],
                   best_cer=state.get("best_cer", float("inf")), trained_before=state.get("train_seconds", 0.0))


@dataclass
class Run:
    """What one invocation of the loop holds; built by `setup`, used by the steps below."""

    cfg: TrainConfig
    d: Dist
    device: torch.device
    amp_dtype: torch.dtype | None
    precision: dict  # asr.precision.choose's report: the precision trained in and how it was chosen
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
    init_report: dict | None = None  # --init-from: the parent and the output rows kept (asr/finetune.py)
    frozen: bool = False  # --freeze-encoder-steps: the encoder takes no gradient yet

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"


def checkpoint_payload(run: Run, metrics: dict) -> dict:
    """Everything `last.pt` / `best.pt` hold (every rank must call it: RNG states are gathered)."""
    rngs = [checkpoint.rng_state()]
    if run.d.active:
        rngs = [None] * run.d.world
        dist.all_gather_object(rngs, checkpoint.rng_state())
    p, data = run.pos, run.shards.dataset
    return {
        "model": run.mconf, "state_dict": run.model.state_dict(), "tokenizer": run.tokenizer.state_dict(),
        "features": data["features"], "normalizer": data["normalizer"], "cmvn": run.shards.applied_cmvn,
        "position": {"step": p.step, "epoch": p.epoch, "step_in_epoch": p.step_in_epoch, "skipped": p.skipped},
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(), "rng": rngs, "best_cer": p.best_cer,
        "train_seconds": p.trained_before + time.time() - run.started, "lang": data["lang"],
        "train_config": dataclasses.asdict(run.cfg), "metrics": metrics, "precision": run.precision["chosen"],
        **({"init_from": run.init_report} if run.init_report else {}),
    }


def restore(run: Run, state: dict) -> None:
    """Continue from a `last.pt` payload (loaded with its training state): weights, optimizer,
    schedule, RNG (the position is read before the run is built: `Position.saved`)."""
    run.model.load_state_dict(state["state_dict"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    if run.d.rank < len(rngs) and rngs[run.d.rank]:
        checkpoint.set_rng_state(rngs[run.d.rank])


# --------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------
def previous_run(cfg: TrainConfig, d: Dist) -> dict | None:
    """The `last.pt` to resume from, None for a new run; refuses to overwrite a run silently."""
    last = Path(cfg.out) / "last.pt"
    if last.exists() and not cfg.force:
        if cfg.init_from:
            raise FileExistsError(f"{cfg.out} already holds a run (last.pt): --init-from starts a new one, so pass "
                                  "--force to start over, or another --out")
        if not cfg.resume:
            raise FileExistsError(f"{cfg.out} already holds a run (last.pt): pass --resume to continue it, "
                                  f"--force to start over, or another --out")
        return checkpoint.load(last, train_state=True)
    if cfg.resume and d.main:
        print(f"note: nothing to resume in {cfg.out}, starting a new run")
    return None


def new_tokenizer_and_config(cfg: TrainConfig, d: Dist, shards: ShardSet,
                             parent: dict | None = None) -> tuple[Tokenizer, dict]:
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
        return tokenizer, finetune.child_model_config(parent["model"], len(tokenizer), cfg.ctc_weight)
    mconf = model_config(cfg.model, cfg.preset, len(tokenizer), shards.dataset["features"]["n_mels"],
                         dict(cfg.model_options))
    if mconf["kind"] == "ctc" and mconf["options"].get("upsample") == "auto":  # from the train split's speed
        rows = shards.read_index(columns=["text", "frames"], split=cfg.train_split)
        mconf, report = ctc_frames.resolve(mconf, [r["text"] for r in rows], [r["frames"] for r in rows],
                                           tokenizer, build_model(mconf).encoder)
        if d.main:
            print(ctc_frames.describe(report))
    return tokenizer, mconf


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, no weight decay on biases and norm / 1-d parameters."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


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
    cfg = resolved(cfg, state and state.get("train_config"), parent and parent["model"])
    if state:  # the old network and units must meet the options and data they were trained with
        checkpoint.check_resume_compatible(state, dataclasses.asdict(cfg), shards.dataset, cfg.out)
    random.seed(cfg.seed + d.rank)
    np.random.seed(cfg.seed + d.rank)
    torch.manual_seed(cfg.seed)  # the same initial parameters on every rank
    if state:
        tokenizer, mconf = tokenizer_from_state(state["tokenizer"]), state["model"]
    else:
        tokenizer, mconf = new_tokenizer_and_config(cfg, d, shards, parent)
    model = build_model(mconf)
    if hasattr(model, "configure_training"):
        model.configure_training(cfg, tokenizer)
    init_report = state.get("init_from") if state else None
    if parent is not None:  # the same weights on every rank: seeded fresh rows, copied trained ones
        init_report = finetune.init_weights(model, parent, tokenizer, cfg.init_from)
        init_report["freeze_encoder_steps"] = cfg.freeze_encoder_steps
    model.to(device)
    if state and state.get("precision"):  # a resumed run trains on in the precision it started in
        prec = {"asked": cfg.precision, "chosen": state["precision"], "measured": False, "why": "kept from last.pt"}
    else:
        _, prec = precision.choose(cfg.precision, device, model, lambda: probe_batches(shards, cfg, tokenizer, device),
                                   d, cfg.max_steps)
    amp_dtype = autocast_dtype(prec["chosen"], device)
    optimizer = make_optimizer(model, cfg)
    pos = Position.saved(state) if state else Position()  # the run's one Position, never replaced
    # the loop moves pos.time_fraction (anneal_by_time); the schedule's step count is its own state
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, pos.time_fraction))
    run = Run(cfg=cfg, d=d, device=device, amp_dtype=amp_dtype, precision=prec, out=Path(cfg.out), shards=shards,
              tokenizer=tokenizer, mconf=mconf, model=model, train_model=model,
              specaug=SpecAugment(cfg.specaug).to(device), optimizer=optimizer, scheduler=scheduler,
              scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16), pos=pos,
              init_report=init_report)
    if state:
        restore(run, state)
        if d.main:  # metrics never ahead of the checkpoint (a failed checkpoint write left them so)
            trim_log(run.out / "metrics.jsonl", run.pos.step)
    if d.main and not state:  # a run started over keeps nothing of the one before
        averaging.prune(run.out / averaging.KEEP_DIR, 0)
        (run.out / averaging.AVERAGED).unlink(missing_ok=True)
    elif d.main and cfg.average:  # resumed: none past its step (those steps are trained again)
        averaging.prune(run.out / averaging.KEEP_DIR, cfg.average, after_step=run.pos.step)
    run.frozen = run.pos.step < cfg.freeze_encoder_steps
    finetune.set_encoder_trainable(model, not run.frozen)
    wrap_model(run)
    lcfg = LoaderConfig(batch_frames=cfg.batch_frames, max_batch=cfg.max_batch, max_frames=cfg.max_frames,
                        workers=cfg.workers, seed=cfg.seed)
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
        print(precision.describe(prec))
        frozen_until = cfg.freeze_encoder_steps if run.frozen else 0
        for line in finetune.log_lines(parent, init_report, shards.dataset, frozen_until):
            print(line)
    run.started = time.time()
    return run


# --------------------------------------------------------------------------------------
# one step, validation
# --------------------------------------------------------------------------------------
def compute_loss(run: Run, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward under autocast -> (loss, the model's other scalar losses: las "att_loss", "ctc_loss")."""
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        out = run.train_model(batch)
    parts = {k: float(v.detach()) for k, v in out.items()
             if k != "loss" and k.endswith("_loss") and torch.is_tensor(v) and v.numel() == 1}
    return out["loss"], parts


@dataclass
class StepResult:
    """What one optimisation step did."""

    applied: bool  # False: the batch was skipped (a loss or gradient norm not finite)
    loss: float  # nan when the loss was not finite on some rank
    grad_norm: float  # before clipping; nan when not computed
    parts: dict[str, float] = field(default_factory=dict)  # the model's other scalar losses


def train_step(run: Run, batch: Batch) -> StepResult:
    """One optimisation step of `run` on `batch` (on the device, SpecAugment applied).

    A batch whose loss is not finite on any rank, or whose gradient norm is not finite, is
    not applied: gradients are dropped and the parameters stay as they were.
    """
    optimizer, scaler, d = run.optimizer, run.scaler, run.d
    loss, parts = compute_loss(run, batch)
    if any_rank(not torch.isfinite(loss).item(), d, run.device):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(False, float("nan"), float("nan"), parts)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    gnorm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip))
    if not math.isfinite(gnorm):  # identical on every rank: gradients are all-reduced by now
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.update()  # fp16: lower the scale after an overflow
        return StepResult(False, float(loss.detach()), gnorm, parts)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(True, float(loss.detach()), gnorm, parts)


def probe_batches(shards: ShardSet, cfg: TrainConfig, tokenizer, device: torch.device, n: int = 2) -> list:
    """The first `n` train batches in shard order (no shuffle: the loader's stream is untouched),
    on `device`: what `asr.precision` times."""
    lcfg = LoaderConfig(batch_frames=cfg.batch_frames, max_batch=cfg.max_batch, max_frames=cfg.max_frames,
                        bucket_pool=64, workers=0)
    batches = []
    for batch in ShardStream(shards.urls(cfg.train_split), tokenizer, shards.cmvn, lcfg, train=False):
        batches.append(batch.to(device))
        if len(batches) == n:
            break
    return batches


@torch.no_grad()
def compute_validation_loss(model: torch.nn.Module, batches: list[Batch], tokenizer: Tokenizer,
                            device: torch.device, amp_dtype: torch.dtype | None) -> dict:
    """Dev loss (per token) and greedy CER / WER on pre-loaded batches."""
    model.eval()
    loss_sum, tokens, refs, hyps = 0.0, 0, [], []
    for batch in batches:
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(batch)
            hyps += greedy_texts(model, tokenizer, batch.feats, batch.feat_lens)
        loss_sum += float(out["loss"]) * float(out["tokens"])
        tokens += int(out["tokens"])
        refs += batch.texts
    model.train()
    return {
        "loss": loss_sum / max(tokens, 1),
        "cer": jiwer.cer(refs, hyps) if refs else float("nan"),
        "wer": jiwer.wer(refs, hyps) if refs else float("nan"),
        "samples": list(zip(refs[:5], hyps[:5])),
        "utterances": len(refs),
    }


def evaluate_dev(run: Run) -> dict:
    """Dev loss and greedy CER / WER on the dev subset, logged (rank 0; {} on the others)."""
    if not run.d.main:
        return {}
    result = compute_validation_loss(run.model, run.dev_batches, run.tokenizer, run.device, run.amp_dtype)
    log_validation(run, result)
    return result


def save_checkpoints(run: Run, dev: dict, keep: bool = True) -> None:
    """`last.pt`; `best.pt` too when `dev`'s CER is the best so far; with `--average N` (and
    `keep`) the weights in <out>/avg, the last N kept. Every rank calls it (RNG states are
    gathered); rank 0 writes."""
    improved = run.d.main and dev["cer"] < run.pos.best_cer
    if run.d.main:
        run.pos.best_cer = min(run.pos.best_cer, dev["cer"])
    payload = checkpoint_payload(run, {k: v for k, v in dev.items() if k != "samples"})
    if run.d.main:
        checkpoint.save(run.last_path, payload)
        if improved:
            checkpoint.save(run.best_path, payload)
        if run.cfg.average and keep:
            averaging.keep(run.out / averaging.KEEP_DIR, run.pos.step, payload, run.cfg.average)
    if run.d.active:
        dist.barrier()


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------
def stop_reason(run: Run, stop: _StopFlag, spent: float) -> str | None:
    """Why this rank must stop after this step (None: go on); `spent`: seconds of the time budget."""
    cfg = run.cfg
    if stop.requested:
        return "signal"
    if cfg.steps_this_run and run.run_steps >= cfg.steps_this_run:
        return "steps_this_run"
    if cfg.time_budget and spent >= cfg.time_budget:
        return "time_budget"
    return None


def train_one_epoch(run: Run, stop: _StopFlag, meter: Meter) -> str | None:
    """Steps until the epoch's end or `max_steps` -> why the run must stop now (None: go on)."""
    cfg, pos, d = run.cfg, run.pos, run.d
    run.loader.dataset.set_epoch(pos.epoch)
    batches = iter(run.loader)
    for _ in range(pos.step_in_epoch):  # resuming mid-epoch: skip what was trained on
        next(batches)
    while pos.step_in_epoch < run.per_epoch and pos.step < cfg.max_steps:
        if run.frozen and pos.step >= cfg.freeze_encoder_steps:
            unfreeze_encoder(run, meter.bar.write)
        batch = next(batches).to(run.device)
        batch.feats = run.specaug(batch.feats, batch.feat_lens, masks=pos.step >= cfg.specaug_start)
        if hasattr(run.model, "on_step"):  # models with their own schedules (scheduled sampling)
            run.model.on_step(pos.step, cfg.max_steps)
        result = train_step(run, batch)
        if not result.applied:
            pos.skipped += 1
        meter.add(result, batch)
        spent = 0.0
        if cfg.time_budget:  # the slowest rank's clock, so every rank has the same lr
            spent = max_over_ranks(time.time() - run.started + (pos.trained_before if cfg.anneal_by_time else 0.0),
                                   d, run.device)
            if cfg.anneal_by_time:
                pos.time_fraction = min(1.0, spent / cfg.time_budget)
        run.scheduler.step()
        pos.step += 1
        pos.step_in_epoch += 1
        run.run_steps += 1
        run.run_utts += len(batch)
        if d.main and (pos.step % cfg.log_every == 0 or pos.step == cfg.max_steps):
            meter.log(run)
        meter.bar.update(1)
        if d.main and run.run_steps == ESTIMATE_AFTER and pos.step < cfg.max_steps:
            meter.bar.write(time_estimate(run))
        if cfg.eval_every and pos.step % cfg.eval_every == 0 and pos.step < cfg.max_steps:
            run.last_dev = evaluate_dev(run)
            save_checkpoints(run, run.last_dev)
        reason = stop_reason(run, stop, spent)
        if any_rank(reason is not None, d, run.device):
            return reason or "another rank"
    return None


def write_averaged(run: Run) -> dict:
    """`--average N`: <out>/averaged.pt, the mean of the last N kept checkpoints, evaluated on
    the dev subset as the others are -> its summary entry (the steps averaged, dev metrics)."""
    paths = averaging.prune(run.out / averaging.KEEP_DIR, run.cfg.average)
    payload = averaging.averaged_payload(paths)
    run.model.load_state_dict(payload["state_dict"])  # the loop is over: the model is free
    result = compute_validation_loss(run.model, run.dev_batches, run.tokenizer, run.device, run.amp_dtype)
    payload["metrics"] = {k: v for k, v in result.items() if k != "samples"}
    checkpoint.save(run.out / averaging.AVERAGED, payload)
    return {"path": str(run.out / averaging.AVERAGED), "steps": [s for s, _ in averaging.kept(paths[0].parent)],
            "dev": payload["metrics"]}


def _train(cfg: TrainConfig, d: Dist) -> dict:
    """The run, with its folder locked (by rank 0) from before last.pt is read until the end."""
    device = pick_device(cfg.device, d)  # the one choice of device, for the lock's vote and the run
    with lock_folder(Path(cfg.out), "train", d.main, lambda failed: any_rank(failed, d, device)):
        return _train_locked(cfg, d, device)


def _train_locked(cfg: TrainConfig, d: Dist, device: torch.device) -> dict:
    run = setup(cfg, d, device)
    cfg = run.cfg  # its defaults filled in (train_config.resolved)
    meter = Meter(run)
    reason = "max_steps"
    run.model.train()
    with _StopFlag() as stop:
        while run.pos.step < cfg.max_steps:
            if cfg.epochs and run.pos.epoch >= cfg.epochs:
                reason = "epochs"
                break
            skipped, steps = run.pos.skipped, run.pos.step
            halted = train_one_epoch(run, stop, meter)
            if run.pos.step_in_epoch >= run.per_epoch:  # a whole epoch: was any of it learnt from?
                check_epoch_trained(run.pos.skipped - skipped, run.pos.step - steps, run.pos.epoch)
            if halted:
                reason = halted
                break
            if run.pos.step_in_epoch >= run.per_epoch:
                run.pos.epoch += 1
                run.pos.step_in_epoch = 0
    meter.bar.close()
    if d.active:
        rank_report(run)
    final = evaluate_dev(run)
    save_checkpoints(run, final, keep=reason in FINISHED)
    summary = {"step": run.pos.step, "epoch": run.pos.epoch, "stopped_by": reason,
               "skipped_batches": run.pos.skipped, "seconds": round(time.time() - run.started, 1),
               "dev": {k: v for k, v in final.items() if k != "samples"}, "best_dev_cer": run.pos.best_cer,
               "max_steps": cfg.max_steps, "precision": run.precision, "out": str(run.out),
               **({"init_from": run.init_report} if run.init_report else {})}
    if d.main and cfg.average and reason in FINISHED:
        summary["averaged"] = write_averaged(run)
    if d.main:
        run.writer.close()
        atomic.write_text(run.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def train(cfg: TrainConfig) -> dict:
    """Train (or resume) a model; returns a summary. Rank 0 logs and writes checkpoints."""
    return run_distributed(_train, cfg)


def train_local(cfg: TrainConfig, procs: int) -> dict:
    """Train with `procs` data-parallel processes on this machine (gloo, as under `torchrun
    --nproc-per-node procs`), each with its share of the cores; `batch_frames` is per process.

    On a CPU the small models' RNN steps are too small for several threads to share well:
    measured on 2 cores, forward + backward of the small CTC preset runs 40 utterances/s in
    one process with 2 threads, and 48 in two processes of one thread each (half the batch
    each), for the same gradient per step. Returns rank 0's summary (<out>/summary.json).
    The processes are spawned: a script calling this needs `if __name__ == "__main__":`."""
    if procs <= 1:
        return train(cfg)
    with lock_folder(Path(cfg.out), "train"):  # failing here, before any process is started
        spawn_local(train, (cfg,), procs)
    return json.loads((Path(cfg.out) / "summary.json").read_text())
