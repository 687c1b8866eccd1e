"""The training loop: overfitting, exact resume, DDP with gloo, non-finite batches, signals."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from asr.data.loader import Batch
from asr.data.specaug import SpecAugmentConfig
from asr.nets.models import CTC_PRESETS, build_model, model_config
from asr.runtime.distributed import Dist
from asr.store import checkpoint
from asr.training.loop import TrainConfig, train, train_step
from conftest import ROOT
from pipeline.shardformat import FEATS, FEATS_QDELTA, ShardSet, decode_features

NO_AUG = SpecAugmentConfig(freq_masks=0, time_masks=0)


def test_small_model_overfits_a_handful_of_utterances(handful_shards, tmp_path):
    out = tmp_path / "overfit"
    summary = train(TrainConfig(
        shards=str(handful_shards), out=str(out), preset="small", model_options={"dropout": 0.0},
        dev_split="train", eval_utts=6, max_steps=200, warmup=20, lr=2e-3, min_lr_ratio=0.5,
        batch_frames=10**5, eval_every=0, workers=0, progress=False, specaug=NO_AUG, weight_decay=0.0))
    assert summary["dev"]["utterances"] == 6
    assert summary["dev"]["cer"] < 0.05, summary["dev"]
    ckpt = checkpoint.load(out / "best.pt")
    assert ckpt["metrics"]["cer"] == summary["dev"]["cer"]


def _state(path: Path) -> dict:
    return checkpoint.load(path)["state_dict"]


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(shards_dir, tmp_path):
    common = dict(shards=str(shards_dir), preset="tiny", model_options={"dropout": 0.2}, max_steps=12,
                  warmup=3, batch_frames=2500, eval_every=4, eval_utts=4, workers=0, progress=False, seed=3)
    straight = train(TrainConfig(out=str(tmp_path / "a"), **common))
    assert straight["step"] == 12

    first = train(TrainConfig(out=str(tmp_path / "b"), steps_this_run=5, **common))
    assert first["step"] == 5 and first["stopped_by"] == "steps_this_run"
    with pytest.raises(FileExistsError, match="--resume"):
        train(TrainConfig(out=str(tmp_path / "b"), **common))
    resumed = train(TrainConfig(out=str(tmp_path / "b"), resume=True, **common))
    assert resumed["step"] == 12

    a, b = _state(tmp_path / "a" / "last.pt"), _state(tmp_path / "b" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    pos_a = checkpoint.load(tmp_path / "a" / "last.pt")["position"]
    pos_b = checkpoint.load(tmp_path / "b" / "last.pt")["position"]
    assert pos_a == pos_b


def test_torchrun_two_cpu_ranks_stay_in_step(shards_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
           str(ROOT / "cli.py"), "train", "--shards", str(shards_dir), "--out", str(out), "--preset", "tiny",
           "--max-steps", "6", "--warmup", "2", "--batch-frames", "2500", "--eval-every", "3",
           "--eval-utts", "4", "--workers", "1", "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = [json.loads((out / "ranks" / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in reports] == [2, 2]
    assert reports[0]["batches"] == reports[1]["batches"] == 6
    assert reports[0]["parameters_sha256"] == reports[1]["parameters_sha256"]
    assert reports[0]["utterances"] > 0 and reports[1]["utterances"] > 0
    ckpt = checkpoint.load(out / "last.pt")
    assert ckpt["position"]["step"] == 6 and len(ckpt["rng"]) == 2


def _poison_first_train_shard(shards_dir: Path, dst: Path) -> int:
    """Copy the shards with the features of the first two utterances of the first train shard set
    to +inf (not all of them: an epoch whose every batch is skipped now stops the run);
    -> utterances poisoned."""
    shutil.copytree(shards_dir, dst)
    dataset = json.loads((dst / "dataset.json").read_text())
    tar_path = dst / dataset["splits"]["train"]["shards"][0]["path"]
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(tar_path, "w") as tar:
        poisoned = 0
        for m, data in members:
            if m.name.endswith(f".{FEATS_QDELTA}") and poisoned < 2:
                # qdelta cannot hold inf: the sample becomes a float16 one (readers decode any codec by its member)
                poisoned += 1
                arr = np.full(decode_features({FEATS_QDELTA: data}).shape, np.inf, np.float16)
                buf = io.BytesIO()
                np.save(buf, arr)
                data = buf.getvalue()
                m.name, m.size = m.name[: -len(FEATS_QDELTA)] + FEATS, len(data)
            tar.addfile(m, io.BytesIO(data))
    return poisoned


def test_non_finite_batches_are_skipped_and_counted(shards_dir, tmp_path):
    poisoned = tmp_path / "poisoned"
    assert _poison_first_train_shard(shards_dir, poisoned) == 2
    summary = train(TrainConfig(shards=str(poisoned), out=str(tmp_path / "run"), preset="tiny", max_steps=12,
                                warmup=2, batch_frames=2500, eval_every=0, eval_utts=4, workers=0,
                                progress=False, log_every=1))
    assert 1 <= summary["skipped_batches"] < 12
    state = _state(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(l.get("skipped_batches", 0) >= 1 for l in lines)


def test_train_step_leaves_parameters_alone_on_a_nan_batch(shards_dir):
    shards = ShardSet.open(shards_dir)
    model = build_model(model_config("ctc", "tiny", len(shards.vocab) + 2, 80))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    feats = torch.randn(2, 120, 80)
    batch = Batch(feats, torch.tensor([120, 90]), torch.tensor([[2, 3, 4], [5, 6, 0]]), torch.tensor([3, 2]))
    # what train_step reads of a Run
    run = SimpleNamespace(model=model, train_model=model, optimizer=opt, scaler=scaler, amp_dtype=None, d=Dist(),
                          device=torch.device("cpu"), cfg=TrainConfig(shards="", clip=5.0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_step(run, batch)
    assert result.applied and np.isfinite(float(result.loss)) and np.isfinite(float(result.grad_norm)) and result.parts == {}
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch.feats[0, 3] = float("nan")
    result = train_step(run, batch)
    assert not result.applied and np.isnan(float(result.loss))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(shards_dir, tmp_path):
    out = tmp_path / "term"
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", "--shards", str(shards_dir), "--out", str(out),
           "--preset", "tiny", "--max-steps", "100000", "--batch-frames", "2500", "--eval-every", "0",
           "--eval-utts", "4", "--workers", "0", "--no-progress", "--log-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert "signal" in stdout
    ckpt = checkpoint.load(out / "last.pt")
    assert 0 < ckpt["position"]["step"] < 100000


def test_specaugment_starts_at_specaug_start(shards_dir, tmp_path, monkeypatch):
    import asr.training.run as train_module  # where a run's SpecAugment is made (setup)
    from asr.data.specaug import SpecAugment

    steps = []

    class Spy(SpecAugment):
        def forward(self, feats, lengths, masks=True):
            steps.append(masks)
            return super().forward(feats, lengths, masks)

    monkeypatch.setattr(train_module, "SpecAugment", Spy)
    summary = train(TrainConfig(shards=str(shards_dir), out=str(tmp_path / "aug"), preset="tiny", max_steps=7,
                                warmup=2, batch_frames=2500, eval_every=0, eval_utts=2, workers=0, progress=False,
                                specaug_start=4))
    assert summary["step"] == 7
    assert steps == [False] * 4 + [True] * 3  # masks on steps 4, 5 and 6 of 0..6


def test_ctc_head_with_two_output_frames_per_encoder_frame(shards_dir):
    shards = ShardSet.open(shards_dir)
    conf = model_config("ctc", "tiny", len(shards.vocab) + 2, 80, {"upsample": 2})
    model = build_model(conf)
    plain = build_model(model_config("ctc", "tiny", len(shards.vocab) + 2, 80))
    feats, lengths = torch.randn(3, 101, 80), torch.tensor([101, 80, 33])
    lp, out_lengths = model.log_probs(feats, lengths)
    _, plain_lengths = plain.log_probs(feats, lengths)
    assert torch.equal(out_lengths, 2 * plain_lengths) and lp.shape[1] == 2 * int(plain_lengths.max())
    assert torch.allclose(lp.exp().sum(-1), torch.ones(lp.shape[:2]), atol=1e-5)
    batch = Batch(feats, lengths, torch.tensor([[2, 3, 4], [5, 6, 0], [7, 0, 0]]), torch.tensor([3, 2, 1]),
                  ["a", "b", "c"], ["x", "y", "z"])
    loss = model(batch)["loss"]
    assert torch.isfinite(loss) and loss.item() > 0


def test_learning_rate_anneals_by_steps_or_time_whichever_is_further():
    from asr.training.loop import lr_factor

    cfg = TrainConfig(shards="x", max_steps=1000, warmup=100, min_lr_ratio=0.02)
    assert lr_factor(49, cfg) == pytest.approx(0.5)  # warm-up
    assert lr_factor(100, cfg) == pytest.approx(1.0)
    assert lr_factor(550, cfg) == pytest.approx(0.02 + 0.98 * 0.5)  # half-way through the cosine
    assert lr_factor(1000, cfg) == pytest.approx(0.02)
    # the clock ahead of the steps: it sets the decay, and a spent budget ends at min_lr_ratio
    assert lr_factor(200, cfg, time_fraction=0.5) == pytest.approx(0.02 + 0.98 * 0.5)
    assert lr_factor(200, cfg, time_fraction=1.0) == pytest.approx(0.02)
    # the steps ahead of the clock: the steps set it
    assert lr_factor(550, cfg, time_fraction=0.1) == pytest.approx(lr_factor(550, cfg))


def test_an_error_in_a_spawned_rank_is_one_line(shards_dir, tmp_path):
    """`--procs 2`: a rank's error the user can act on reaches the terminal as its one line."""
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", "--shards", str(shards_dir), "--out", str(tmp_path / "r"),
           "--preset", "bogus", "--max-steps", "2", "--procs", "2", "--workers", "0", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    # every rank fails the same way (a rank's failure can also surface on another as a lost
    # connection: an error every rank meets keeps the test independent of which one torch reports)
    assert proc.stderr.strip() == f"unknown ctc preset 'bogus' (choose from {', '.join(CTC_PRESETS)})", proc.stderr[-2000:]


def test_bf16_autocast_on_a_cpu(shards_dir, tmp_path):
    """--precision bf16 trains on a CPU (fast picks it where the CPU has AVX512-BF16 / AMX):
    the forward runs in bf16 (its losses differ from fp32's), the weights stay fp32."""
    from asr.runtime.distributed import autocast_dtype, native_bf16

    cpu = torch.device("cpu")
    assert autocast_dtype("bf16", cpu) is torch.bfloat16 and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("fast", cpu) is (torch.bfloat16 if native_bf16(cpu) else None)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ValueError, match="must be one of auto, fast, bf16, fp16, fp32, not 'half'"):
        autocast_dtype("half", cpu)
    common = dict(shards=str(shards_dir), preset="tiny", max_steps=6, warmup=2, batch_frames=2500, eval_every=0,
                  eval_utts=4, workers=0, progress=False, seed=3, log_every=1, device="cpu")
    losses = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        summary = train(TrainConfig(out=str(out), precision=precision, **common))
        assert summary["step"] == 6 and np.isfinite(summary["dev"]["loss"])
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[precision] = [r["loss"] for r in rows if "loss" in r]
        assert len(losses[precision]) == 6 and all(np.isfinite(losses[precision]))
        assert {v.dtype for v in _state(out / "last.pt").values() if v.is_floating_point()} == {torch.float32}
    assert losses["fp32"][0] != losses["bf16"][0]  # the same batch and weights: autocast did run in bf16
    assert losses["bf16"][0] == pytest.approx(losses["fp32"][0], rel=0.05)
