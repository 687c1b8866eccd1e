"""Devices, precision and process groups: what training, evaluation and transcription share.

    torchrun --nproc-per-node 4 cli.py train ...     RANK / WORLD_SIZE / LOCAL_RANK set by torchrun
    asr-cli train --procs 2 ...                      `spawn_local`: the same, started by us (CPU)
    anything else                                    one process, `Dist()` (rank 0 of 1)

NCCL on CUDA devices, gloo on the CPU. Helpers that reduce over ranks are no-ops in a
single process, so callers never branch on whether a process group exists.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.atomic import os_error_message


@dataclass
class Dist:
    """This process's place among the ranks (torchrun's environment variables)."""

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
    """Join the process group torchrun (or `spawn_local`) asks for; `Dist()` outside one."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist()
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
             int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return d


def run_distributed(fn, cfg):
    """`fn(cfg, d)` inside the process group torchrun asks for (if any), torn down after.
    `cfg.device` picks the backend."""
    d = setup_dist(cfg.device)
    try:
        return fn(cfg, d)
    finally:
        if d.active and dist.is_initialized():
            dist.destroy_process_group()


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
    """"auto" -> CUDA when torch sees one, else the CPU; each rank takes its local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but torch sees no CUDA device")
        if d.active or name == "cuda":
            name = f"cuda:{d.local_rank}"
        torch.cuda.set_device(name)
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA device with bf16, or a CPU with
    AVX512-BF16 or AMX (elsewhere a CPU emulates it, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision name (None: fp32, no autocast). auto: bf16 on a CUDA
    device that has it, else fp32. `fast` (and `auto` on a CPU, for training) is a measured
    choice between fp32 and bf16, made by asr.runtime.precision.choose, which then passes its answer
    here; given to this function directly, `fast` means bf16 where the hardware has it."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and native_bf16(device) else "fp32"
    elif precision == "fast":
        precision = "bf16" if native_bf16(device) else "fp32"
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"--precision must be one of auto, fast, bf16, fp16, fp32, not {precision!r}")
    if precision == "fp32":
        return None
    if device.type != "cuda" and precision != "bf16":
        raise ValueError(f"--precision {precision} needs a CUDA device (training on {device}); a CPU takes bf16")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_threads(d: Dist) -> int:
    """This process's share of the cores it may run on."""
    return max(1, len(os.sched_getaffinity(0)) // d.local_world)


def spawn_local(fn, args: tuple, procs: int) -> None:
    """Run `fn(*args)` in `procs` spawned processes forming one gloo group on this machine,
    as `torchrun --nproc-per-node procs` would. Returns when all have exited; raises
    RuntimeError if one failed. Ctrl-C reaches every process (they handle it themselves)."""
    if "RANK" in os.environ:
        raise ValueError("several local processes cannot be started inside torchrun: use its --nproc-per-node")
    import logging

    import torch.multiprocessing as mp

    # torch logs a warning as it stops the other processes after one failed: our own message says why
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)

    with socket.socket() as sock:  # a free port for the process group's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.start_processes(_spawned, args=(procs, port, fn, args), nprocs=procs, start_method="spawn",
                             join=False)
    while True:
        try:
            if ctx.join():
                return
        except KeyboardInterrupt:  # the ranks got the signal too: they finish and exit
            continue
        except mp.ProcessRaisedException as e:
            last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
            if f"{SpawnedError.__name__}: " in last:  # an error the user can act on: its one line
                raise RuntimeError(last.split(f"{SpawnedError.__name__}: ", 1)[1]) from None
            raise RuntimeError(f"a training process failed:\n{e}") from None
        except mp.ProcessExitedException as e:
            raise RuntimeError(f"a training process died: {e}") from None


class SpawnedError(RuntimeError):
    """A spawned process's error the user can act on (bad input, a full disk, a busy folder),
    carried to the parent as one line instead of a traceback."""


def _spawned(rank: int, procs: int, port: int, fn, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(procs), LOCAL_WORLD_SIZE=str(procs))
    try:
        fn(*args)
    except OSError as e:  # "no space left on <path>", a missing file ...
        raise SpawnedError(os_error_message(e)) from None
    except (ValueError, RuntimeError) as e:  # what asr-cli reports as one line in a single process
        if "\n" in str(e):
            raise  # a traceback inside (a bug in a loader worker): the parent shows it whole
        raise SpawnedError(str(e)) from None
