"""Issue 25, items 1-4: nothing of the user's lost, nothing run that should not be, no clip able
to poison a build, no checkpoint able to exhaust memory before it is checked. Real processes
(`cli.py`) where a user would meet the failure; every one ends in one line and exit 1."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.store import checkpoint
from asr.store.checkpoint import CheckpointError
from conftest import LANG, ROOT, TSV_HEADER, one_line, tsv_row
from pipeline.build import BuildConfig, OutFolderError, build
from pipeline.lock import LOCK_FILE
from pipeline.shardformat import ShardPathError, ShardSet, check_shard_path, read_rejects, refuse_out_inside_shards

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(*args, timeout: float = 300, cwd: Path = ROOT, memory_kb: int | None = None) -> subprocess.CompletedProcess:
    """`cli.py ARGS` in a child process; with `memory_kb`, under `ulimit -v` (address space)."""
    command = [sys.executable, str(ROOT / "cli.py"), *map(str, args)]
    if memory_kb is not None:
        command = ["bash", "-c", f"ulimit -v {memory_kb}; exec {shlex.join(command)}"]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (symlinks and the lock file aside)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink() and p.name != LOCK_FILE}


def user_files(folder: Path) -> dict[str, bytes]:
    """A user's files, named like the builder's leftovers and tables, put in `folder`."""
    files = {"thesis.pdf": b"%PDF-1.4 my thesis", "dataset.json": b'{"mine": true}\n',
             "train/results.tar": b"not a shard", "train/notes.tmp": b"draft", "dev/a.tmp": b"x",
             "test/test-000000.tar.bak": b"backup", ".parts/plan.json": b"{}", "sub/deep/b.tmp": b"y"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


# --------------------------------------------------------------------------------------
# item 1: the builder only ever removes what it wrote
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("force", [False, True])
def test_a_build_into_a_folder_of_user_files_refuses_and_leaves_every_one_byte_identical(broken_root, tmp_path,
                                                                                         force):
    out = tmp_path / "mine"
    out.mkdir()
    user_files(out)
    before = hashes(out)
    proc = cli("shards", "--cv-root", broken_root, "--lang", LANG, "--out", out, "--jobs", 1, "--no-progress",
               *(["--force"] if force else []))
    one_line(proc, f"--out {out} is not empty and not a shard folder", "nothing was changed")
    assert hashes(out) == before
    assert not (out / LOCK_FILE).exists()  # refused before even the lock was taken


def test_force_rebuild_of_a_shard_folder_keeps_the_users_files_in_it(broken_root, shards_dir, tmp_path):
    """A run folder and notes put inside a shard folder survive `shards --force`; the rebuilt
    shards are the same bytes as before."""
    out = tmp_path / "fr"
    shutil.copytree(shards_dir, out)
    mine = {"train/run/last.pt": b"weights", "train/notes.tmp": b"draft", "train/thesis.tar": b"not ours",
            ".parts/readme.txt": b"mine", "results.csv": b"a,b\n", "dev/sub/x.tar": b"z"}
    for name, data in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    shards_before = {k: v for k, v in hashes(shards_dir).items() if k.endswith(".tar")}
    build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=2, shard_size=8, progress=False,
                      max_duration=15.0, force=True))
    for name, data in mine.items():
        assert (out / name).read_bytes() == data, name
    after = hashes(out)
    assert {k: v for k, v in after.items() if k in shards_before} == shards_before


def test_stale_shards_of_an_earlier_plan_go_but_a_users_tar_stays(broken_root, shards_dir, tmp_path):
    out = tmp_path / "fr"
    shutil.copytree(shards_dir, out)
    (out / "train" / "train-000099.tar").write_bytes(b"an earlier plan's shard")  # the builder's own name
    (out / "train" / "train-000099.tar.tmp").write_bytes(b"a killed run's")
    (out / "train" / "mine.tar").write_bytes(b"the user's")
    build(BuildConfig(cv_root=broken_root, lang=LANG, out=out, jobs=1, shard_size=8, progress=False,
                      max_duration=15.0))
    assert not (out / "train" / "train-000099.tar").exists() and not (out / "train" / "train-000099.tar.tmp").exists()
    assert (out / "train" / "mine.tar").read_bytes() == b"the user's"


def test_out_folder_checks_in_process(tmp_path, shards_dir):
    from pipeline.build import check_out_folder

    check_out_folder(tmp_path / "new")  # absent: fine
    (tmp_path / "empty").mkdir()
    check_out_folder(tmp_path / "empty")
    check_out_folder(shards_dir)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutFolderError, match="is a file"):
        check_out_folder(tmp_path / "file")


def test_train_and_eval_refuse_an_out_inside_a_shard_folder(shards_dir, tiny_ctc, tmp_path):
    root = tmp_path / "fr"
    shutil.copytree(shards_dir, root)
    before = hashes(root)
    proc = cli("train", "--shards", root, "--out", root / "train" / "run", "--preset", "tiny", "--max-steps", 1,
               "--no-progress")
    one_line(proc, f"--out {root / 'train' / 'run'} is inside the shard folder {root}")
    proc = cli("eval", "--checkpoint", tiny_ctc, "--shards", root, "--out", root / "eval", "--no-progress")
    one_line(proc, "is inside the shard folder")
    assert hashes(root) == before and not (root / "train" / "run").exists() and not (root / "eval").exists()
    with pytest.raises(ValueError, match="inside the shard folder"):
        refuse_out_inside_shards(root)
    refuse_out_inside_shards(tmp_path / "runs" / "x")  # beside it: fine


# --------------------------------------------------------------------------------------
# item 2: a path from dataset.json never reaches a shell unchecked
# --------------------------------------------------------------------------------------
CRAFTED = "test/test-000000.tar; touch PWNED; echo"


def crafted_shards(shards_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "fr"
    shutil.copytree(shards_dir, root)
    dataset = json.loads((root / "dataset.json").read_text())
    dataset["splits"]["test"]["shards"][0]["path"] = CRAFTED
    dataset["splits"]["train"]["shards"][0]["path"] = "train/train-000000.tar$(touch PWNED)"
    (root / "dataset.json").write_text(json.dumps(dataset))
    return root


def test_eval_and_train_refuse_a_crafted_shard_path_and_run_nothing(shards_dir, tiny_ctc, tmp_path):
    root = crafted_shards(shards_dir, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    url = f"pipe:cat {root}/{{path}}"
    proc = cli("eval", "--checkpoint", tiny_ctc, "--shards", root, "--split", "test", "--workers", 0,
               "--shard-url", url, "--out", tmp_path / "eval", "--no-progress", cwd=work)
    one_line(proc, "lists a shard path", "not a shard of this format")
    proc = cli("train", "--shards", root, "--out", tmp_path / "run", "--preset", "tiny", "--max-steps", 1,
               "--workers", 0, "--shard-url", url, "--no-progress", cwd=work)
    one_line(proc, "lists a shard path")
    assert not list(tmp_path.rglob("PWNED")) and not (ROOT / "PWNED").exists()


def test_every_shard_path_is_checked_and_a_template_path_is_quoted():
    for good in ("train/train-000000.tar", "train/train-sp0p9-000012.tar", "dev/dev-1234567.tar"):
        assert check_shard_path(good) == good
    for bad in (CRAFTED, "../train/train-000000.tar", "/etc/passwd", "dev/train-000000.tar", "train/x.tar",
                "train/train-000000.tar\n", None, 3):
        with pytest.raises(ShardPathError):
            check_shard_path(bad)
    shards = ShardSet(Path("/s"), {"splits": {"test": {"shards": [{"path": "test/test-000000.tar"}]}}},
                      "pipe:aws s3 cp s3://b/fr/{path} -")
    assert shards.urls("test") == ["pipe:aws s3 cp s3://b/fr/test/test-000000.tar -"]


# --------------------------------------------------------------------------------------
# item 3: one clip cannot poison a build
# --------------------------------------------------------------------------------------
def poisoned_wav(path: Path, rate: int = 16000) -> Path:
    """Speech-like float WAV whose samples are huge but finite (x 1e20)."""
    t = np.arange(rate * 2) / rate
    x = (np.sin(2 * np.pi * 220 * t) * 0.3 * 1e20).astype(np.float32)
    sf.write(path, x, rate, subtype="FLOAT")
    return path


def mini_corpus(synth_root: Path, dest: Path, extra: dict[str, str], train: int = 6) -> Path:
    """A Common Voice root with `train` good train clips of the synthetic corpus (copied: a
    symlink out of clips/ is refused as path_outside_clips),
    two dev and two test clips, plus the rows `extra` (file name -> sentence) in train.tsv; the
    caller writes those files into <root>/fr/clips."""
    src, lang = synth_root / LANG, dest / LANG
    (lang / "clips").mkdir(parents=True)
    header = "\t".join(TSV_HEADER)
    for split, n in (("train", train), ("dev", 2), ("test", 2)):
        lines = (src / f"{split}.tsv").read_text().splitlines()
        col = lines[0].split("\t").index("path")
        rows = lines[1:n + 1]
        for row in rows:
            name = row.split("\t")[col]
            shutil.copy2(src / "clips" / name, lang / "clips" / name)
        if split == "train":
            rows += [tsv_row(name, sentence) for name, sentence in extra.items()]
        (lang / f"{split}.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    (lang / "validated.tsv").write_text(header + "\n")
    return dest


@pytest.fixture(scope="module")
def poisoned(synth_root, tmp_path_factory) -> dict:
    """A build of a small corpus holding a x1e20 float WAV, a 1-sample WAV, a sentence of 5,000
    digits and a WAV whose header announces 6 hours (a sparse file, never decoded)."""
    root = tmp_path_factory.mktemp("cv-poisoned")
    extra = {"common_voice_fr_huge.wav": "Une phrase forte.", "common_voice_fr_one.wav": "Un.",
             "common_voice_fr_digits.mp3": "Le code est " + "7" * 5000 + ".",
             "common_voice_fr_sixhours.wav": "Une longue phrase."}
    mini_corpus(synth_root, root, extra)
    clips = root / LANG / "clips"
    poisoned_wav(clips / "common_voice_fr_huge.wav")
    sf.write(clips / "common_voice_fr_one.wav", np.array([0.5], np.float32), 16000)
    good = next(p for p in clips.iterdir() if p.suffix == ".mp3")
    shutil.copy2(good, clips / "common_voice_fr_digits.mp3")
    sparse_wav(clips / "common_voice_fr_sixhours.wav", hours=6)
    out = tmp_path_factory.mktemp("shards-poisoned") / LANG
    started = time.perf_counter()
    summary = build(BuildConfig(cv_root=root, lang=LANG, out=out, jobs=1, shard_size=4, progress=False))
    return {"root": root, "out": out, "summary": summary, "seconds": time.perf_counter() - started}


def sparse_wav(path: Path, hours: float, rate: int = 16000) -> Path:
    """A 16-bit mono WAV header announcing `hours` of audio, its data a hole (no disk used)."""
    frames = int(hours * 3600 * rate)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        f.write(np.full(rate, 0.1, np.float32))
    size = 44 + 2 * frames
    with open(path, "r+b") as f:  # RIFF and data sizes of the full length, then the file grown sparsely
        f.seek(4)
        f.write((size - 8).to_bytes(4, "little"))
        f.seek(40)
        f.write((2 * frames).to_bytes(4, "little"))
        f.truncate(size)
    assert sf.info(str(path)).duration > hours * 3600 - 1
    return path


def test_a_clip_of_huge_samples_is_rejected_and_the_cmvn_stays_finite(poisoned):
    reasons = {r["id"]: r["reason"] for r in read_rejects(poisoned["out"])}
    assert reasons["common_voice_fr_huge"] == "non_finite_features"
    dataset = json.loads((poisoned["out"] / "dataset.json").read_text())
    assert np.isfinite(dataset["cmvn"]["mean"]).all() and np.isfinite(dataset["cmvn"]["std"]).all()
    assert dataset["splits"]["train"]["utterances"] == 6
    mean, std = ShardSet.open(poisoned["out"]).cmvn
    assert np.isfinite(mean).all()


def test_a_nan_cmvn_in_dataset_json_stops_training_with_one_line(shards_dir, tmp_path):
    root = tmp_path / "fr"
    shutil.copytree(shards_dir, root)
    dataset = json.loads((root / "dataset.json").read_text())
    dataset["cmvn"]["mean"][3] = float("nan")
    (root / "dataset.json").write_text(json.dumps(dataset))
    proc = cli("train", "--shards", root, "--out", tmp_path / "run", "--preset", "tiny", "--max-steps", 2,
               "--workers", 0, "--no-progress")
    one_line(proc, "holds a CMVN that is not finite", "asr-cli shards --force")


def test_a_whole_epoch_of_skipped_batches_is_an_error():
    from asr.data.loader import check_epoch_trained

    check_epoch_trained(3, 4, 0)  # one batch learnt from: go on
    check_epoch_trained(0, 0, 0)
    with pytest.raises(RuntimeError, match="epoch 2: all 5 batches were skipped"):
        check_epoch_trained(5, 5, 2)


def test_transcribe_of_a_clip_of_huge_samples_fails_and_the_next_file_is_transcribed(poisoned, tiny_ctc):
    clips = poisoned["root"] / LANG / "clips"
    good = sorted(p for p in clips.iterdir() if p.suffix == ".mp3" and "digits" not in p.name)[0]
    proc = cli("transcribe", "--checkpoint", tiny_ctc, clips / "common_voice_fr_huge.wav",
               clips / "common_voice_fr_one.wav", good, "--format", "json")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [("error" in r) for r in results] == [True, True, False]
    assert "overflow" in results[0]["error"] and "too short" in results[1]["error"]


# --------------------------------------------------------------------------------------
# item 4: a crafted checkpoint is refused before anything is built
# --------------------------------------------------------------------------------------
def rewrite(src: Path, dst: Path, change) -> Path:
    """A copy of checkpoint `src` whose "meta" JSON is `change(meta)` (tensors as they are)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(metadata["meta"])
    change(meta)
    save_file(tensors, str(dst), {**metadata, "meta": json.dumps(meta)})
    return dst


def _huge_rnn(meta):
    meta["model"]["options"].update(rnn_hidden=6000, rnn_layers=60)


def _huge_array(meta):
    meta["metrics"] = {"x": {"$ndarray": "data/0", "dtype": "<U200000000"}}


@pytest.mark.parametrize("change, fragment", [(_huge_rnn, "field 'model' does not fit the weights"),
                                              (_huge_array, "is not a plain number type")])
def test_a_crafted_checkpoint_fails_fast_in_bounded_memory(tiny_ctc, tmp_path, synth_root, change, fragment):
    bad = rewrite(tiny_ctc, tmp_path / "bad.pt", change)
    clip = sorted((synth_root / LANG / "clips").glob("*.mp3"))[0]
    started = time.perf_counter()
    proc = cli("transcribe", "--checkpoint", bad, clip, memory_kb=5_000_000, timeout=120)
    one_line(proc, str(bad), fragment)
    assert time.perf_counter() - started < 100


def _set(path: str, value):
    def change(meta):
        *parents, last = path.split(".")
        d = meta
        for p in parents:
            d = d[p]
        d[last] = value
    return change


@pytest.mark.parametrize("change, field", [
    (_set("features.hop_ms", 0.0), "features.hop_ms"),
    (_set("features.n_fft", 4), "features.n_fft"),
    (_set("features.sample_rate", 0), "features.sample_rate"),
    (_set("lang", 5), "'lang'"),
    (_set("cmvn.std", [0.0] * 80), "cmvn.std"),
    (_set("cmvn.mean", [float("nan")] * 80), "cmvn.mean"),
    (_set("cmvn.mean", [0.0] * 3), "cmvn.mean"),
    (lambda meta: meta["tokenizer"]["vocab"].pop(), "'tokenizer'"),
    (_set("model.vocab_size", -1), "model.vocab_size"),
    (_set("model.kind", "tdt"), "field 'model' does not build a model"),
])
def test_each_bad_field_is_a_checkpoint_error_naming_it(tiny_ctc, tmp_path, change, field):
    bad = rewrite(tiny_ctc, tmp_path / "bad.pt", change)
    with pytest.raises(CheckpointError, match=f"{bad}.*{_escape(field)}"):
        checkpoint.load(bad, train_state=False)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_a_good_checkpoint_still_loads(tiny_ctc):
    from asr.nets.models import load_model

    model, tokenizer, ckpt = load_model(tiny_ctc)
    assert ckpt.card.lang == LANG and len(tokenizer) == ckpt.card.model["vocab_size"]


# --------------------------------------------------------------------------------------
# items 6, 7, 14 in a build: a reject each, and the build goes on
# --------------------------------------------------------------------------------------
def test_a_long_run_of_digits_a_one_sample_clip_and_a_six_hour_header_are_rejects(poisoned):
    rejects = {r["id"]: r for r in read_rejects(poisoned["out"])}
    assert rejects["common_voice_fr_digits"]["reason"] == "digits"
    assert rejects["common_voice_fr_one"]["reason"] == "too_short"
    assert rejects["common_voice_fr_sixhours"]["reason"] == "too_long"
    assert "from the file's header" in rejects["common_voice_fr_sixhours"]["detail"]
    # the 6-hour file (691 MB of samples announced) was refused from its header, not decoded
    assert poisoned["seconds"] < 60
