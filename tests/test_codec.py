"""The feature codecs of the shard format: qdelta's round trip and its stated error, old
float16 folders still loading and verifying, and a damaged compressed sample caught by
verify and by the loader with the usual one-line error."""

from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest

from asr.data.loader import LoaderConfig, ShardStream
from asr.tokens.tokenizer import CharTokenizer
from pipeline.audio import compute_features
from pipeline.shardformat import (CODEC_MEMBER, DATASET, FEATS_QDELTA, QDELTA_STEP, FeatureDecodeError, ShardReadError,
                                  ShardSet, dataset_codec, decode_features, encode_features, estimate_sample_bytes,
                                  read_dataset, read_samples)
from pipeline.verify import verify

LANG = "fr"


def roundtrip(feats: np.ndarray) -> np.ndarray:
    ext, data = encode_features(feats, "qdelta")
    assert ext == FEATS_QDELTA
    return decode_features({ext: memoryview(data)})


def test_qdelta_round_trip_is_within_half_a_step_on_random_features():
    rng = np.random.default_rng(0)
    # log-Mel-like values, then the hard cases: jumps that need escapes, the log floor, +-200
    feats = rng.normal(-4, 3, (300, 80)).astype(np.float32)
    feats[::7] += rng.normal(0, 40, (43, 80)).astype(np.float32)
    feats[5] = np.log(1e-6)
    feats[6] = 200.0
    feats[7] = -200.0
    out = roundtrip(feats)
    assert out.dtype == np.float32 and out.shape == feats.shape
    assert np.abs(out - feats).max() <= QDELTA_STEP / 2 + 1e-5
    # every decoded value is a multiple of the step: exactly what float16 holds too
    assert np.array_equal(out, np.rint(feats / QDELTA_STEP) * QDELTA_STEP)
    for shape in ((1, 80), (2, 3)):  # one frame, a tiny matrix
        small = rng.normal(0, 5, shape).astype(np.float32)
        assert np.abs(roundtrip(small) - small).max() <= QDELTA_STEP / 2 + 1e-6


def test_qdelta_float16_lookup_equals_the_float32_path():
    """The pipeline hands float16 features, quantised through a table; they must give the
    same codes as the same values in float32."""
    rng = np.random.default_rng(1)
    f16 = rng.normal(-3, 4, (200, 80)).astype(np.float16)
    assert encode_features(f16, "qdelta") == encode_features(f16.astype(np.float32), "qdelta")


def test_qdelta_refuses_non_finite_features():
    for bad in (np.nan, np.inf):
        feats = np.zeros((10, 80), np.float16)
        feats[3, 4] = bad
        with pytest.raises(ValueError, match="non-finite"):
            encode_features(feats, "qdelta")
        with pytest.raises(ValueError, match="non-finite"):
            encode_features(feats.astype(np.float32), "qdelta")


def test_qdelta_on_real_features_is_smaller_and_within_its_error(synth_root):
    clips = sorted((synth_root / LANG / "clips").glob("*.mp3"))[:8]
    f16_bytes = q_bytes = 0
    for clip in clips:
        feats, _ = compute_features(clip)
        out = roundtrip(feats)
        assert np.abs(out - feats.astype(np.float32)).max() <= QDELTA_STEP / 2
        f16_bytes += len(encode_features(feats, "float16")[1])
        q_bytes += len(encode_features(feats, "qdelta")[1])
        assert abs(len(encode_features(feats, "qdelta")[1]) + 1024 - estimate_sample_bytes(
            feats.shape[0], feats.shape[1], "qdelta", 0)) < 0.25 * q_bytes  # the estimate is of this order
    assert q_bytes < 0.45 * f16_bytes, (q_bytes, f16_bytes)


def test_damaged_qdelta_features_raise_one_clear_error():
    feats = np.random.default_rng(2).normal(-4, 3, (100, 80)).astype(np.float16)
    _, data = encode_features(feats, "qdelta")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    for bad, match in ((data[: len(data) - 7], "CRC32"), (bytes(flipped), "CRC32"), (data[:10], "header"),
                       (b"XXXX" + data[4:], "magic")):
        with pytest.raises(FeatureDecodeError, match=match):
            decode_features({FEATS_QDELTA: bad})
    with pytest.raises(FeatureDecodeError, match="no features"):
        decode_features({"json": b"{}"})


def _rewrite_member(tar_path, member_ext: str, damage) -> str:
    """Rewrite the tar with the first `member_ext` member damaged by `damage(bytes)`: its key."""
    with tarfile.open(tar_path) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    key = None
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as t:
        for m, data in members:
            if key is None and m.name.endswith("." + member_ext):
                key, data = m.name.split(".")[0], damage(data)
                m.size = len(data)
            import io
            t.addfile(m, io.BytesIO(data))
    return key


@pytest.mark.parametrize("damage, what", [(lambda d: d[:-9], "truncated"),
                                          (lambda d: d[:40] + bytes([d[40] ^ 1]) + d[41:], "bit-flipped")])
def test_a_damaged_compressed_sample_is_caught_by_verify_and_the_loader(shards_dir, tmp_path, damage, what):
    assert dataset_codec(read_dataset(shards_dir)) == "qdelta"  # the default codec of a build
    root = tmp_path / "shards"
    shutil.copytree(shards_dir, root)
    tar = root / read_dataset(root)["splits"]["train"]["shards"][0]["path"]
    key = _rewrite_member(tar, FEATS_QDELTA, damage)
    problems = [p for p in verify(root, progress=False) if key in p]
    assert len(problems) == 1 and "unreadable" in problems[0] and "CRC32" in problems[0], problems

    shards = ShardSet.open(root)
    stream = ShardStream([str(tar)], CharTokenizer(shards.vocab), shards.cmvn, LoaderConfig(workers=0), train=False)
    with pytest.raises(ShardReadError) as e:
        list(stream)
    text = str(e.value)
    assert "\n" not in text and key in text and "CRC32" in text and "asr-cli shards verify" in text


def test_an_old_float16_folder_loads_and_verifies(broken_root, tmp_path):
    """A folder from before codecs: float16 members, no `feature_codec` in dataset.json."""
    from pipeline.build import BuildConfig, build

    out = tmp_path / "old"
    build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=1, shard_size=8, progress=False,
                      max_duration=15.0, codec="float16"))
    dataset = json.loads((out / DATASET).read_text())
    assert dataset.pop("feature_codec") == "float16"
    (out / DATASET).write_text(json.dumps(dataset))
    assert dataset_codec(read_dataset(out)) == "float16"
    assert verify(out, progress=False) == []
    shards = ShardSet.open(out)
    urls = shards.urls("train")
    sample = next(iter(read_samples(urls[:1])))
    assert set(sample) - {"__key__", "__url__"} == {CODEC_MEMBER["float16"], "json"}
    batches = list(ShardStream(urls, CharTokenizer(shards.vocab), shards.cmvn, LoaderConfig(workers=0), train=False))
    assert sum(len(b.ids) for b in batches) == shards.split("train")["utterances"]
    assert all(np.isfinite(b.feats.numpy()).all() for b in batches)
