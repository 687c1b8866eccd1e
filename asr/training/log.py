"""What a training run logs: metrics.jsonl, TensorBoard events, the progress bar, rank reports.

    <out>/metrics.jsonl       one JSON line per log step ("loss", "lr", "utt_per_s", ...) and
                              per validation ("dev_loss", "dev_cer", "dev_wer"); never ahead of
                              the last checkpoint after a resume (`trim_log`)
    <out>/tb/                 TensorBoard: train/* and dev/* scalars, dev samples
    <out>/ranks/rank-N.json   what each DDP rank did, to check they stayed in step

`run` below is asr/training/loop.py's `Run` (its cfg, d, pos, out, writer, scheduler ...).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline import atomic


class Meter:
    """Training figures averaged over the steps since the last log line, and the progress bar.

    A step's figures arrive as tensors on the device and are summed there; only a log line (and
    `settle`, before a checkpoint or an epoch's end) reads them back, so the host waits for the
    device once per `log_every` steps, not once per step."""

    def __init__(self, run):
        self.bar = tqdm(total=run.cfg.max_steps, initial=run.pos.step, unit="step", dynamic_ncols=True,
                        desc="train", disable=not (run.cfg.progress and run.d.main))
        self.skipped = torch.zeros((), device=run.device)  # steps skipped, not yet counted in run.pos
        self.reset()

    def reset(self) -> None:
        self.sums: dict = {}  # "loss", "grad_norm", the parts, "applied": device tensors
        self.utts = self.frames = self.padded = 0
        self.t = time.time()

    def add(self, result, utts: int, frames: int, padded: int) -> None:
        """One step's asr/training/loop.py StepResult (its losses count if it was applied) and its
        batch's utterances, real and padded frames (counted on the host's copy of the batch)."""
        applied = result.applied
        zero = torch.zeros((), device=applied.device)
        figures = {"loss": result.loss, "grad_norm": result.grad_norm, **result.parts}
        for k, v in figures.items():  # a skipped step's (not finite) figures do not count
            v = torch.where(applied, v.float(), zero)
            self.sums[k] = v if k not in self.sums else self.sums[k] + v
        self.sums["applied"] = self.sums.get("applied", zero) + applied
        self.skipped += ~applied
        self.utts += utts
        self.frames += frames
        self.padded += padded

    def settle(self, run) -> None:
        """The skipped steps into `run.pos.skipped` (reads one number from the device)."""
        run.pos.skipped += int(self.skipped)
        self.skipped.zero_()

    def log(self, run) -> None:
        """One metrics.jsonl line, TensorBoard scalars and the bar's postfix; then a new window."""
        self.settle(run)
        sums = {k: float(v) for k, v in self.sums.items()}  # the one wait for the device in this window
        dt, n, world = max(time.time() - self.t, 1e-9), max(sums.pop("applied", 0.0), 1), run.d.world
        loss, gnorm = sums.pop("loss", 0.0), sums.pop("grad_norm", 0.0)
        rec = {
            "step": run.pos.step, "loss": loss / n, "lr": run.scheduler.get_last_lr()[0],
            "grad_norm": gnorm / n, "utt_per_s": self.utts * world / dt,
            "audio_s_per_s": self.frames * world / run.frames_per_second / dt,
            "padded_fraction": 1 - self.frames / max(self.padded, 1), "skipped_batches": run.pos.skipped,
            **{k: v / n for k, v in sums.items()},
        }
        for k in sums:
            run.writer.add_scalar(f"train/{k}", rec[k], rec["step"])
        for key, name in (("loss", "loss"), ("lr", "lr"), ("grad_norm", "grad_norm"),
                          ("utt_per_s", "utterances_per_s"), ("padded_fraction", "padded_fraction"),
                          ("skipped_batches", "skipped_batches")):
            run.writer.add_scalar(f"train/{name}", rec[key], rec["step"])
        log_line(run.out, rec)
        post = f"loss {rec['loss']:.3f}, {rec['utt_per_s']:.1f} utt/s"
        if run.last_dev:
            post += f", dev CER {run.last_dev['cer']:.3f}"
        self.bar.set_postfix_str(post, refresh=False)
        self.reset()


def log_validation(run, result: dict) -> None:
    step, w = run.pos.step, run.writer
    for k in ("loss", "cer", "wer"):
        w.add_scalar(f"dev/{k}", result[k], step)
    w.add_text("dev/samples", "| reference | hypothesis |\n|---|---|\n" + "\n".join(
        f"| {r} | {h} |" for r, h in result["samples"]), step)
    log_line(run.out, {"step": step, "dev_loss": result["loss"], "dev_cer": result["cer"], "dev_wer": result["wer"]})


def log_line(out: Path, record: dict) -> None:
    atomic.append_line(out / "metrics.jsonl", json.dumps(record))


def trim_log(path: Path, step: int) -> int:
    """Drop the lines of a JSON-lines log (metrics.jsonl) whose "step" is past `step` (a resumed
    run's checkpoint: those steps are trained again), and any unreadable line; rewritten
    atomically. Returns how many lines were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()

    def keep(line: str) -> bool:
        try:
            return json.loads(line).get("step", 0) <= step
        except (ValueError, AttributeError):
            return False

    kept = [line for line in lines if keep(line)]
    if len(kept) < len(lines):
        atomic.write_text(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def summary_writer(folder: Path):
    """TensorBoard's writer for `folder`. A write its background thread cannot make (a full
    disk) is raised in the training thread, the first time naming `folder`, instead of being
    printed as a thread's traceback."""
    from torch.utils.tensorboard import SummaryWriter

    if threading.excepthook is not _quiet_event_writer:
        global _previous_hook
        _previous_hook, threading.excepthook = threading.excepthook, _quiet_event_writer
    try:
        return SummaryWriter(str(folder))
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(folder)) from None


_previous_hook = threading.excepthook


def _quiet_event_writer(args) -> None:
    """tensorboard's writer thread re-raises its OSError in the thread that writes next."""
    if not (issubclass(args.exc_type, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
        _previous_hook(args)


def rank_report(run) -> None:
    """<out>/ranks/rank-N.json: what each DDP rank did, to check they stayed in step."""
    h = hashlib.sha256()
    for name, p in sorted(run.model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    (run.out / "ranks").mkdir(parents=True, exist_ok=True)
    atomic.write_text(run.out / "ranks" / f"rank-{run.d.rank}.json", json.dumps(
        {"rank": run.d.rank, "world": run.d.world, "batches": run.run_steps, "utterances": run.run_utts,
         "parameters_sha256": h.hexdigest()}) + "\n")


ESTIMATE_AFTER = 30  # steps timed before the run says how long it will take


def time_estimate(run) -> str:
    """How long the rest of the run takes at the pace of its first steps (data, optimizer and all)."""
    per_step = (time.time() - run.started) / max(1, run.run_steps)
    left = run.cfg.max_steps - run.pos.step
    evals = left // run.cfg.eval_every if run.cfg.eval_every else 0
    text = (f"about {per_step * left / 60:.0f} min for the {left} steps left on this machine "
            f"({per_step:.2f} s a step so far, plus {evals} dev evaluations)")
    if run.cfg.time_budget and per_step * left > run.cfg.time_budget:
        text += f": more than the {run.cfg.time_budget / 60:.0f}-minute cap, which will cut the run short"
    return text
