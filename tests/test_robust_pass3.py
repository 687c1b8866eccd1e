"""Third robustness pass: crafted shards, crafted ONNX metadata, run folders, live sessions,
speakers, files. Each test reproduces what a hostile input or a misuse did before the pass
(the docstrings say what) and checks what a user gets now."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

import numpy as np
import pytest

from asr.data.loader import LoaderConfig, ShardStream
from asr.tokens.tokenizer import CharTokenizer
from conftest import ROOT
from pipeline.feature_codecs import CODECS, FeatureDecodeError, decode_features, encode_features
from pipeline.shardformat import ShardReadError, ShardSet, read_dataset

QD = CODECS["qdelta"]


def qdelta_member(frames: int, n_mels: int, step: float = 0.125, escapes: int = 0, payload: bytes | None = None) -> bytes:
    """A qdelta member whose header says what it is told to, with a valid CRC32."""
    import pyarrow as pa

    payload = pa.Codec("zstd").compress(payload if payload is not None else bytes(16), asbytes=True)
    head = struct.pack("<4sIIfI", b"QD1\0", frames, n_mels, step, escapes)
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def rewrite_first(tar_path, ext: str, data: bytes) -> str:
    """The tar with its first `ext` member replaced by `data`: that sample's key."""
    with tarfile.open(tar_path) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    key = None
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as t:
        for m, old in members:
            if key is None and m.name.endswith("." + ext):
                key, old = m.name.split(".")[0], data
                m.size = len(old)
            t.addfile(m, io.BytesIO(old))
    return key


def crafted_copy(shards_dir, tmp_path, data: bytes) -> tuple:
    root = tmp_path / "shards"
    shutil.copytree(shards_dir, root)
    tar = root / read_dataset(root)["splits"]["train"]["shards"][0]["path"]
    return root, tar, rewrite_first(tar, QD.member, data)


# --------------------------------------------------------------------------------------
# 1-2. crafted qdelta members
# --------------------------------------------------------------------------------------
def test_a_qdelta_bomb_is_refused_before_anything_is_allocated():
    """A 60-byte member whose valid-CRC header claimed 5 M frames x 80 made the readers
    allocate gigabytes (one 5.96 GiB array)."""
    bomb = qdelta_member(5_000_000, 80)
    assert len(bomb) < 100
    with pytest.raises(FeatureDecodeError, match="5000000 frames"):
        decode_features({QD.member: bomb})
    with pytest.raises(FeatureDecodeError, match="escapes"):
        decode_features({QD.member: qdelta_member(10, 80, escapes=10**9)})


@pytest.mark.parametrize("member, words", [
    (qdelta_member(100, 80, step=1e30), "step"),
    (qdelta_member(0, 80), "0 frames"),
])
def test_other_lying_qdelta_headers_are_refused(member, words):
    with pytest.raises(FeatureDecodeError, match=words):
        decode_features({QD.member: member})


def test_features_of_another_width_than_the_dataset_are_refused():
    ext, data = encode_features(np.zeros((50, 40), np.float16), "qdelta")
    assert decode_features({ext: data}).shape == (50, 40)  # alone, a valid member
    with pytest.raises(FeatureDecodeError, match="40 mel bins, the dataset 80"):
        decode_features({ext: data}, n_mels=80)
    ext, data = encode_features(np.zeros((50, 40), np.float16), "float16")
    with pytest.raises(FeatureDecodeError, match="40 mel bins, the dataset 80"):
        decode_features({ext: data}, n_mels=80)
    with pytest.raises(FeatureDecodeError, match="the index says 60"):
        decode_features({ext: data}, frames=60)


_LIMITED = """
import resource, sys
sys.path.insert(0, {root!r})
resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))  # 1.5 GiB of address space
from pipeline.verify import verify
problems = verify({shards!r}, progress=False)
print("\\n".join(problems))
"""


def test_verify_train_and_eval_refuse_a_bomb_in_one_line_under_a_memory_limit(shards_dir, tmp_path):
    root, tar, key = crafted_copy(shards_dir, tmp_path, qdelta_member(5_000_000, 80))
    proc = subprocess.run([sys.executable, "-c", _LIMITED.format(root=str(ROOT), shards=str(root))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if key in line]
    assert len(lines) == 1 and "unreadable" in lines[0] and "5000000 frames" in lines[0], proc.stdout
    shards = ShardSet.open(root)
    stream = ShardStream([str(tar)], CharTokenizer(shards.vocab), shards.cmvn, LoaderConfig(workers=0), train=False)
    with pytest.raises(ShardReadError) as e:
        list(stream)
    assert "\n" not in str(e.value) and key in str(e.value) and "5000000 frames" in str(e.value)


def test_verify_does_not_open_a_shard_path_that_leaves_the_folder(shards_dir, tmp_path):
    """dataset.json listing `../../../tmp/x.tar` made verify hash a file outside the folder
    (training and eval refused it already)."""
    root = tmp_path / "shards"
    shutil.copytree(shards_dir, root)
    outside = tmp_path / "outside.tar"
    outside.write_bytes(b"not yours")
    dataset = json.loads((root / "dataset.json").read_text())
    dataset["splits"]["dev"]["shards"][0]["path"] = "../outside.tar"
    (root / "dataset.json").write_text(json.dumps(dataset))
    from pipeline.verify import verify

    problems = verify(root, progress=False)
    assert any("../outside.tar" in p and "not a shard of this format" in p for p in problems), problems
    assert not any("sha256" in p and "outside" in p for p in problems)
