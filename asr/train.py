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
Logs: TensorBoard events in <out>/tb, one JSON line per log step in <out>/metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from asr import checkpoint
from asr.data import LoaderConfig, ShardSet, ShardStream, make_loader, steps_per_epoch
from asr.decoding import greedy_texts
from asr.models import build_model, count_parameters, model_config
from asr.specaug import SpecAugment, SpecAugmentConfig
from asr.tokenizer import CharTokenizer, tokenizer_from_state
from pipeline.audio import FeatureConfig


@dataclass
class TrainConfig:
    shards: str
    out: str = "runs/fr-ctc"
    model: str = "ctc"  # ctc | las
    preset: str = "small"
    model_options: dict = field(default_factory=dict)  # overrides of the preset (sizes, rnn, ...)
    tokens: str = "char"  # char | unigram:N (attention model)
    shard_url: str | None = None  # where tars are read from, if not the shards folder
    train_split: str = "train"
    dev_split: str = "dev"
    max_steps: int = 20000
    epochs: int = 0  # 0: no epoch limit, stop at max_steps
    steps_this_run: int = 0  # stop (with a checkpoint) after this many steps of this invocation
    time_budget: float = 0.0  # seconds of training in this invocation, 0: none
    # With a time budget: the cosine decay follows steps or training time, whichever is further
    # along, and the budget counts the run's training time over resumes. A run cut by the clock
    # (a slow or busy machine) still ends annealed; a fast one ends at max_steps, as without.
    # Not bit-reproducible (the learning rate depends on the clock).
    anneal_by_time: bool = False
    batch_frames: int = 20000
    max_batch: int = 256
    max_frames: int = 2000
    lr: float = 1e-3
    warmup: int = 500
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    clip: float = 5.0
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False
    eval_every: int = 500
    eval_utts: int = 200
    log_every: int = 20
    seed: int = 0
    workers: int = 2
    threads: int = 0  # torch CPU threads per process, 0: cores / local processes
    resume: bool = False
    force: bool = False
    progress: bool = True
    specaug: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    specaug_start: int = 0  # SpecAugment's masks from this step on (a short run learns faster without them
    # at first); its frequency warp, if any, from the first step
    ctc_weight: float = 0.3  # attention model only: weight of the joint CTC loss
    label_smoothing: float = 0.1  # attention model only
    sampling_rate: float = 0.0  # attention model only: scheduled sampling probability at the end


# --------------------------------------------------------------------------------------
# distributed set-up (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK)
# --------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup_dist(device: str) -> Dist:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist()
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
             int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend)
    return d


def any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True on every rank if `flag` is true on any rank (so all ranks take the same branch)."""
    if not d.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def max_over_ranks(value: float, d: Dist, device: torch.device) -> float:
    if not d.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def pick_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but torch sees no CUDA device")
        if d.active or name == "cuda":
            name = f"cuda:{d.local_rank}"
        torch.cuda.set_device(name)
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return None
    if device.type != "cuda":
        raise ValueError(f"--precision {precision} needs a CUDA device (training on {device})")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# --------------------------------------------------------------------------------------
# schedule and evaluation
# --------------------------------------------------------------------------------------
def lr_factor(step: int, cfg: TrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warm-up to 1, then cosine decay to `min_lr_ratio` at `max_steps` (or, with
    `anneal_by_time`, when `time_fraction` of the time budget is spent, if that comes first)."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = min(1.0, max((step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup), time_fraction))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def dev_subset(shards: ShardSet, split: str, tokenizer, cfg: TrainConfig) -> list:
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


@torch.no_grad()
def evaluate(model, batches: list, tokenizer, device, amp_dtype) -> dict:
    """Dev loss (per token) and greedy CER / WER on pre-loaded batches."""
    import jiwer

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


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------
def train_step(train_model, model, batch, optimizer, scaler, clip: float, amp_dtype, d: Dist,
               device: torch.device, parts: dict | None = None) -> tuple[bool, float, float]:
    """One optimisation step -> (applied, loss, grad norm).

    A batch whose loss is not finite on any rank, or whose gradient norm is not finite, is
    not applied: gradients are dropped and the parameters stay as they were. The model's
    other scalar losses (las: "att_loss", "ctc_loss") are stored in `parts` when given.
    """
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        out = train_model(batch)
    loss = out["loss"]
    if parts is not None:
        parts.clear()
        parts.update({k: float(v.detach()) for k, v in out.items()
                      if k != "loss" and k.endswith("_loss") and torch.is_tensor(v) and v.numel() == 1})
    if any_rank(not torch.isfinite(loss).item(), d, device):
        optimizer.zero_grad(set_to_none=True)
        return False, float("nan"), float("nan")
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    if not math.isfinite(gnorm):  # identical on every rank: gradients are all-reduced by now
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaler.update()  # fp16: lower the scale after an overflow
        return False, float(loss.detach()), gnorm
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return True, float(loss.detach()), gnorm


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


def make_tokenizer(cfg: TrainConfig, shards: ShardSet, out: Path):
    if cfg.tokens == "char":
        return CharTokenizer(shards.vocab)
    if cfg.tokens.startswith("unigram:"):
        from asr.subword import UnigramTokenizer
        import pyarrow.parquet as pq

        size = int(cfg.tokens.split(":", 1)[1])
        index = pq.read_table(shards.root / "index.parquet", columns=["split", "text"]).to_pylist()
        texts = [r["text"] for r in index if r["split"] == cfg.train_split]
        return UnigramTokenizer.train(texts, size, out / "unigram")
    raise ValueError(f"--tokens must be 'char' or 'unigram:N', not {cfg.tokens!r}")


def run_distributed(fn, cfg):
    """`fn(cfg, d)` inside the process group torchrun asks for (if any), torn down after."""
    d = setup_dist(cfg.device)
    try:
        return fn(cfg, d)
    finally:
        if d.active and dist.is_initialized():
            dist.destroy_process_group()


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
    if "RANK" in os.environ:
        raise ValueError("several local processes cannot be started inside torchrun: use its --nproc-per-node")
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:  # a free port for the process group's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.start_processes(_local_rank, args=(procs, port, cfg), nprocs=procs, start_method="spawn", join=False)
    while True:
        try:
            if ctx.join():
                break
        except KeyboardInterrupt:  # the ranks got the signal too: they checkpoint and exit
            continue
        except mp.ProcessRaisedException as e:
            raise RuntimeError(f"a training process failed:\n{e}") from None
        except mp.ProcessExitedException as e:
            raise RuntimeError(f"a training process died: {e}") from None
    return json.loads((Path(cfg.out) / "summary.json").read_text())


def _local_rank(rank: int, procs: int, port: int, cfg: TrainConfig) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(procs), LOCAL_WORLD_SIZE=str(procs))
    train(cfg)


def _train(cfg: TrainConfig, d: Dist) -> dict:
    from tqdm import tqdm

    device = pick_device(cfg.device, d)
    amp_dtype = autocast_dtype(cfg.precision, device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, len(os.sched_getaffinity(0)) // d.local_world))
    out = Path(cfg.out)
    last_path, best_path = out / "last.pt", out / "best.pt"
    shards = ShardSet.open(cfg.shards, cfg.shard_url)

    resume_state = None
    if last_path.exists() and not cfg.force:
        if not cfg.resume:
            raise FileExistsError(f"{out} already holds a run (last.pt): pass --resume to continue it, "
                                  f"--force to start over, or another --out")
        resume_state = checkpoint.load(last_path)
    elif cfg.resume and d.main:
        print(f"note: nothing to resume in {out}, starting a new run")

    seed = cfg.seed
    random.seed(seed + d.rank)
    np.random.seed(seed + d.rank)
    torch.manual_seed(seed)  # the same initial parameters on every rank

    if resume_state:
        tokenizer = tokenizer_from_state(resume_state["tokenizer"])
        mconf = resume_state["model"]
    else:
        out.mkdir(parents=True, exist_ok=True)
        if d.active:
            dist.barrier()
        tokenizer = make_tokenizer(cfg, shards, out) if d.main else None
        if d.active:  # the unigram model is trained once, on rank 0
            obj = [tokenizer.state_dict() if d.main else None]
            dist.broadcast_object_list(obj, src=0)
            tokenizer = tokenizer_from_state(obj[0])
        n_mels = shards.dataset["features"]["n_mels"]
        options = dict(cfg.model_options)
        mconf = model_config(cfg.model, cfg.preset, len(tokenizer), n_mels, options)
    model = build_model(mconf)
    if hasattr(model, "configure_training"):
        model.configure_training(cfg, tokenizer)
    model.to(device)
    specaug = SpecAugment(cfg.specaug).to(device)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    clock = {"fraction": 0.0, "trained_before": 0.0}  # time annealing (TrainConfig.anneal_by_time)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, clock["fraction"]))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    step, epoch, step_in_epoch, skipped, best_cer = 0, 0, 0, 0, float("inf")
    if resume_state:
        model.load_state_dict(resume_state["state_dict"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        pos = resume_state["position"]
        step, epoch, step_in_epoch, skipped = pos["step"], pos["epoch"], pos["step_in_epoch"], pos["skipped"]
        best_cer = resume_state.get("best_cer", float("inf"))
        clock["trained_before"] = resume_state.get("train_seconds", 0.0)
        rng = resume_state["rng"][d.rank] if d.rank < len(resume_state["rng"]) else None
        if rng:
            checkpoint.set_rng_state(rng)

    train_model = model
    if cfg.compile:
        train_model = torch.compile(model)
    if d.active:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)

    lcfg = LoaderConfig(batch_frames=cfg.batch_frames, max_batch=cfg.max_batch, max_frames=cfg.max_frames,
                        workers=cfg.workers, seed=cfg.seed)
    loader = make_loader(shards, cfg.train_split, tokenizer, lcfg, train=True, rank=d.rank, world=d.world,
                         pin_memory=device.type == "cuda")
    per_epoch = steps_per_epoch(shards, cfg.train_split, lcfg, d.world)
    fps = FeatureConfig.from_dict(shards.dataset["features"]).frames_per_second()
    dev_batches = dev_subset(shards, cfg.dev_split, tokenizer, cfg) if d.main else []

    writer = None
    if d.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
        n_params = count_parameters(model)
        print(f"{mconf['kind']}/{mconf['preset']}: {n_params / 1e6:.2f} M parameters, {len(tokenizer)} units, "
              f"device {device}{f' x {d.world} ranks' if d.active else ''}, "
              f"precision {amp_dtype or torch.float32}, {per_epoch} steps per epoch"
              + (f", resuming at step {step}" if resume_state else ""))

    def payload(metrics: dict) -> dict:
        rngs = [checkpoint.rng_state()]
        if d.active:
            gathered = [None] * d.world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        return {
            "model": mconf, "state_dict": model.state_dict(), "tokenizer": tokenizer.state_dict(),
            "features": shards.dataset["features"], "normalizer": shards.dataset["normalizer"],
            "cmvn": shards.dataset["cmvn"], "lang": shards.dataset["lang"],
            "position": {"step": step, "epoch": epoch, "step_in_epoch": step_in_epoch, "skipped": skipped},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": rngs, "best_cer": best_cer,
            "train_seconds": clock["trained_before"] + time.time() - started,
            "train_config": dataclasses.asdict(cfg), "metrics": metrics,
        }

    def save_checkpoints(metrics: dict, improved: bool) -> None:
        p = payload(metrics)  # every rank joins the RNG gather
        if d.main:
            checkpoint.save(last_path, p)
            if improved:
                checkpoint.save(best_path, p)
        if d.active:
            dist.barrier()

    def run_eval() -> dict:
        nonlocal best_cer
        result = evaluate(model, dev_batches, tokenizer, device, amp_dtype) if d.main else {}
        improved = False
        if d.main:
            improved = result["cer"] < best_cer
            best_cer = min(best_cer, result["cer"])
            writer.add_scalar("dev/loss", result["loss"], step)
            writer.add_scalar("dev/cer", result["cer"], step)
            writer.add_scalar("dev/wer", result["wer"], step)
            table = "| reference | hypothesis |\n|---|---|\n" + "\n".join(
                f"| {r} | {h} |" for r, h in result["samples"])
            writer.add_text("dev/samples", table, step)
            _log_line(out, {"step": step, "dev_loss": result["loss"], "dev_cer": result["cer"],
                            "dev_wer": result["wer"]})
        save_checkpoints({k: v for k, v in result.items() if k != "samples"}, improved)
        return result

    bar = tqdm(total=cfg.max_steps, initial=step, unit="step", disable=not (cfg.progress and d.main),
               dynamic_ncols=True, desc="train")
    started, run_steps, run_utts = time.time(), 0, 0
    window = {"loss": 0.0, "n": 0, "utts": 0, "frames": 0, "padded": 0, "t": time.time(), "gnorm": 0.0,
              "parts": {}}
    parts: dict = {}
    last_dev = {}
    reason = "max_steps"
    model.train()
    with _StopFlag() as stop:
        while step < cfg.max_steps:
            if cfg.epochs and epoch >= cfg.epochs:
                reason = "epochs"
                break
            loader.dataset.set_epoch(epoch)
            batches = iter(loader)
            for _ in range(step_in_epoch):  # resuming mid-epoch: skip what was trained on
                next(batches)
            halt = False
            while step_in_epoch < per_epoch and step < cfg.max_steps:
                batch = next(batches).to(device)
                batch.feats = specaug(batch.feats, batch.feat_lens, masks=step >= cfg.specaug_start)
                if hasattr(model, "on_step"):  # models with their own schedules (scheduled sampling)
                    model.on_step(step, cfg.max_steps)
                ok, loss, gnorm = train_step(train_model, model, batch, optimizer, scaler, cfg.clip, amp_dtype,
                                             d, device, parts)
                if ok:
                    window["loss"] += loss
                    for k, v in parts.items():
                        window["parts"][k] = window["parts"].get(k, 0.0) + v
                    window["gnorm"] += gnorm
                    window["n"] += 1
                else:
                    skipped += 1
                spent = 0.0
                if cfg.time_budget:  # the slowest rank's clock, so every rank has the same lr
                    spent = max_over_ranks(time.time() - started
                                           + (clock["trained_before"] if cfg.anneal_by_time else 0.0), d, device)
                    if cfg.anneal_by_time:
                        clock["fraction"] = min(1.0, spent / cfg.time_budget)
                scheduler.step()
                step += 1
                step_in_epoch += 1
                run_steps += 1
                run_utts += len(batch)
                window["utts"] += len(batch)
                window["frames"] += batch.real_frames
                window["padded"] += batch.padded_frames

                if d.main and (step % cfg.log_every == 0 or step == cfg.max_steps):
                    _log_train(writer, out, bar, window, step, scheduler.get_last_lr()[0], skipped, last_dev,
                               d.world, fps)
                bar.update(1)
                if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
                    last_dev = run_eval()
                stop_now = stop.requested or (cfg.steps_this_run and run_steps >= cfg.steps_this_run) or (
                    cfg.time_budget and spent >= cfg.time_budget)
                if any_rank(bool(stop_now), d, device):
                    reason = ("signal" if stop.requested else "steps_this_run"
                              if cfg.steps_this_run and run_steps >= cfg.steps_this_run else "time_budget")
                    halt = True
                    break
            del batches
            if halt:
                break
            if step_in_epoch >= per_epoch:
                epoch += 1
                step_in_epoch = 0
    bar.close()
    if d.active:
        _rank_report(out, d, model, run_steps, run_utts)
    final = run_eval()
    elapsed = time.time() - started
    summary = {"step": step, "epoch": epoch, "stopped_by": reason, "skipped_batches": skipped,
               "seconds": round(elapsed, 1), "dev": {k: v for k, v in final.items() if k != "samples"},
               "best_dev_cer": best_cer, "out": str(out)}
    if d.main:
        writer.close()
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _rank_report(out: Path, d: Dist, model, steps: int, utterances: int) -> None:
    """<out>/ranks/rank-N.json: what each DDP rank did, to check they stayed in step."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    (out / "ranks").mkdir(parents=True, exist_ok=True)
    (out / "ranks" / f"rank-{d.rank}.json").write_text(json.dumps(
        {"rank": d.rank, "world": d.world, "batches": steps, "utterances": utterances,
         "parameters_sha256": h.hexdigest()}) + "\n")


def _log_line(out: Path, record: dict) -> None:
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _log_train(writer, out: Path, bar, window: dict, step: int, lr: float, skipped: int, dev: dict,
               world: int, fps: float) -> None:
    dt = max(time.time() - window["t"], 1e-9)
    n = max(window["n"], 1)
    rec = {
        "step": step, "loss": window["loss"] / n, "lr": lr, "grad_norm": window["gnorm"] / n,
        "utt_per_s": window["utts"] * world / dt, "audio_s_per_s": window["frames"] * world / fps / dt,
        "padded_fraction": 1 - window["frames"] / max(window["padded"], 1), "skipped_batches": skipped,
        **{k: v / n for k, v in window["parts"].items()},
    }
    for k in window["parts"]:
        writer.add_scalar(f"train/{k}", rec[k], step)
    writer.add_scalar("train/loss", rec["loss"], step)
    writer.add_scalar("train/lr", lr, step)
    writer.add_scalar("train/grad_norm", rec["grad_norm"], step)
    writer.add_scalar("train/utterances_per_s", rec["utt_per_s"], step)
    writer.add_scalar("train/padded_fraction", rec["padded_fraction"], step)
    writer.add_scalar("train/skipped_batches", skipped, step)
    _log_line(out, rec)
    post = f"loss {rec['loss']:.3f}, {rec['utt_per_s']:.1f} utt/s"
    if dev:
        post += f", dev CER {dev['cer']:.3f}"
    bar.set_postfix_str(post, refresh=False)
    window.update(loss=0.0, n=0, utts=0, frames=0, padded=0, t=time.time(), gnorm=0.0, parts={})
