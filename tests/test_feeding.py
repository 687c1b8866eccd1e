"""Training that keeps a GPU busy, checked without one: a bounded set of batch shapes, steps
that never read the device back, the batch search against an injected memory function."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from asr.data.loader import Batch, LoaderConfig, ShardStream, Utterance, bucket, collate
from asr.nets.models import build_model, model_config
from asr.runtime import batchsize
from asr.runtime.distributed import Dist
from asr.tokens.tokenizer import CharTokenizer
from asr.training import autobatch
from asr.training.config import TrainConfig, resolved
from asr.training.log import Meter
from asr.training.loop import train_step
from asr.training.run import make_optimizer
from pipeline.shardformat import ShardSet


def _utts(lengths):
    return [Utterance(str(i), np.zeros((n, 4), np.float32), [2, 3], "ab") for i, n in enumerate(lengths)]


def test_pad_to_bounds_the_batch_shapes_and_keeps_the_frame_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 2000, 3000).tolist()
    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    plain = {collate(b, mean, std).feats.shape[1] for b in bucket(_utts(lengths), 20000, 256)}
    shapes = set()
    for b in bucket(_utts(lengths), 20000, 256, pad_to=32):
        batch = collate(b, mean, std, pad_to=32)
        t = batch.feats.shape[1]
        assert t % 32 == 0 and t - 32 < int(batch.feat_lens.max()) <= t  # rounded up, never more than one step
        assert batch.padded_frames <= 20000 or len(b) == 1
        assert torch.all(batch.feats[:, int(batch.feat_lens.max()):] == 0)  # the rounding is zero padding
        shapes.add(tuple(batch.feats.shape[:2]))
    assert len({t for _, t in shapes}) <= math.ceil(2000 / 32) < len(plain)  # hundreds of T values become 63 at most


def test_the_loader_pads_as_configured(shards_dir):
    shards = ShardSet.open(shards_dir)
    cfg = LoaderConfig(batch_frames=3000, workers=0, bucket_pool=16, shuffle_buffer=8, pad_to=64)
    stream = ShardStream(shards.urls("train"), CharTokenizer(shards.vocab), shards.cmvn, cfg, train=True)
    batches = [b for b, _ in zip(stream, range(6))]
    assert batches and all(b.feats.shape[1] % 64 == 0 and b.padded_frames <= 3000 + 64 for b in batches)


def _tiny_run(shards_dir, optimizer_of=make_optimizer, preset="conformer-tiny"):
    from types import SimpleNamespace

    shards = ShardSet.open(shards_dir)
    torch.manual_seed(0)
    model = build_model(model_config("ctc", preset, len(shards.vocab) + 2, 80))
    cfg = TrainConfig(shards="", clip=5.0, lr=1e-2, weight_decay=0.01)
    return SimpleNamespace(model=model, train_model=model, optimizer=optimizer_of(model, cfg),
                           scaler=torch.amp.GradScaler("cuda", enabled=False), amp_dtype=None, d=Dist(),
                           device=torch.device("cpu"), cfg=cfg)


def _batch():
    torch.manual_seed(1)
    return Batch(torch.randn(2, 120, 80), torch.tensor([120, 90]), torch.tensor([[2, 3, 4], [5, 6, 0]]),
                 torch.tensor([3, 2]), ["a", "b"], ["x", "y"])


class _HostReads:
    """Counts the calls that copy a tensor's value to the host (each one waits for a GPU)."""

    NAMES = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def spy(t, *a, _name=name, _original=original, **k):
                self.calls.append(_name)
                return _original(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, spy)


def test_a_step_and_its_meter_read_nothing_back_from_the_device(shards_dir, monkeypatch):
    """The fused optimizer's step: no value of the step goes to the host (a CUDA-less stand-in
    for torch.cuda.set_sync_debug_mode, which bench/bench_gpu.py uses on a GPU. The CTC loss
    itself reads the lengths on CUDA; they are host tensors here, as its kernel wants them. The
    BiRNN presets read packed lengths on the host too: the conformer is checked here.)"""
    run = _tiny_run(shards_dir)
    meter = Meter.__new__(Meter)  # its sums only, no bar
    meter.skipped = torch.zeros(())
    meter.reset()
    batch = _batch()
    reads = _HostReads(monkeypatch)
    results = [train_step(run, batch) for _ in range(3)]
    for r in results:
        meter.add(r, 2, 210, 240)
    assert reads.calls == [], reads.calls
    monkeypatch.undo()
    assert all(bool(r.applied) for r in results) and float(meter.sums["applied"]) == 3
    assert float(meter.sums["loss"]) == pytest.approx(sum(float(r.loss) for r in results))


def test_a_non_finite_batch_is_skipped_on_the_device(shards_dir):
    run = _tiny_run(shards_dir)
    batch = _batch()
    assert bool(train_step(run, batch).applied)
    params = {k: v.clone() for k, v in run.model.state_dict().items()}
    moments = {id(p): {k: v.clone() for k, v in s.items()} for p, s in run.optimizer.state.items()}
    batch.feats[0, 3] = float("nan")
    result = train_step(run, batch)
    assert not bool(result.applied) and not math.isfinite(float(result.grad_norm))
    assert all(torch.equal(params[k], v) for k, v in run.model.state_dict().items())  # weight decay skipped too
    for p, s in run.optimizer.state.items():  # moments and step count as they were
        assert all(torch.equal(moments[id(p)][k], v) for k, v in s.items())
    batch.feats[0, 3] = 0.0
    assert bool(train_step(run, batch).applied)  # and the next finite batch trains again


def test_a_plain_optimizer_still_skips_on_the_host(shards_dir):
    run = _tiny_run(shards_dir, lambda model, cfg: torch.optim.AdamW(model.parameters(), lr=1e-2))
    batch = _batch()
    batch.feats[0, 3] = float("nan")
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    assert not bool(train_step(run, batch).applied)
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())


# --------------------------------------------------------------------------------------
# --batch-frames auto
# --------------------------------------------------------------------------------------
def _linear_memory(fixed: float, per_frame: float, capacity: float):
    """A device whose step needs fixed + per_frame * frames bytes, out of memory past capacity."""
    seen = []

    def peak(frames):
        seen.append(frames)
        need = fixed + per_frame * frames
        return None if need > capacity else need

    return peak, seen


def test_the_search_finds_the_largest_batch_that_fits_the_budget():
    peak, seen = _linear_memory(2e9, 1e5, 40e9)  # 100 kB a frame, 40 GB on the card
    budget = 0.8 * 30e9  # 30 GB free
    frames, used = batchsize.largest_fitting(peak, budget, unit=2016, cap=batchsize.MAX_FRAMES)
    best = max(n * 2016 for n in range(1, 500) if 2e9 + 1e5 * n * 2016 <= budget)
    assert frames == best and used <= budget and used == 2e9 + 1e5 * frames
    assert len(seen) <= 2 * math.ceil(math.log2(batchsize.MAX_FRAMES / 2016)) + 2  # doubling then bisection
    # out of memory before the budget: None counts as too large
    peak, _ = _linear_memory(2e9, 1e5, 10e9)
    frames, _ = batchsize.largest_fitting(peak, budget, 2016, batchsize.MAX_FRAMES)
    assert 2e9 + 1e5 * frames <= 10e9 < 2e9 + 1e5 * (frames + 2016)
    # a huge card stops at the cap
    assert batchsize.largest_fitting(lambda f: 1.0, budget, 2016, 100_000)[0] == 100_000 // 2016 * 2016


@pytest.mark.parametrize("given, expected", [("auto", None), ("AUTO", None), ("20000", 20000), (4000, 4000)])
def test_batch_frames_takes_auto_or_a_number(given, expected):
    assert batchsize.parse(given) == expected
    for bad in ("0", "-3", "big", "1.5"):
        with pytest.raises(ValueError, match="--batch-frames"):
            batchsize.parse(bad)


def test_choose_batch_sizes_scales_the_lr_and_reports(shards_dir):
    shards = ShardSet.open(shards_dir)
    tok = CharTokenizer(shards.vocab)
    cfg = resolved(TrainConfig(shards=str(shards_dir), max_frames=2000))
    peak, _ = _linear_memory(1e9, 2e5, 80e9)
    chosen, report = autobatch.choose_batch(cfg, torch.nn.Linear(1, 1), shards, tok, torch.device("cpu"), Dist(),
                                            lr_given=False, peak=peak, free_bytes=lambda: 50e9)
    assert chosen.batch_frames == report["frames"] and report["searched"] and chosen.batch_frames % 2000 == 0
    assert 1e9 + 2e5 * chosen.batch_frames <= 0.8 * 50e9 < 1e9 + 2e5 * (chosen.batch_frames + 2000)
    ratio = chosen.batch_frames / batchsize.REFERENCE_FRAMES
    assert chosen.lr == pytest.approx(min(cfg.lr * math.sqrt(ratio), batchsize.LR_CAP))
    assert "batch auto" in batchsize.describe(report) and "lr" in batchsize.describe(report)
    kept, _ = autobatch.choose_batch(cfg, torch.nn.Linear(1, 1), shards, tok, torch.device("cpu"), Dist(),
                                     lr_given=True, peak=peak, free_bytes=lambda: 50e9)
    assert kept.lr == cfg.lr and kept.batch_frames == chosen.batch_frames  # a given lr is the user's
    cpu, report = autobatch.choose_batch(cfg, None, shards, tok, torch.device("cpu"), Dist(), lr_given=False)
    assert cpu.batch_frames == batchsize.CPU_FRAMES and cpu.lr == cfg.lr and cpu.pad_to == 1
    assert not report["searched"] and "CPU" in batchsize.describe(report)
    given, _ = autobatch.choose_batch(dataclasses.replace(cfg, batch_frames="8000", pad_to=16), None, shards, tok,
                                      torch.device("cpu"), Dist(), lr_given=False)
    assert (given.batch_frames, given.pad_to, given.lr) == (8000, 16, cfg.lr)


def test_a_resumed_run_keeps_the_batch_it_chose():
    before = dataclasses.asdict(TrainConfig(shards="s", batch_frames=412000, pad_to=32, lr=2.9e-3))
    again = resolved(TrainConfig(shards="s"), before)
    assert (again.batch_frames, again.pad_to, again.lr) == (412000, 32, 2.9e-3)
    assert resolved(TrainConfig(shards="s", batch_frames="9000"), before).batch_frames == "9000"  # given: taken


def test_synthetic_batch_is_the_longest_bucket():
    b = autobatch.synthetic_batch(50000, 2000, 32, 80, 40, 0.12, torch.device("cpu"))
    assert b.feats.shape == (50000 // 2016, 2016, 80) and torch.all(b.feat_lens == 2000)
    assert b.targets.shape[1] == 240 and int(b.targets.min()) >= 2 and int(b.targets.max()) < 40


def test_bench_gpu_runs_its_cpu_configuration(shards_dir, capsys):
    """bench/bench_gpu.py's rows on a CPU: both rates, the step times and the breakdown."""
    import runpy

    from conftest import ROOT

    bench = runpy.run_path(str(ROOT / "bench" / "bench_gpu.py"))
    rows = bench["main"](["--shards", str(shards_dir), "--presets", "tiny", "--steps", "4", "--warmup", "1",
                          "--workers", "0", "--batch-frames", "4000", "--device", "cpu"])
    (row,) = rows
    assert row.preset == "tiny" and row.precision == "fp32" and row.batch_frames == 4000
    assert row.fed_audio_s_per_s > 0 and row.resident_audio_s_per_s > 0 and 0 < row.ratio < 10
    assert row.fed_ms > 0 and row.resident_ms > 0 and 0 <= row.wait_ms < row.fed_ms
    assert row.syncs_per_step is None and row.peak_gib is None and row.shapes >= 1  # a CPU: not measurable
    out = capsys.readouterr().out
    assert "fed/res" in out and "CPU, 4 steps a row" in out


def test_a_large_batch_gets_a_bucket_pool_of_several_batches(shards_dir):
    """An auto batch of hundreds of utterances cut from a pool of 1,000 would be one or two
    batches spanning every length: mostly padding. The pool grows with the batch."""
    from asr.data.loader import POOL_BATCHES, make_loader

    shards = ShardSet.open(shards_dir)
    mean = shards.frames("train") / shards.split("train")["utterances"]
    tok = CharTokenizer(shards.vocab)
    small = make_loader(shards, "train", tok, LoaderConfig(batch_frames=3000, workers=0, bucket_pool=4), train=False)
    large = make_loader(shards, "train", tok, LoaderConfig(batch_frames=400_000, workers=0, bucket_pool=4,
                                                           max_batch=10**6), train=False)
    assert small.dataset.cfg.bucket_pool == max(4, math.ceil(POOL_BATCHES * 3000 / mean))
    assert large.dataset.cfg.bucket_pool == math.ceil(POOL_BATCHES * 400_000 / mean) > 1000
