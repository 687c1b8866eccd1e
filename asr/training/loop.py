"""One training loop for every model: `loss = model(batch)["loss"]`.

    asr-cli train --shards shards/fr --model ctc --preset small --out runs/fr-ctc
    torchrun --nproc-per-node 4 cli.py train --shards shards/fr ...      (DDP: NCCL / gloo)

Per step: a batch from the streaming loader, SpecAugment on the device, forward under
autocast (the precision asr/runtime/precision.py chose), backward, gradient clipping, fused
AdamW (a batch whose loss or gradient norm is not finite is skipped, on every rank at once,
decided on the device), warm-up then cosine decay. Between logging steps the host never
waits for the device: the figures stay on it until a log line reads them. Every
`eval_every` steps: dev loss and greedy CER on a fixed dev subset, `last.pt` and (when the
dev CER improves) `best.pt`, each written atomically. SIGTERM / Ctrl-C finish the step,
write `last.pt` and exit cleanly; `--resume` continues from it with the same step count and
the same data stream.
Logs: TensorBoard events in <out>/tb, one JSON line per log step in <out>/metrics.jsonl
(on `--resume`, its lines past the checkpoint's step are dropped: they are trained again).
One process owns <out> at a time (pipeline/lock.py; rank 0 under torchrun, the parent with
`--procs`); a second run into it stops with the holder's pid.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import torch
import torch.distributed as dist

from asr.data.loader import Batch, check_epoch_trained
from asr.decoding.decoder import greedy_texts
from asr.runtime.distributed import Dist, any_rank, max_over_ranks, pick_device, run_distributed, spawn_local
from asr.store.payload import Checkpoint
from asr.tokens.tokenizer import Tokenizer
from asr.training import averaging
from asr.training.config import TrainConfig, lr_factor  # noqa: F401  (the schedule, a pure function)
from asr.training.log import ESTIMATE_AFTER, Meter, log_validation, rank_report, time_estimate
from asr.training.run import Run, setup, unfreeze_encoder
from pipeline import atomic
from pipeline.lock import lock_folder

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
# one step, validation
# --------------------------------------------------------------------------------------
def compute_loss(run: Run, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward under autocast -> (loss, the model's other scalar losses, detached: las
    "att_loss", "ctc_loss"), all tensors on the device (read on the host only when logged)."""
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        out = run.train_model(batch)
    parts = {k: v.detach() for k, v in out.items()
             if k != "loss" and k.endswith("_loss") and torch.is_tensor(v) and v.numel() == 1}
    return out["loss"], parts


@dataclass
class StepResult:
    """What one optimisation step did: 0-d tensors on the device, so that taking a step never
    waits for it to finish (asr/training/log.py's Meter reads them on logging steps)."""

    applied: torch.Tensor  # bool; False: the batch was skipped (a loss or gradient norm not finite)
    loss: torch.Tensor  # as computed (not finite when the step was skipped for it)
    grad_norm: torch.Tensor  # before clipping
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # the model's other scalar losses


def train_step(run: Run, batch: Batch) -> StepResult:
    """One optimisation step of `run` on `batch` (on the device, SpecAugment applied).

    A batch whose loss or gradient norm is not finite (on any rank) is not applied: the
    parameters and the optimizer's state stay as they were. With the fused AdamW of
    `make_optimizer` that is decided on the device (the optimizer skips its update when its
    `found_inf` is set, as GradScaler tells it), so the host never waits for the step: reading
    the loss or the norm back every step (`.item()`, `float()`) made the GPU idle while the
    host queued the next step (issue 34). Any other optimizer (and fp16's GradScaler) decides
    on the host, as before.
    """
    optimizer, scaler, d = run.optimizer, run.scaler, run.d
    loss, parts = compute_loss(run, batch)
    scaler.scale(loss).backward()  # a non-finite loss gives non-finite gradients: the norm below catches it
    scaler.unscale_(optimizer)
    gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip).detach()
    loss = loss.detach()
    bad = (~(torch.isfinite(loss) & torch.isfinite(gnorm))).float()
    if d.active:  # gradients are all-reduced, a loss is not: the same decision on every rank
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if optimizer.defaults.get("fused") and not scaler.is_enabled():
        optimizer.found_inf = bad  # the fused kernels skip the update (and its step count) when it is 1
        optimizer.step()
    elif bad.item():
        if scaler.is_enabled():
            scaler.update()  # fp16: lower the scale after an overflow
    else:
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(bad == 0, loss, gnorm, parts)


def fed_step(run: Run, host: Batch, step: int) -> StepResult:
    """Step `step` of the loop on a batch as the loader gives it (pinned host memory): copied
    to the device without waiting, SpecAugment there, then `train_step`. (A batch already on
    the device is used as it is: bench/bench_gpu.py's resident rate.)"""
    batch = host.to(run.device)
    batch.feats = run.specaug(batch.feats, batch.feat_lens, masks=step >= run.cfg.specaug_start)
    if hasattr(run.model, "on_step"):  # models with their own schedules (scheduled sampling)
        run.model.on_step(step, run.cfg.max_steps)
    return train_step(run, batch)


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
    ckpt = run.checkpoint({k: v for k, v in dev.items() if k != "samples"})
    if run.d.main:
        ckpt.save(run.last_path)
        if improved:
            ckpt.save(run.best_path)
        if run.cfg.average and keep:
            averaging.keep(run.out / averaging.KEEP_DIR, run.pos.step, ckpt, run.cfg.average)
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
        host = next(batches)
        meter.add(fed_step(run, host, pos.step), len(host), host.real_frames, host.padded_frames)
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
        run.run_utts += len(host)
        if d.main and (pos.step % cfg.log_every == 0 or pos.step == cfg.max_steps):
            meter.log(run)
        meter.bar.update(1)
        if d.main and run.run_steps == ESTIMATE_AFTER and pos.step < cfg.max_steps:
            meter.bar.write(time_estimate(run))
        if cfg.eval_every and pos.step % cfg.eval_every == 0 and pos.step < cfg.max_steps:
            meter.settle(run)
            run.last_dev = evaluate_dev(run)
            save_checkpoints(run, run.last_dev)
        reason = stop_reason(run, stop, spent)
        if any_rank(reason is not None, d, run.device):
            meter.settle(run)
            return reason or "another rank"
    meter.settle(run)
    return None


def write_averaged(run: Run) -> dict:
    """`--average N`: <out>/averaged.pt, the mean of the last N kept checkpoints, evaluated on
    the dev subset as the others are -> its summary entry (the steps averaged, dev metrics)."""
    paths = averaging.prune(run.out / averaging.KEEP_DIR, run.cfg.average)
    averaged: Checkpoint = averaging.averaged(paths)
    run.model.load_state_dict(averaged.weights)  # the loop is over: the model is free
    result = compute_validation_loss(run.model, run.dev_batches, run.tokenizer, run.device, run.amp_dtype)
    averaged.metrics = {k: v for k, v in result.items() if k != "samples"}
    averaged.save(run.out / averaging.AVERAGED)
    return {"path": str(run.out / averaging.AVERAGED), "steps": [s for s, _ in averaging.kept(paths[0].parent)],
            "dev": averaged.metrics}


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
               "max_steps": cfg.max_steps, "precision": run.precision, "batch": run.batch, "out": str(run.out),
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
