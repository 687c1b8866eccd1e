"""The shard format: what the writer puts in a tar, every reader gets back, keyed the same way."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from webdataset.tariterators import base_plus_ext

from asr.data.loader import LoaderConfig, ShardStream
from asr.tokens.tokenizer import CharTokenizer
from pipeline.cv import clip_id
from pipeline.shardformat import (CODEC_MEMBER, FEATURE_CODECS, META, QDELTA_STEP, ShardSet, ShardWriter, check_key,
                                  decode_features, read_index, read_samples, shard_path, split_name, write_tables,
                                  write_tar)
from pipeline.verify import verify

# a real Common Voice id, ids with dashes and underscores (what clip_id makes of dots), and
# one inside a folder with a dot in its name: the key is everything before the file name's
# first dot, for the writer, the loader, webdataset and verify alike
KEYS = ["common_voice_fr_12345678", clip_id("common_voice_fr_1.2-x.mp3"), "a-b_c-d", "v1.0/common_voice_fr_7"]


def samples(keys: list[str]) -> list[tuple[str, np.ndarray, dict]]:
    rng = np.random.default_rng(0)
    return [(k, rng.standard_normal((5 + i, 4)).astype(np.float16), {"text": f"mot {i}", "split": "train"})
            for i, k in enumerate(keys)]


def test_member_names_split_as_webdataset_splits_them():
    names = ["common_voice_fr_1.feats.npy", "common_voice_fr_1.2-x.feats.npy", "a-b_c.json",
             "v1.0/common_voice_fr_7.feats.npy", "dir/sub.d/k.JSON", "no_extension", "x.y/no_extension"]
    for name in names:
        key, ext = base_plus_ext(name)
        assert split_name(name) == (None if key is None else (key, ext.lower())), name
    assert clip_id("common_voice_fr_1.2-x.mp3") == "common_voice_fr_1_2-x"
    for key in KEYS:
        check_key(key)
    for bad in ("common_voice_fr_1.2-x", "", "v1.0/"):
        with pytest.raises(ValueError, match="sample key"):
            check_key(bad)


@pytest.mark.parametrize("codec", FEATURE_CODECS)
def test_writer_tar_reads_back_through_every_reader(tmp_path, codec):
    written = samples(KEYS)
    size, sha = write_tar(tmp_path / "a.tar", written, codec)
    data = (tmp_path / "a.tar").read_bytes()
    assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
    assert write_tar(tmp_path / "b.tar", written, codec) == (size, sha)  # the same samples, the same bytes
    assert (tmp_path / "b.tar").read_bytes() == data

    fast = list(read_samples([str(tmp_path / "a.tar")]))
    reference = list(wds.tarfile_samples(iter([{"url": str(tmp_path / "a.tar")}])))
    assert [s["__key__"] for s in fast] == [s["__key__"] for s in reference] == KEYS
    member = CODEC_MEMBER[codec]
    for (key, feats, meta), f, r in zip(written, fast, reference):
        assert {k for k in f if not k.startswith("__")} == {k for k in r if not k.startswith("__")} == {member, META}
        assert bytes(f[member]) == r[member] and bytes(f[META]) == r[META]
        decoded = decode_features(f)
        assert np.array_equal(decoded, decode_features(r)) and decoded.shape == feats.shape
        if codec == "float16":
            assert decoded.dtype == np.float16 and np.array_equal(decoded, feats)
        else:
            assert decoded.dtype == np.float32
            assert np.abs(decoded - feats.astype(np.float32)).max() <= QDELTA_STEP / 2
        assert json.loads(bytes(f[META])) == meta

    with pytest.raises(ValueError, match="sample key"), ShardWriter(tmp_path / "c.tar", codec) as shard:
        shard.write("common_voice_fr_1.2-x", *written[0][1:])


def tiny_shard_set(root: Path, keys: list[str]) -> ShardSet:
    """A one-shard train split written with the format's own writer and tables."""
    written = samples(keys)
    path = shard_path("train", 0)
    size, sha = write_tar(root / path, written)
    frames = sum(f.shape[0] for _, f, _ in written)
    rows = [{"id": k, "split": "train", "shard": path, "frames": f.shape[0], "duration": f.shape[0] / 100,
             "text": m["text"], "sentence": m["text"], "client_id": "c", "gender": "", "age": "", "accent": "",
             "sample_rate": 48000, "channels": 1, "path": f"{k}.mp3"} for k, f, m in written]
    dataset = {"lang": "fr", "features": {"n_mels": 4}, "feature_codec": "qdelta", "vocab": sorted(set("mot 0123")),
               "cmvn": {"frames": frames, "mean": [0.0] * 4, "std": [1.0] * 4},
               "splits": {"train": {"utterances": len(rows), "frames": frames, "shards": [
                   {"path": path, "utterances": len(rows), "frames": frames, "bytes": size, "sha256": sha}]},
                          "dev": {"utterances": 0, "frames": 0, "shards": []},
                          "test": {"utterances": 0, "frames": 0, "shards": []}}}
    write_tables(root, dataset, rows, [{"id": "gone", "split": "train", "reason": "too_short", "detail": ""}])
    return ShardSet.open(root)


def test_verify_and_the_loader_key_samples_the_same_way(tmp_path):
    shards = tiny_shard_set(tmp_path, KEYS)
    assert [r["id"] for r in shards.read_index(columns=["id"], split="train")] == KEYS
    assert shards.read_rejects() == [{"id": "gone", "split": "train", "reason": "too_short", "detail": ""}]
    assert verify(tmp_path, progress=False) == []  # verify sees the index's ids in the tar
    cfg = LoaderConfig(batch_frames=1000, workers=0)
    loaded = [i for b in ShardStream(shards.urls("train"), CharTokenizer(shards.vocab), shards.cmvn, cfg, False)
              for i in b.ids]
    assert sorted(loaded) == sorted(KEYS)  # and so does the loader

    # an index that names an id the way a first-dot split of the whole path would: caught
    rows = read_index(tmp_path)
    rows[-1]["id"] = "v1"
    write_tables(tmp_path, shards.dataset, rows, [])
    assert any("missing from the tar" in p for p in verify(tmp_path, progress=False))


def test_read_index_checks_columns_and_says_what_is_missing(tmp_path):
    tiny_shard_set(tmp_path, KEYS[:2])
    with pytest.raises(ValueError, match=r"no column\(s\) \['pitch'\]"):
        read_index(tmp_path, columns=["id", "pitch"])
    with pytest.raises(FileNotFoundError, match="asr-cli shards"):
        read_index(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="asr-cli shards"):
        ShardSet.open(tmp_path / "nowhere")
