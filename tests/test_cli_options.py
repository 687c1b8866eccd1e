"""Every numeric option of asr-cli is checked (commands/option_bounds.py's `bounded`, with the range
of its config field or of the table's row): finite, in range, the range in --help; a bad value is one line naming the option, exit status 2, and
nothing is written. Also the honest steps-per-epoch count for small --batch-frames."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
import typing
from typing import Callable

import pytest
import typer
from typer.models import OptionInfo

from asr.data.loader import LoaderConfig, make_loader, steps_per_epoch
from asr.tokens.tokenizer import CharTokenizer
from cli import app
from commands.option_bounds import BOUNDS, Bound, _numeric, bounded
from conftest import LANG, ROOT
from pipeline.shardformat import ShardSet

ENV = {**os.environ, "COLUMNS": "250", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          env=ENV, timeout=300)


def commands() -> dict[str, Callable]:
    """'train', 'shards', 'lm build' ... -> the function of the command (or group callback)."""
    found = {}

    def walk(t: typer.Typer, prefix: str) -> None:
        if t.registered_callback is not None:
            found[prefix] = t.registered_callback.callback
        for c in t.registered_commands:
            found[f"{prefix} {c.name or c.callback.__name__}".strip()] = c.callback
        for g in t.registered_groups:
            walk(g.typer_instance, f"{prefix} {g.name}".strip())

    walk(app, "")
    return found


def numeric_options(command: Callable) -> dict[str, OptionInfo]:
    hints = typing.get_type_hints(command)
    return {name: p.default for name, p in inspect.signature(command).parameters.items()
            if isinstance(p.default, OptionInfo) and _numeric(hints[name])}


# --------------------------------------------------------------------------------------
# the table covers every option, and --help shows it
# --------------------------------------------------------------------------------------
def _bound(name: str, info: OptionInfo) -> Bound | None:
    """The range an option is checked against: its config field's, else the table's row."""
    return getattr(info, "cv_bound", None) or BOUNDS.get(name)


def test_every_numeric_option_has_a_bound_and_shows_it():
    seen, from_table = {}, set()
    found = commands()
    assert {"synth", "shards", "train", "bench-loader", "plot", "eval", "lm build", "transcribe", "demo"} <= set(found)
    for path, command in found.items():
        for name, info in numeric_options(command).items():
            bound = _bound(name, info)
            assert bound is not None, f"asr-cli {path} --{name} has no bound"
            assert info.callback is not None, f"asr-cli {path} --{name} is not checked"
            assert info.help.endswith(f"[{bound.text()}]"), (path, info.help)
            seen[name] = bound
            if getattr(info, "cv_bound", None) is None:
                from_table.add(name)
    assert {"beam", "lm_weight", "word_score", "ctc_weight", "max_steps", "batch_frames", "lr", "order",
            "minutes", "hours", "shard_size", "jobs", "time_ratio", "dropout"} <= set(seen)
    assert not set(BOUNDS) - from_table, f"table rows of options that no longer take them: {set(BOUNDS) - from_table}"
    assert seen["ctc_weight"].contains(0.0) and seen["ctc_weight"].contains(1.0)
    assert not seen["dropout"].contains(1.0) and not seen["lr"].contains(0.0)


def test_a_numeric_option_without_a_bound_is_refused_at_import():
    def command(widgets: int = typer.Option(3, help="How many.")):
        pass

    with pytest.raises(TypeError, match="widgets has no bounds"):
        bounded(print)(command)


@pytest.mark.parametrize("command, shown", [
    (["transcribe"], ["[1<=x<=1000]", "[-100<=x<=100]", "[0<=x<=1]"]),
    (["eval"], ["[1<=x<=1000]", "[-100<=x<=100]", "[0<=x<=1]"]),
    (["train"], ["[>=1]", "[>0]", "[0<=x<1]", "[0<=x<=1]", "[>=0]"]),
    (["shards"], ["[>=1]", "[>=0]", "[>0]"]),
    (["lm", "build"], ["[1<=x<=10]"]),
    (["demo"], ["[>0]"]),
    (["synth"], ["[>0]"]),
])
def test_help_shows_the_ranges(command, shown):
    proc = cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    for text in shown:
        assert text in proc.stdout, f"{' '.join(command)} --help lacks {text}"


def test_bounds_refuse_non_finite_values():
    for bound in {*BOUNDS.values(), Bound()}:
        for value in (math.nan, math.inf, -math.inf):
            assert not bound.contains(value)
    assert Bound().problem("--x", math.nan) == "--x: nan is not a finite number; allowed: finite"


# --------------------------------------------------------------------------------------
# bad values through real processes: one line, the option named, nothing written
# --------------------------------------------------------------------------------------
def assert_refused(proc: subprocess.CompletedProcess, option: str, allowed: str) -> None:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{option}: ") and allowed in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("args, option, allowed", [
    (["--beam", "100000"], "--beam", "1<=x<=1000"),
    (["--beam", "0"], "--beam", "1<=x<=1000"),
    (["--lm-weight", "nan"], "--lm-weight", "not a finite number"),
    (["--lm-weight", "-1e30"], "--lm-weight", "-100<=x<=100"),
    (["--word-score", "inf"], "--word-score", "not a finite number"),
    (["--ctc-weight", "1.5"], "--ctc-weight", "0<=x<=1"),
])
def test_decoding_options_are_bounded(tiny_ctc, shards_dir, broken_root, args, option, allowed, tmp_path):
    clip = str(next((broken_root / LANG / "clips").glob("*.mp3")))
    assert_refused(cli("transcribe", "--checkpoint", str(tiny_ctc), "--device", "cpu", clip, *args), option,
                   allowed)
    out = tmp_path / "eval"
    assert_refused(cli("eval", "--checkpoint", str(tiny_ctc), "--shards", str(shards_dir), "--split", "dev",
                       "--device", "cpu", "--out", str(out), "--no-progress", *args), option, allowed)
    assert not out.exists()


@pytest.mark.parametrize("args, option, allowed", [
    (["--max-steps", "0"], "--max-steps", ">=1"),
    (["--max-steps", "-5"], "--max-steps", ">=1"),
    (["--batch-frames", "0"], "--batch-frames", ">=1"),
    (["--lr", "nan"], "--lr", "not a finite number"),
    (["--lr", "0"], "--lr", ">0"),
    (["--warmup", "-1"], "--warmup", ">=0"),
    (["--eval-every", "-1"], "--eval-every", ">=0"),
    (["--eval-utts", "0"], "--eval-utts", ">=1"),
    (["--log-every", "0"], "--log-every", ">=1"),
    (["--workers", "-1"], "--workers", ">=0"),
    (["--procs", "0"], "--procs", ">=1"),
    (["--clip", "0"], "--clip", ">0"),
    (["--dropout", "1.5"], "--dropout", "0<=x<1"),
    (["--freq-masks", "-2"], "--freq-masks", ">=0"),
    (["--time-ratio", "2"], "--time-ratio", "0<=x<=1"),
    (["--time-budget", "-inf"], "--time-budget", "not a finite number"),
])
def test_train_options_are_bounded(shards_dir, tmp_path, args, option, allowed):
    out = tmp_path / "run"
    proc = cli("train", "--shards", str(shards_dir), "--out", str(out), "--preset", "tiny", "--device", "cpu",
               "--workers", "0", "--eval-every", "0", "--no-progress", *args)
    assert_refused(proc, option, allowed)
    assert not out.exists() and not list(tmp_path.rglob("best.pt"))


def test_batch_frames_below_max_frames_is_refused(shards_dir, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--shards", str(shards_dir), "--out", str(out), "--preset", "tiny", "--device", "cpu",
               "--batch-frames", "100", "--max-steps", "2", "--workers", "0", "--no-progress")
    assert proc.returncode == 2 and not out.exists(), proc.stderr
    assert proc.stderr.strip() == ("--batch-frames (100) must be at least --max-frames (2000): a batch holds at "
                                   "least one whole utterance; lower --max-frames too to train on short clips "
                                   "in small batches")


@pytest.mark.parametrize("args, option, allowed", [
    (["shards", "--jobs", "-1"], "--jobs", ">=0"),
    (["shards", "--shard-size", "0"], "--shard-size", ">=1"),
    (["shards", "--min-duration", "nan"], "--min-duration", "not a finite number"),
    (["shards", "--max-duration", "inf"], "--max-duration", "not a finite number"),
    (["synth", "--hours", "0"], "--hours", ">0"),
    (["synth", "--hours", "nan"], "--hours", "not a finite number"),
    (["lm", "build", "--order", "0"], "--order", "1<=x<=10"),
    (["lm", "build", "--order", "11"], "--order", "1<=x<=10"),
    (["demo", "--minutes", "0"], "--minutes", ">0"),
    (["demo", "--minutes", "-1"], "--minutes", ">0"),
])
def test_data_and_demo_options_are_bounded(tmp_path, args, option, allowed):
    # every path points into tmp_path: were the value accepted, the command would write there
    paths = {"shards": ["--cv-root", str(tmp_path / "cv"), "--out", str(tmp_path / "out")],
             "synth": ["--out", str(tmp_path / "out" / "fr")],
             "lm": ["--shards", str(tmp_path / "out"), "--out", str(tmp_path / "out.arpa")],
             "demo": ["--data", str(tmp_path / "out"), "--shards", str(tmp_path / "s"), "--runs", str(tmp_path / "r")]}
    assert_refused(cli(*args, *paths[args[0]]), option, allowed)
    assert list(tmp_path.iterdir()) == []


def test_shards_durations_must_be_ordered(tmp_path):
    proc = cli("shards", "--cv-root", str(tmp_path), "--out", str(tmp_path / "out"), "--min-duration", "5",
               "--max-duration", "2")
    assert proc.returncode == 1 and proc.stderr.strip() == "need 0 <= --min-duration < --max-duration"
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# steps per epoch: a batch holds at least one utterance and at most --max-batch
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_frames, max_batch", [(100, 256), (10**9, 4), (3000, 256)])
def test_steps_per_epoch_matches_the_batches_of_one_pass(shards_dir, batch_frames, max_batch):
    shards = ShardSet.open(shards_dir)
    cfg = LoaderConfig(batch_frames=batch_frames, max_batch=max_batch, workers=0, bucket_pool=10**6)
    batches = list(make_loader(shards, "train", CharTokenizer(shards.vocab), cfg, train=False))
    utterances = shards.split("train")["utterances"]
    assert sum(len(b) for b in batches) == utterances
    steps = steps_per_epoch(shards, "train", cfg)
    if batch_frames == 100:  # every utterance is longer than 100 frames: one a batch, not frames / 100
        assert steps == len(batches) == utterances < shards.frames("train") // 100
    elif max_batch == 4:  # max_batch, not the frames, cuts the batches
        assert steps == len(batches) == math.ceil(utterances / 4) > 1
    else:  # frames carried by full batches: a lower bound of what bucketing makes
        assert steps == math.ceil(shards.frames("train") / 3000) <= len(batches)
    assert steps_per_epoch(shards, "train", cfg, world=2) == math.ceil(steps / 2)
