"""Band-limited audio (8 kHz recordings, digital silence) through every codec.

Such audio leaves mel bins at the log floor in almost every frame. Their CMVN std was
1e-2 to 1e-4 nat, so qdelta's rounding (0.0625 nat) became hundreds of standard deviations
after normalisation and the model stopped learning real 8 kHz voices
(`pipeline.featstats` has the account). These tests build the same clips with both codecs
and check what the loader gives the model, and that training goes the same way on both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from asr.data.loader import Utterance, collate
from conftest import LANG
from pipeline.featstats import CMVN_STD_FLOOR, applied_cmvn, dead_bins
from pipeline.shardformat import DATASET, QDELTA_STEP, ShardSet, decode_features, read_dataset, read_samples
from synth.bandlimit import band_limit, band_limited_copy

CODECS = ("qdelta", "float16")
SPLITS = ("train", "dev", "test")
# name -> (sample rate of the recordings, seconds of digital silence in each clip's middle)
KINDS = {"8 kHz": (8000, 0.0), "11.025 kHz": (11025, 0.0), "8 kHz with digital silence": (8000, 1.0),
         "16 kHz with digital silence": (16000, 1.5)}


def _subset(src: Path, dst: Path, train: int, dev: int = 3, test: int = 3) -> Path:
    """A few rows of each split TSV of `src` (clips symlinked): a corpus that builds in seconds."""
    dst.mkdir(parents=True)
    (dst / "clips").symlink_to(src / "clips")
    for name, n in (("train", train), ("dev", dev), ("test", test)):
        lines = (src / f"{name}.tsv").read_text().splitlines()
        (dst / f"{name}.tsv").write_text("\n".join(lines[: n + 1]) + "\n")
    shutil.copy(src / "validated.tsv", dst / "validated.tsv")
    return dst


def _build(cv: Path, out: Path, codec: str) -> Path:
    from pipeline.build import BuildConfig, build

    build(BuildConfig(cv_root=cv, lang=LANG, out=out, jobs=1, progress=False, codec=codec))
    return out


@pytest.fixture(scope="module", params=list(KINDS))
def both_codecs(request, synth_root, tmp_path_factory) -> dict:
    """{codec: shard folder} of the same 14 clips made band-limited as KINDS[param] says."""
    rate, gap = KINDS[request.param]
    root = tmp_path_factory.mktemp("bandlimited")
    small = _subset(synth_root / LANG, root / "small" / LANG, train=8)
    band_limited_copy(small, root / "cv" / LANG, out_rate=rate, gap_s=gap, jobs=1)
    return {"kind": request.param, **{c: _build(root / "cv", root / f"shards-{c}", c) for c in CODECS}}


def _normalised(folder: Path, split: str) -> dict[str, np.ndarray]:
    """id -> features [T, F] as the loader hands them to the model (collate's CMVN)."""
    shards = ShardSet.open(folder)
    mean, std = shards.cmvn
    out = {}
    for s in read_samples(shards.urls(split)):
        batch = collate([Utterance(s["__key__"], decode_features(s), [1], "x")], mean, std)
        out[s["__key__"]] = batch.feats[0].numpy()
    return out


def test_band_limited_features_normalise_alike_under_every_codec(both_codecs):
    kind = both_codecs["kind"]
    for split in ("train", "dev"):
        q, f = (_normalised(both_codecs[c], split) for c in CODECS)
        assert q.keys() == f.keys() and q
        diff = np.concatenate([np.abs(q[k] - f[k]) for k in q]).max(axis=0)  # [F] per bin
        # each value within half a step of float16's, and each CMVN mean too: a step at most,
        # divided by a std of at least 1 nat (before the floor: 625 in the dead bins)
        bound = QDELTA_STEP / 1.0
        assert (diff <= bound + 1e-3).all(), (kind, split, np.flatnonzero(diff > bound), diff.max())
    for codec in CODECS:
        shards = ShardSet.open(both_codecs[codec])
        mean, std = shards.cmvn
        assert np.isfinite(mean).all() and np.isfinite(std).all() and (std >= 1.0).all() and CMVN_STD_FLOOR == 1.0
        train = np.concatenate(list(_normalised(both_codecs[codec], "train").values()))
        assert np.abs(train.mean(axis=0)).max() < 1e-3, (kind, codec)  # the mean of what is stored
        assert train.std(axis=0).max() <= 1.0 + 1e-3, (kind, codec)   # no bin magnified


def test_dead_bins_are_reported_by_the_build_and_by_verify(both_codecs):
    from pipeline.build import format_summary
    from pipeline.verify import verify_folder

    kind = both_codecs["kind"]
    folder = both_codecs["qdelta"]
    dataset = read_dataset(folder)
    for split in ("train", "dev", "test"):
        bins = dataset["splits"][split]["dead_bins"]
        if kind.startswith("16 kHz"):  # silence in the middle kills no bin; soxr's pass band ends at 7.3 kHz
            assert set(bins) <= {78, 79}, (split, bins)
            continue
        # the bins above soxr's pass band (0.9 x half the rate: 3.6 kHz, 5 kHz)
        first = 60 if kind.startswith("8 kHz") else 67
        assert bins and bins == list(range(bins[0], 80)) and abs(bins[0] - first) <= 2, (split, bins)
    problems, warnings = verify_folder(folder, progress=False)
    assert problems == []
    if kind.startswith("16 kHz"):
        assert all("of 80 mel bins (79" in w or "(78-79" in w for w in warnings), warnings
        return
    groups = {split: bins for bins, split in {tuple(dataset["splits"][s]["dead_bins"]): s for s in SPLITS}.items()}
    assert len(warnings) == len({tuple(dataset["splits"][s]["dead_bins"]) for s in SPLITS})  # a line per set
    assert sorted(s for w in warnings for s in w.split(":")[0].split(", ")) == sorted(SPLITS)
    for split, bins in groups.items():
        line = next(w for w in warnings if split in w.split(":")[0])
        assert f"{len(bins)} of 80 mel bins ({bins[0]}-79; " in line and "kHz" in line and "band-limited" in line
    summary = format_summary({**dataset, "run": None})
    assert [line[len("WARNING "):] for line in summary.splitlines() if line.startswith("WARNING")] == warnings


def test_full_band_shards_have_no_dead_bins(shards_dir):
    dataset = read_dataset(shards_dir)
    assert all(dataset["splits"][s]["dead_bins"] == [] for s in ("train", "dev", "test"))
    assert dead_bins(dataset["cmvn"]["std"]) == []


def test_a_folder_built_before_the_floor_is_normalised_with_it(both_codecs, tmp_path):
    """An older dataset.json holds the dead bins' std as measured (1e-4): the loader floors it,
    and a resumed run that recorded either form of it is not refused."""
    from asr.store.checkpoint import resume_differences

    old = tmp_path / "old"
    shutil.copytree(both_codecs["qdelta"], old)
    dataset = json.loads((old / DATASET).read_text())
    dataset["cmvn"]["std"] = [1e-4 if i >= 70 else s for i, s in enumerate(dataset["cmvn"]["std"])]
    (old / DATASET).write_text(json.dumps(dataset))
    mean, std = ShardSet.open(old).cmvn
    assert (std[70:] == CMVN_STD_FLOOR).all() and (std >= 1.0).all() and CMVN_STD_FLOOR == 1.0
    for recorded in (dataset["cmvn"], applied_cmvn(dataset["cmvn"])):
        assert resume_differences({"cmvn": recorded}, {}, dataset) == []
    other = {**dataset["cmvn"], "std": [2.0] * 80}
    assert resume_differences({"cmvn": other}, {}, dataset) == ["the shards' cmvn"]


def test_band_limit_fades_pads_and_keeps_the_band():
    rate = 48000
    t = np.arange(rate) / rate
    wave = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    y = band_limit(wave, rate, 8000, pad_s=0.2, gap_s=0.5)
    assert len(y) == round((1.0 + 0.4 + 0.5) * 8000) and y.dtype == np.float32
    assert not y[:1600].any() and not y[-1600:].any()  # digital silence at each end
    mid = len(y) // 2
    assert not y[mid - 1000:mid + 1000].any()  # and in the middle
    spectrum = np.abs(np.fft.rfft(y[1700:1700 + 2000]))
    freqs = np.fft.rfftfreq(2000, 1 / 8000)
    assert spectrum[np.argmin(np.abs(freqs - 1000))] > 100 * spectrum[freqs > 3800].max()


def test_training_goes_the_same_way_on_both_codecs(synth_root, tmp_path):
    """The same handful of 8 kHz utterances, the same seed: the loss curves of qdelta and
    float16 shards agree. Before the floor, float16's fell from 3.3 to 0.24 in 60 steps and
    qdelta's stopped at 2.6."""
    from asr.data.specaug import SpecAugmentConfig
    from asr.training.loop import TrainConfig, train

    small = _subset(synth_root / LANG, tmp_path / "small" / LANG, train=6, dev=2, test=2)
    band_limited_copy(small, tmp_path / "cv8" / LANG, out_rate=8000, jobs=1)
    curves = {}
    for codec in CODECS:
        shards = _build(tmp_path / "cv8", tmp_path / f"shards-{codec}", codec)
        out = tmp_path / f"run-{codec}"
        train(TrainConfig(shards=str(shards), out=str(out), preset="small", model_options={"dropout": 0.0},
                          dev_split="train", eval_utts=6, max_steps=60, warmup=20, lr=2e-3, min_lr_ratio=0.5,
                          batch_frames=10**5, eval_every=0, workers=0, threads=2, progress=False, log_every=10,
                          weight_decay=0.0, precision="fp32", specaug=SpecAugmentConfig(freq_masks=0, time_masks=0)))
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        curves[codec] = np.array([r["loss"] for r in rows if "loss" in r and "step" in r])
    q, f = curves["qdelta"], curves["float16"]
    assert len(q) == len(f) == 6
    assert f[-1] < 0.2 * f[0], f  # it learns (float16 always did)
    assert q[-1] < 0.2 * q[0], q
    np.testing.assert_allclose(q, f, rtol=0.15, atol=0.05)  # the same curve within run-to-run noise
