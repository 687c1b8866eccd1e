"""Issue 13, item 5: a sentence where a traceback was. Damaged shards (a deleted tar, a tar cut
short, a corrupt sample) and damaged `--lm` files (cut short, flipped bytes, not a language
model at all), through `cli.py` as real processes: exit 1, one line naming the file, no
traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr.data.loader import LoaderConfig, make_loader
from asr.decoding.lm import LMFileError, build_lm_from_shards, check_arpa, kenlm_error, lm_words, read_arpa_unigrams
from asr.tokens.tokenizer import CharTokenizer
from pipeline.shardformat import ShardReadError, ShardSet, read_samples

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=timeout)


def assert_one_clear_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, (fragment, proc.stderr[-3000:])
    return last


def copy_shards(shards_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "shards"
    shutil.copytree(shards_dir, root)
    return root


def cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


# --------------------------------------------------------------------------------------
# shards: eval and train on a folder with a missing or damaged tar
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["deleted", "cut in half"])
def test_eval_on_a_damaged_shard_names_it_and_suggests_verify(damage, tiny_ctc, shards_dir, tmp_path):
    root = copy_shards(shards_dir, tmp_path)
    tar = Path(ShardSet.open(root).urls("test")[0])
    if damage == "deleted":
        tar.unlink()
    else:
        cut(tar, tar.stat().st_size // 2)
    # one DataLoader worker (eval's default): the error crosses a process boundary
    proc = cli("eval", "--checkpoint", str(tiny_ctc), "--shards", str(root), "--split", "test", "--workers", "1",
               "--out", str(tmp_path / "eval"), "--no-progress")
    problem = "the file is missing" if damage == "deleted" else "the file is truncated"
    assert_one_clear_line(proc, f"cannot read shard {tar}: {problem}", f"`asr-cli shards verify {root}`")
    assert not (tmp_path / "eval").exists()


def test_eval_through_webdataset_gives_the_same_message(tiny_ctc, shards_dir, tmp_path):
    """A pipe: URL is read by webdataset, not the fast reader: the same problem is reported."""
    root = copy_shards(shards_dir, tmp_path)
    tar = Path(ShardSet.open(root).urls("test")[0])
    cut(tar, tar.stat().st_size // 2 - 700)  # inside a member
    fast = pytest.raises(ShardReadError, lambda: list(read_samples([str(tar)]))).value
    slow = pytest.raises(ShardReadError, lambda: list(read_samples([f"pipe:cat {tar}"]))).value
    assert fast.problem == slow.problem and fast.problem.startswith("the file is truncated")
    proc = cli("eval", "--checkpoint", str(tiny_ctc), "--shards", str(root), "--split", "test", "--workers", "0",
               "--shard-url", f"pipe:cat {root}/{{path}}", "--out", str(tmp_path / "eval"), "--no-progress")
    assert_one_clear_line(proc, f"cannot read shard pipe:cat {tar}: {fast.problem}")


@pytest.mark.parametrize("procs, workers", [(1, 2), (2, 0)])
def test_train_on_a_deleted_shard_is_one_line(procs, workers, shards_dir, tmp_path):
    """One process whose DataLoader workers hit the missing tars, and two spawned ranks (the
    error crosses `spawn_local`'s RuntimeError). Every train tar is gone, so each rank fails
    on its first read: whichever rank torch reports first, it failed on a shard."""
    root = copy_shards(shards_dir, tmp_path)
    for url in ShardSet.open(root).urls("train"):
        Path(url).unlink()
    proc = cli("train", "--shards", str(root), "--out", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "3",
               "--batch-frames", "4000", "--workers", str(workers), "--eval-every", "0", "--procs", str(procs),
               "--no-progress")
    assert_one_clear_line(proc, "cannot read shard", "the file is missing", f"`asr-cli shards verify {root}`")


def test_the_fast_reader_notices_every_cut(shards_dir, tmp_path):
    tar = Path(ShardSet.open(shards_dir).urls("train")[0])
    data = tar.read_bytes()
    whole = list(read_samples([str(tar)]))
    copy = tmp_path / "train-000000.tar"
    # cut just before the second sample's first header: every member left is whole, only the
    # end-of-archive blocks are missing (read as a shorter shard before)
    second = data.index(f"{whole[1]['__key__']}.".encode()) // 512 * 512
    for size, problem in ((second, "the file is truncated"), (second + 700, "the file is truncated"),
                          (0, "the file is empty")):
        copy.write_bytes(data[:size])
        with pytest.raises(ShardReadError) as e:
            list(read_samples([str(copy)]))
        assert e.value.url == str(copy) and e.value.problem.startswith(problem), str(e.value)
        assert str(e.value).startswith(f"cannot read shard {copy}: {problem}")
    with pytest.raises(ShardReadError, match="the file is missing"):
        list(read_samples([str(tmp_path / "gone.tar")]))


def test_a_corrupt_sample_is_named_through_a_loader_worker(shards_dir, tmp_path):
    root = copy_shards(shards_dir, tmp_path)
    tar = Path(ShardSet.open(root).urls("dev")[0])
    data = bytearray(tar.read_bytes())
    at = data.index(b'{"accent"')  # the first JSON member's content (sorted keys; b'{"' may lie in qdelta bytes)
    data[at] = ord("#")
    tar.write_bytes(bytes(data))
    shards = ShardSet.open(root)
    loader = make_loader(shards, "dev", CharTokenizer(shards.vocab), LoaderConfig(workers=1), train=False)
    with pytest.raises(ShardReadError) as e:
        list(loader)
    message = str(e.value)
    assert message.startswith(f"cannot read shard {tar}: sample ") and "is unreadable (JSONDecodeError" in message
    assert "Traceback" not in message and "\n" not in message


def test_shard_errors_carried_in_a_spawned_process_failure_come_back_as_one_line():
    text = ("a training process failed:\n\n-- Process 0 terminated with the following error:\nTraceback (most "
            "recent call last):\n  File \"x.py\", line 1\npipeline.shardformat.ShardReadError: cannot read shard "
            "s/train/a.tar: the file is missing; check\n")
    one_line = "cannot read shard s/train/a.tar: the file is missing; check"
    assert str(ShardReadError.within(RuntimeError(text))) == one_line
    assert ShardReadError.within(RuntimeError("out of memory")) is None


# --------------------------------------------------------------------------------------
# --lm: damaged ARPA files and files that are not language models
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arpa(shards_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "fr.arpa"
    build_lm_from_shards(shards_dir, 3, path)
    return path


NOT_AN_LM = "is not an ARPA file (it does not start with \\data\\) nor a KenLM binary"


def damaged_lms(arpa: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error must say about it)."""
    data = arpa.read_bytes()
    header = data.split(b"\n\n", 1)[0].decode()
    bigrams = int(header.split("ngram 2=")[1].split()[0])
    start = data.index(b"\\2-grams:")
    cut_at = data.index(b"\n", start + (len(data) - start) // 3) + 1  # a line boundary inside the 2-grams
    shown = data[start:cut_at].count(b"\n") - 1
    flipped = bytearray(data)
    flipped[1000] = 0xFF
    files = {
        "truncated.arpa": (data[:cut_at], f"is not a complete ARPA file: the \\data\\ header announces {bigrams} "
                                          f"2-grams, the file ends after {shown}"),
        "half-line.arpa": (data[:cut_at + 5], f"is not a complete ARPA file: the \\data\\ header announces "
                                                 f"{bigrams} 2-grams, the file ends after {shown} and half a line"),
        "flipped.arpa": (bytes(flipped), "is not valid UTF-8 at byte 1000"),
        "random.bin": (os.urandom(5000).replace(b"mmap", b"xxxx"), NOT_AN_LM),
        "empty.arpa": (b"", "is empty, not a language model"),
        "notes.txt": ("du texte, pas un modèle\n".encode(), NOT_AN_LM),
    }
    out = {}
    for name, (content, message) in files.items():
        (folder / name).write_bytes(content)
        out[name] = (folder / name, message)
    return out


def test_eval_with_a_broken_lm_is_one_line(arpa, tiny_ctc, shards_dir, tmp_path):
    for name, (path, message) in damaged_lms(arpa, tmp_path).items():
        proc = cli("eval", "--checkpoint", str(tiny_ctc), "--shards", str(shards_dir), "--split", "dev", "--lm",
                   str(path), "--out", str(tmp_path / "eval"), "--no-progress")
        assert_one_clear_line(proc, f"{path} {message}")
    assert not (tmp_path / "eval").exists()


def test_transcribe_with_a_broken_lm_is_one_line(arpa, tiny_ctc, tmp_path):
    import numpy as np
    import soundfile as sf

    clip = tmp_path / "clip.wav"
    sf.write(clip, np.zeros(8000, np.float32), 16000)
    for name, (path, message) in damaged_lms(arpa, tmp_path).items():
        proc = cli("transcribe", "--checkpoint", str(tiny_ctc), "--lm", str(path), str(clip))
        assert_one_clear_line(proc, f"{path} {message}")
        assert proc.stdout == ""


def test_arpa_check_reads_a_good_file_and_names_each_fault(arpa, tmp_path):
    words = check_arpa(arpa)
    assert words[:3] == ["<unk>", "<s>", "</s>"] and words == read_arpa_unigrams(arpa) == lm_words(arpa)
    text = arpa.read_text(encoding="utf-8")
    cases = {
        "no-end": (text.replace("\\end\\", ""), "the file ends without \\end\\"),
        "extra": (text.replace("\\2-grams:\n", "\\2-grams:\n-1.0\ta b\n"), "the section holds more"),
        "missing-section": (text.split("\\3-grams:")[0], "the file ends before its \\3-grams: section"),
        "bad-number": (text.replace("\\2-grams:\n", "\\2-grams:\nx\ta b\n", 1), "is not a 2-gram entry"),
        "bad-header": (text.replace("ngram 2=", "ngram 5="), "does not give n-gram counts for orders 1, 2"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.arpa"
        path.write_text(content, encoding="utf-8")
        with pytest.raises(LMFileError) as e:
            lm_words(path)
        assert str(e.value).startswith(str(path)) and message in str(e.value), (name, str(e.value))
        assert "asr-cli lm build" in str(e.value) and "\n" not in str(e.value)
    binary = tmp_path / "fr.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0\0\1\2")
    assert lm_words(binary) is None  # a KenLM binary: left to KenLM, as before
    assert str(kenlm_error(binary, RuntimeError("file.cc:1 in X threw\nEnd of file in the 2-gram"))) == (
        f"KenLM cannot load {binary}: End of file in the 2-gram; rebuild it with `asr-cli lm build`")


def test_the_attention_models_lm_fusion_checks_the_file_too(arpa, tmp_path):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from asr.decoding.scorers import WordLM

    broken = damaged_lms(arpa, tmp_path)
    for name in ("truncated.arpa", "flipped.arpa", "empty.arpa"):
        path, message = broken[name]
        with pytest.raises(LMFileError, match="ARPA|UTF-8|empty"):
            WordLM(path)
        assert message in str(pytest.raises(LMFileError, WordLM, path).value)
    assert WordLM(arpa).start() is not None
