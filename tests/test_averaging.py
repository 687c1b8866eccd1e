"""Checkpoint averaging: the mean of state dicts, `train --average N` (kept files, pruning,
averaged.pt, its dev CER in summary.json, resume) and `asr-cli checkpoint average`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from asr.store import checkpoint
from asr.training import averaging
from asr.training.loop import TrainConfig, train
from cli import app


def test_mean_of_two_state_dicts_is_exact():
    a = {"w": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([0.5], dtype=torch.float16),
         "n": torch.tensor(7, dtype=torch.int64)}
    b = {"w": torch.tensor([3.0, -2.0, 4.0]), "b": torch.tensor([1.5], dtype=torch.float16),
         "n": torch.tensor(9, dtype=torch.int64)}
    m = averaging.average_state_dicts([a, b])
    assert m["w"].tolist() == [2.0, 0.0, 3.5]
    assert m["b"].dtype == torch.float16 and m["b"].tolist() == [1.0]
    assert m["n"].dtype == torch.int64 and int(m["n"]) == 9  # integer buffers: the last one's
    with pytest.raises(ValueError, match="other weights"):
        averaging.average_state_dicts([a, {"w": a["w"]}])
    with pytest.raises(ValueError, match="different shapes"):
        averaging.average_state_dicts([a, {**b, "w": torch.zeros(2)}])


COMMON = dict(preset="tiny", max_steps=12, warmup=3, batch_frames=2500, eval_every=3, eval_utts=50, workers=0,
              progress=False, seed=5, average=2)


def _steps(run: Path) -> list[int]:
    return [s for s, _ in averaging.kept(run / "avg")]


@pytest.fixture(scope="module")
def averaged_run(shards_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("avg-run") / "run"
    summary = train(TrainConfig(shards=str(shards_dir), out=str(out), **COMMON))
    return out, summary


def test_train_average_keeps_the_last_n_and_writes_their_mean(averaged_run):
    out, summary = averaged_run
    assert _steps(out) == [9, 12]  # validations at 3, 6, 9 and the final one at 12; older ones pruned
    kept = [checkpoint.load(p) for _, p in averaging.kept(out / "avg")]
    assert all("optimizer" not in k for k in kept)  # weights and decoding metadata only
    avg = checkpoint.load(out / "averaged.pt")
    for name, t in avg["state_dict"].items():
        expected = (kept[0]["state_dict"][name].double() + kept[1]["state_dict"][name].double()) / 2
        assert torch.equal(t, expected.to(t.dtype)), name
    last = checkpoint.load(out / "last.pt")
    assert torch.equal(kept[1]["state_dict"]["head.weight"], last["state_dict"]["head.weight"])
    assert avg["model"] == last["model"] and avg["tokenizer"] == last["tokenizer"] and avg["cmvn"] == last["cmvn"]
    assert avg["averaged_from"] == [str(p) for _, p in averaging.kept(out / "avg")]
    written = json.loads((out / "summary.json").read_text())
    assert written["averaged"]["steps"] == [9, 12]
    assert written["averaged"]["dev"]["cer"] == avg["metrics"]["cer"] == summary["averaged"]["dev"]["cer"]
    assert written["averaged"]["dev"]["utterances"] == written["dev"]["utterances"]
    assert written["best_dev_cer"] == checkpoint.load(out / "best.pt")["metrics"]["cer"]


def test_average_survives_resume(shards_dir, averaged_run, tmp_path):
    straight, _ = averaged_run
    out = tmp_path / "resumed"
    first = train(TrainConfig(shards=str(shards_dir), out=str(out), steps_this_run=7, **COMMON))
    assert first["stopped_by"] == "steps_this_run" and "averaged" not in first
    assert _steps(out) == [3, 6] and not (out / "averaged.pt").exists()  # step 7 is not an evaluation step
    # a kept file past the checkpoint (a crash between the two writes) is trained again, not kept
    checkpoint.save(out / "avg" / "step-00000008.pt", checkpoint.load(out / "avg" / "step-00000006.pt"))
    resumed = train(TrainConfig(shards=str(shards_dir), out=str(out), resume=True, **COMMON))
    assert _steps(out) == [9, 12]
    a = checkpoint.load(straight / "averaged.pt")["state_dict"]
    b = checkpoint.load(out / "averaged.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["averaged"]["steps"] == [9, 12]

    # --force starts over: nothing kept from the run before
    train(TrainConfig(shards=str(shards_dir), out=str(out), force=True, **{**COMMON, "max_steps": 2}))
    assert _steps(out) == [2]


def test_averaged_checkpoint_works_in_eval_and_transcribe(averaged_run, shards_dir, broken_root, tmp_path):
    out, summary = averaged_run
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--checkpoint", str(out / "averaged.pt"), "--shards", str(shards_dir),
                              "--split", "dev", "--out", str(tmp_path / "eval"), "--workers", "0", "--threads", "1",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert ev["checkpoint"] == str(out / "averaged.pt")
    assert ev["utterances"] == summary["averaged"]["dev"]["utterances"]
    hyps = {r["id"]: r["hypothesis"] for r in map(json.loads, (tmp_path / "eval" / "utterances.jsonl").open())}
    rows = {r["id"]: r for r in pq.read_table(shards_dir / "index.parquet").to_pylist()}
    ids = sorted(hyps)[:3]
    res = runner.invoke(app, ["transcribe", "--checkpoint", str(out / "averaged.pt"), "--json",
                              *[str(broken_root / "fr" / "clips" / rows[i]["path"]) for i in ids]])
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["text"] for line in res.stdout.splitlines()] == [hyps[i] for i in ids]


def test_checkpoint_average_cli(averaged_run, tmp_path):
    out, _ = averaged_run
    paths = [str(p) for _, p in averaging.kept(out / "avg")]
    res = CliRunner().invoke(app, ["checkpoint", "average", *paths, "--out", str(tmp_path / "a.pt")])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"wrote {tmp_path / 'a.pt'}: the mean of 2 checkpoints"
    a, b = checkpoint.load(tmp_path / "a.pt")["state_dict"], checkpoint.load(out / "averaged.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    res = CliRunner().invoke(app, ["checkpoint", "average", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "b.pt")])
    assert res.exit_code == 1 and "missing.pt does not exist" in res.output
    assert not (tmp_path / "b.pt").exists()
    res = CliRunner().invoke(app, ["train", "--shards", "x", "--average", "-1"])
    assert res.exit_code != 0 and "--average" in res.output


def test_demo_evaluates_the_checkpoint_with_the_lower_dev_cer(averaged_run):
    from asr.apps.demo import pick_checkpoint

    out, summary = averaged_run
    avg = {**summary["averaged"], "dev": {**summary["averaged"]["dev"], "cer": 0.20}}
    assert pick_checkpoint(out, {**summary, "best_dev_cer": 0.25, "averaged": avg}) == (
        out / "averaged.pt", "averaged.pt (dev CER 20.00% < best.pt's 25.00%)")
    assert pick_checkpoint(out, {**summary, "best_dev_cer": 0.20, "averaged": avg}) == (
        out / "best.pt", "best.pt (dev CER 20.00% <= averaged.pt's 20.00%)")
    no_avg = {k: v for k, v in summary.items() if k != "averaged"}
    assert pick_checkpoint(out, no_avg)[0] == out / "best.pt"


def test_train_cli_average_prints_both_dev_cers(shards_dir, tmp_path):
    out = tmp_path / "cli-run"
    res = CliRunner().invoke(app, ["train", "--shards", str(shards_dir), "--out", str(out), "--preset", "tiny",
                                   "--max-steps", "4", "--warmup", "1", "--eval-every", "2", "--eval-utts", "4",
                                   "--batch-frames", "2500", "--workers", "0", "--average", "3", "--no-progress"])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["averaged"]["steps"] == [2, 4] and _steps(out) == [2, 4]
    assert (f"averaged.pt (steps 2, 4): dev CER {s['averaged']['dev']['cer']:.3f}; "
            f"best.pt: {s['best_dev_cer']:.3f}") in res.stdout
