"""Run and shard folders under stress: one owner at a time (an OS lock, released on a crash),
a full disk (a small tmpfs where one can be mounted, a patched write path everywhere), a
read-only output folder. Every failure is one line, exit 1, no `*.tmp` left, previous outputs
byte-identical."""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import asr.nets.models  # noqa: F401  (registers the builder checkpoint.load checks a config with)
from asr.store import checkpoint
from asr.training import log as trainlog
from cli import app
from conftest import LANG, ROOT
from pipeline import atomic, shardtar
from pipeline.lock import LOCK_FILE, FolderLock, LockedError, holder_pid
from pipeline.verify import verify

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ENOSPC_RE = "no space left on {}"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def start_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for_lock(folder: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until `proc` holds `folder` (the holder writes its pid once it has the lock)."""
    deadline = time.time() + timeout
    while holder_pid(folder) != proc.pid:
        assert proc.poll() is None, f"exited early: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, "the first process never took the lock"
        time.sleep(0.2)


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from pipeline.lock import FolderLock
lock = FolderLock({folder!r}, {command!r}).acquire()
print("held", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def holder(folder: Path, command: str):
    """Another process holding `folder`'s lock for the block (killed with SIGKILL after it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), folder=str(folder),
                                                                 command=command)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (the lock file aside: it holds the last owner's pid)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def tmp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(f"*{atomic.TMP_SUFFIX}"))


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Take every free byte of `folder`'s file system; remove the returned file to give them back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def disk_full_open(real=builtins.open):
    """An `open` whose writers fail as on a full disk, after leaving a few bytes behind."""
    def fake(file, mode="r", *args, **kwargs):
        if not any(c in mode for c in "wax"):
            return real(file, mode, *args, **kwargs)
        with real(file, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    return fake


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stderr


def train_args(shards: Path, out: Path, *more) -> list:
    return ["train", "--shards", shards, "--out", out, "--preset", "tiny", "--batch-frames", 3000, "--warmup", 2,
            "--eval-utts", 4, "--workers", 0, "--threads", 1, "--no-progress", "--device", "cpu", *more]


def shards_args(cv_root: Path, out: Path, *more) -> list:
    return ["shards", "--cv-root", cv_root, "--lang", LANG, "--out", out, "--jobs", 1, "--shard-size", 8,
            "--max-duration", 15, "--no-progress", *more]


def metric_steps(out: Path) -> tuple[list[int], list[int]]:
    """(steps of the training rows, steps of the dev rows) of metrics.jsonl."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r], [r["step"] for r in rows if "dev_cer" in r]


# --------------------------------------------------------------------------------------
# 1. one owner per folder
# --------------------------------------------------------------------------------------
def test_second_train_into_a_busy_run_folder_stops_and_a_killed_owner_frees_it(shards_dir, tmp_path):
    out = tmp_path / "run"
    first = start_cli(*train_args(shards_dir, out, "--max-steps", 100000, "--eval-every", 0, "--log-every", 1,
                                  "--seed", 1))
    try:
        wait_for_lock(out, first)
        while not (out / "metrics.jsonl").is_file():  # training
            assert first.poll() is None, first.stderr.read()[-2000:]
            time.sleep(0.2)
        started = time.time()
        second = cli(*train_args(shards_dir, out, "--max-steps", 3, "--eval-every", 0, "--log-every", 1,
                                 "--seed", 2))
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"{out} is in use by another asr-cli train (pid {first.pid}); wait for it or choose another --out" \
            in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert time.time() - started < 60
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the OS drops the lock
        first.wait()
    train_steps, _ = metric_steps(out)
    assert train_steps == list(range(1, len(train_steps) + 1))  # one run's rows only
    assert not (out / "last.pt").exists()
    # the killed run left rows but no checkpoint: a new run there asks for --force, then starts over
    refused = cli(*train_args(shards_dir, out, "--max-steps", 2, "--eval-every", 0))
    assert refused.returncode == 1 and "pass --force to start over" in refused.stderr, refused.stderr[-2000:]
    third = cli(*train_args(shards_dir, out, "--max-steps", 2, "--eval-every", 0, "--force"))
    assert third.returncode == 0, third.stderr[-2000:]
    assert checkpoint.load(out / "last.pt")["position"]["step"] == 2


def test_train_with_procs_2_into_a_busy_folder_stops_at_once(shards_dir, tmp_path):
    out = tmp_path / "run"
    with holder(out, "train") as other:
        started = time.time()
        proc = cli(*train_args(shards_dir, out, "--max-steps", 4, "--procs", 2), timeout=120)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert f"{out} is in use by another asr-cli train (pid {other.pid})" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert time.time() - started < 60
    assert not (out / "last.pt").exists() and not (out / "metrics.jsonl").exists()
    # free again: the parent holds the lock, its rank 0 writes in the folder on its behalf
    proc = cli(*train_args(shards_dir, out, "--max-steps", 2, "--eval-every", 0, "--procs", 2))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert checkpoint.load(out / "last.pt")["position"]["step"] == 2


def test_torchrun_ranks_all_stop_when_rank_0_cannot_lock(shards_dir, tmp_path):
    out = tmp_path / "run"
    with holder(out, "train") as other:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29743",
               str(ROOT / "cli.py"), *map(str, train_args(shards_dir, out, "--max-steps", 4))]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=180)  # no hang
        assert proc.returncode != 0
        assert f"{out} is in use by another asr-cli train (pid {other.pid})" in proc.stdout + proc.stderr
        assert "rank 0 could not take the run folder's lock" in proc.stdout + proc.stderr  # rank 1 stopped too
    assert not (out / "last.pt").exists()


def test_second_shards_build_into_a_busy_folder_stops(broken_root, shards_dir, tmp_path):
    out = tmp_path / LANG
    first = start_cli(*shards_args(broken_root, out))
    try:
        wait_for_lock(out, first)
        os.kill(first.pid, signal.SIGSTOP)  # frozen while holding the folder
        second = cli(*shards_args(broken_root, out), timeout=120)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"{out} is in use by another asr-cli shards (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert verify(out, progress=False) == []
    assert {k: v for k, v in hashes(out).items() if k.endswith(".tar")} == \
        {k: v for k, v in hashes(shards_dir).items() if k.endswith(".tar")}


def test_eval_into_a_busy_output_folder_stops(tiny_ctc, shards_dir, tmp_path):
    out = tmp_path / "eval"
    with holder(out, "eval") as other:
        code, err = invoke("eval", "--checkpoint", tiny_ctc, "--shards", shards_dir, "--split", "dev",
                           "--out", out, "--no-progress", "--device", "cpu", "--workers", 0)
        assert code == 1
        assert f"{out} is in use by another asr-cli eval (pid {other.pid})" in err
    assert hashes(out) == {}


def test_the_lock_is_released_when_its_owner_is_killed(tmp_path):
    with holder(tmp_path, "shards") as other:
        with pytest.raises(LockedError, match=rf"in use by another asr-cli shards \(pid {other.pid}\)"):
            FolderLock(tmp_path, "shards").acquire()
    with FolderLock(tmp_path, "shards"):  # holder() ended it with SIGKILL
        assert holder_pid(tmp_path) == os.getpid()


# --------------------------------------------------------------------------------------
# 5. a read-only --out
# --------------------------------------------------------------------------------------
def test_shards_out_on_a_read_only_file_system(broken_root, tmp_path):
    ro = tmp_path / "ro"
    with tmpfs(ro, "1m", read_only=True):
        proc = cli(*shards_args(broken_root, ro / LANG), timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"cannot write to {ro / LANG}: read-only file system"


def test_shards_out_read_only_patched(broken_root, tmp_path, monkeypatch):
    out = tmp_path / LANG
    out.mkdir()
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(out)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, err = invoke(*shards_args(broken_root, out))
    assert code == 1
    assert err.strip() == f"cannot write to {out}: read-only file system"


# --------------------------------------------------------------------------------------
# 6. a full disk
# --------------------------------------------------------------------------------------
def _check_shards_untouched(out: Path, before: dict, err: str) -> None:
    assert re.search(ENOSPC_RE.format(re.escape(str(out))) + r"/\S+", err), err
    assert len(err.strip().splitlines()) == 1
    assert tmp_files(out) == []
    assert hashes(out) == before


def test_shards_on_a_full_disk_patched(broken_root, shards_dir, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / LANG
    shutil.copytree(shards_dir, out)
    before = hashes(out)
    monkeypatch.setattr(shardtar, "open", disk_full_open(), raising=False)  # the tar writer's
    monkeypatch.setattr(atomic, "open", disk_full_open(), raising=False)  # everything else's
    code, err = invoke(*shards_args(broken_root, out, "--seed", 1))  # another train plan: new shards
    assert code == 1
    _check_shards_untouched(out, before, err)
    assert f"no space left on {out}/train/train-000000.tar" in err


def test_shards_on_a_full_tmpfs(broken_root, shards_dir, tmp_path):
    import shutil

    mnt = tmp_path / "mnt"
    size_kb = sum(p.stat().st_size for p in shards_dir.rglob("*") if p.is_file()) // 1024 + 2048
    with tmpfs(mnt, f"{size_kb}k"):
        out = mnt / LANG
        shutil.copytree(shards_dir, out)
        before = hashes(out)
        fill(mnt)
        # the space check refuses at once, in one line, before writing anything
        proc = cli(*shards_args(broken_root, out, "--seed", 1))
        assert proc.returncode == 1, proc.stdout[-1000:]
        assert len(proc.stderr.strip().splitlines()) == 1 and "--no-space-check" in proc.stderr, proc.stderr
        assert tmp_files(out) == [] and hashes(out) == before
        # past it, a build that runs out of space mid-way still stops cleanly
        proc = cli(*shards_args(broken_root, out, "--seed", 1, "--no-space-check"))
        assert proc.returncode == 1, proc.stdout[-1000:]
        _check_shards_untouched(out, before, proc.stderr)


def _eval_args(ckpt: Path, shards: Path, out: Path) -> list:
    return ["eval", "--checkpoint", ckpt, "--shards", shards, "--split", "dev", "--out", out, "--no-progress",
            "--device", "cpu", "--workers", 0, "--threads", 1]


def test_eval_on_a_full_disk_patched(tiny_ctc, shards_dir, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    assert invoke(*_eval_args(tiny_ctc, shards_dir, out))[0] == 0
    before = hashes(out)
    assert set(before) == {"utterances.jsonl", "summary.json"}
    monkeypatch.setattr(atomic, "open", disk_full_open(), raising=False)
    code, err = invoke(*_eval_args(tiny_ctc, shards_dir, out))
    assert code == 1
    assert err.strip() == f"no space left on {out}/utterances.jsonl"
    assert tmp_files(out) == [] and hashes(out) == before


def test_eval_on_a_full_tmpfs(tiny_ctc, shards_dir, tmp_path):
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "1m"):
        out = mnt / "eval"
        assert invoke(*_eval_args(tiny_ctc, shards_dir, out))[0] == 0
        before = hashes(out)
        fill(mnt)
        proc = cli(*_eval_args(tiny_ctc, shards_dir, out))
        assert proc.returncode == 1
        assert proc.stderr.strip() == f"no space left on {out}/utterances.jsonl"
        assert tmp_files(out) == [] and hashes(out) == before


def _checkpoints(out: Path) -> dict:
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("last.pt", "best.pt")}


def _check_resumed_metrics(out: Path, steps: int, every: int) -> None:
    """metrics.jsonl after a failed resume and a good one: each step's rows once, in order."""
    train_steps, dev_steps = metric_steps(out)
    assert train_steps == list(range(1, steps + 1))
    assert dev_steps == list(range(every, steps + 1, every))


def test_train_resume_on_a_full_disk_patched(shards_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert invoke(*train_args(shards_dir, out, "--max-steps", 4, "--eval-every", 2, "--log-every", 1))[0] == 0
    before = _checkpoints(out)
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "open", disk_full_open(), raising=False)  # torch.save's file
        code, err = invoke(*train_args(shards_dir, out, "--max-steps", 8, "--eval-every", 2, "--log-every", 1,
                                       "--resume"))
    assert code == 1
    assert err.strip() == f"no space left on {out}/last.pt"
    assert tmp_files(out) == [] and _checkpoints(out) == before
    assert checkpoint.load(out / "last.pt")["position"]["step"] == 4
    assert max(metric_steps(out)[0]) == 6  # the failed run logged past the checkpoint
    assert invoke(*train_args(shards_dir, out, "--max-steps", 8, "--eval-every", 2, "--log-every", 1,
                              "--resume"))[0] == 0
    _check_resumed_metrics(out, 8, 2)


def test_train_resume_on_a_full_tmpfs(shards_dir, tmp_path):
    mnt = tmp_path / "mnt"
    with tmpfs(mnt, "16m"):
        out = mnt / "run"
        args = train_args(shards_dir, out, "--eval-every", 2, "--log-every", 1)
        first = cli(*args, "--max-steps", 4)
        assert first.returncode == 0, first.stderr[-2000:]
        before = _checkpoints(out)
        filler = fill(mnt)
        proc = cli(*args, "--max-steps", 8, "--resume")
        assert proc.returncode == 1
        assert re.fullmatch(ENOSPC_RE.format(re.escape(str(out))) + r"/\S+", proc.stderr.strip()), proc.stderr
        assert tmp_files(out) == [] and _checkpoints(out) == before
        assert checkpoint.load(out / "best.pt")["position"]["step"] in (2, 4)
        filler.unlink()
        again = cli(*args, "--max-steps", 8, "--resume")
        assert again.returncode == 0, again.stderr[-2000:]
        _check_resumed_metrics(out, 8, 2)


def test_append_line_never_leaves_half_a_line(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    atomic.append_line(log, '{"step": 1}')
    real_write = os.write

    def short_then_full(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OSError) as e:
        atomic.append_line(log, '{"step": 2}')
    assert atomic.os_error_message(e.value) == f"no space left on {log}"
    assert log.read_text() == '{"step": 1}\n'


def test_trim_log_drops_rows_past_the_checkpoint(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2, "dev_cer": 0.5}\n{"step": 3}\n{"ste')
    assert trainlog.trim_log(log, 2) == 2
    assert log.read_text() == '{"step": 1}\n{"step": 2, "dev_cer": 0.5}\n'
    assert tmp_files(tmp_path) == []


def test_a_command_that_fails_early_leaves_no_folder_behind(tmp_path):
    """The lock made the folder; nothing was written in it: released, it goes away. A folder
    that existed before, or that holds results, stays."""
    new = tmp_path / "new" / "run"
    with FolderLock(new, "eval"):
        assert (new / LOCK_FILE).is_file()
    assert not new.exists() and (tmp_path / "new").is_dir()
    with FolderLock(new, "eval"):
        (new / "summary.json").write_text("{}")
    assert (new / "summary.json").is_file()
    old = tmp_path / "old"
    old.mkdir()
    with FolderLock(old, "train"):
        pass
    assert old.is_dir()
