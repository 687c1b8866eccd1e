"""--precision fast / auto: the faster precision by timing, never by CPU flags (asr/runtime/precision.py)."""

import pytest
import torch

from asr.runtime import precision
from asr.runtime.distributed import Dist, native_bf16


def test_pick_faster_keeps_the_lower_median_whatever_the_order():
    assert precision.pick_faster({"fp32": [0.30, 0.31, 0.90], "bf16": [0.40, 0.41, 0.39]}) == "fp32"
    assert precision.pick_faster({"fp32": [0.50, 0.52, 0.49], "bf16": [0.40, 0.80, 0.38]}) == "bf16"
    # one slow outlier (a load spike) does not flip the choice: the median, not the mean
    assert precision.pick_faster({"fp32": [0.30, 0.30, 5.0], "bf16": [0.35, 0.35, 0.35]}) == "fp32"


def _fake_measure(timings):
    def measure(model, batches, names, device, d, steps=precision.PROBE_STEPS):
        return {n: timings[n] for n in names}
    return measure


@pytest.mark.parametrize("fp32,bf16,expected", [(0.119, 0.087, "bf16"), (0.087, 0.119, "fp32")])
def test_fast_takes_what_the_probe_measured_faster(monkeypatch, fp32, bf16, expected):
    """The Xeon of the issue (bf16 slower) and the EPYC (bf16 faster), timings injected."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    monkeypatch.setattr(precision, "measure", _fake_measure({"fp32": [fp32] * 3, "bf16": [bf16] * 3}))
    cpu = torch.device("cpu")
    for asked in ("fast", "auto"):  # auto on a CPU measures as fast does
        chosen, report = precision.choose(asked, cpu, None, lambda: [], Dist(), max_steps=1000)
        assert chosen == expected and report["measured"]
        slower = "fp32" if expected == "bf16" else "bf16"
        assert report["speedup"] == pytest.approx(max(fp32, bf16) / min(fp32, bf16), rel=1e-2)
        assert report["ms_per_step"][slower] > report["ms_per_step"][expected]
        assert expected in precision.describe(report)


@pytest.mark.parametrize("fp32,bf16,expected", [(0.030, 0.094, "fp32"), (0.094, 0.030, "bf16")])
def test_auto_on_cuda_measures_bf16_against_tf32(monkeypatch, fp32, bf16, expected):
    """CUDA's auto is measured too (bf16 was slower than fp32 for conformer-base at the default
    batch on an H200), and its fp32 is TF32. Timings injected: no GPU needed."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: device.type == "cuda")
    monkeypatch.setattr(precision, "measure", _fake_measure({"fp32": [fp32] * 3, "bf16": [bf16] * 3}))
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        chosen, report = precision.choose("auto", torch.device("cuda"), None, lambda: [], Dist(), max_steps=1000)
        assert chosen == expected and report["measured"] and set(report["ms_per_step"]) == {"fp32", "bf16"}
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    assert precision.candidates("auto", torch.device("cpu")) == ["fp32"]  # no bf16 hardware here: nothing to time


def test_no_probe_without_bf16_short_runs_or_an_explicit_precision(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("probed")
    monkeypatch.setattr(precision, "measure", boom)
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.choose("fast", cpu, None, list, Dist(), 1000)[0] == "fp32"  # nothing to compare
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    chosen, report = precision.choose("fast", cpu, None, list, Dist(), precision.PROBE_MIN_STEPS - 1)
    assert chosen == "fp32" and not report["measured"] and "steps" in report["why"]
    assert precision.choose("bf16", cpu, None, list, Dist(), 1000)[0] == "bf16"
    assert precision.choose("fp32", cpu, None, list, Dist(), 1000)[0] == "fp32"
    with pytest.raises(ValueError, match="--precision"):
        precision.choose("half", cpu, None, list, Dist(), 1000)


@pytest.mark.skipif(not native_bf16(torch.device("cpu")), reason="this CPU has no native bf16: nothing to time")
def test_the_probe_times_real_steps_and_leaves_the_model_as_it_was():
    """A real probe on a tiny model: both precisions timed, weights, buffers and RNG untouched."""
    from asr.data.loader import Batch
    from asr.nets.models import build_model, model_config

    torch.manual_seed(0)
    model = build_model(model_config("ctc", "conformer-tiny", 12, 80))  # has BatchNorm buffers
    feats = torch.randn(2, 120, 80)
    batch = Batch(feats=feats, feat_lens=torch.tensor([120, 90]), targets=torch.tensor([[1, 2, 3], [4, 5, 0]]),
                  target_lens=torch.tensor([3, 2]), texts=["abc", "de"], ids=["a", "b"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    seconds = precision.measure(model, [batch], ["fp32", "bf16"], torch.device("cpu"), Dist(), steps=2)
    assert set(seconds) == {"fp32", "bf16"} and all(len(v) == 2 and min(v) > 0 for v in seconds.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in model.parameters())


def test_a_training_run_probes_on_its_first_batches_and_records_the_choice(shards_dir, tmp_path, monkeypatch):
    """`asr.training.loop.setup` with --precision fast and a run long enough to be worth a probe: the
    probe gets real train batches, its choice sets the autocast dtype and lands in last.pt."""
    from asr.store import checkpoint
    from asr.training import loop as train

    seen = {}

    def fake_measure(model, batches, names, device, d, steps=precision.PROBE_STEPS):
        seen["batches"] = batches
        return {"fp32": [0.2, 0.2, 0.2], "bf16": [0.1, 0.1, 0.1]}

    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    monkeypatch.setattr(precision, "measure", fake_measure)
    cfg = train.TrainConfig(shards=str(shards_dir), out=str(tmp_path / "run"), preset="tiny", precision="fast",
                            max_steps=precision.PROBE_MIN_STEPS, steps_this_run=2, batch_frames=2000,
                            eval_every=0, workers=0, progress=False)
    summary = train.train(cfg)
    assert len(seen["batches"]) == 2 and all(len(b) > 0 and b.feats.ndim == 3 for b in seen["batches"])
    assert summary["precision"]["chosen"] == "bf16" and summary["precision"]["speedup"] == 2.0
    assert checkpoint.load(tmp_path / "run" / "last.pt", train_state=True)["precision"] == "bf16"
    # resumed, the run keeps its precision without probing again
    monkeypatch.setattr(precision, "measure", lambda *a, **k: (_ for _ in ()).throw(AssertionError("probed")))
    again = train.train(train.TrainConfig(**{**cfg.__dict__, "resume": True}))
    assert again["precision"] == {"asked": "fast", "chosen": "bf16", "measured": False, "why": "kept from last.pt"}
