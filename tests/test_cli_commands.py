"""Every command of README's CLI table runs for real on the test corpus and prints what it
should: the commands without a test elsewhere are run here (in-process, on the session's
fixtures), and `TESTED` names the test of every documented command, so a new row of the
table without one fails."""

from __future__ import annotations

import importlib
import re

import pytest
from typer.testing import CliRunner

from cli import app
from conftest import LANG, ROOT
from test_cli_options import commands

# README's CLI table row -> the test that runs the command and checks its output
TESTED = {
    "synth": "test_cli_commands.test_synth_then_shards_print_their_corpus_and_splits",
    "download": "test_download.test_an_interrupted_download_resumes_and_the_archive_is_checked",
    "shards": "test_cli_commands.test_synth_then_shards_print_their_corpus_and_splits",
    "shards verify": "test_cli_commands.test_shards_verify_prints_ok",
    "checkpoint upgrade": "test_checkpoint.test_checkpoint_upgrade_converts_an_old_checkpoint_and_runs_nothing",
    "checkpoint average": "test_cli_commands.test_train_then_average_print_their_checkpoints",
    "train": "test_cli_commands.test_train_then_average_print_their_checkpoints",
    "eval": "test_cli_commands.test_eval_prints_its_table",
    "lm build": "test_evaluate.test_lm_build_cli_writes_an_lm_the_decoder_loads",
    "transcribe": "test_cli_commands.test_transcribe_prints_a_line_per_file",
    "serve": "test_serve.test_serve_command_serves_the_page_and_the_api",
    "export": "test_export.test_log_probs_and_lengths_equal_pytorch_for_any_batch_and_length",
    "plot": "test_cli_commands.test_plot_writes_the_png_it_names",
    "bench-loader": "test_cli_commands.test_bench_loader_prints_its_rows",
    "demo": "test_demo.test_demo_runs_the_whole_path_and_a_rerun_reuses_it",
}


def run(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def documented_commands() -> set[str]:
    """The commands of README's CLI table: `asr-cli lm build --shards ...` -> "lm build"."""
    known = {" ".join(name.split()[:n]) for name in commands() for n in range(1, len(name.split()) + 1)}
    found = set()
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| `asr-cli ([^`]*)`", line)
        if not m:
            continue
        words, name = m.group(1).split(), ""
        for w in words:
            if f"{name} {w}".strip() not in known:
                break
            name = f"{name} {w}".strip()
        found.add(name)
    return found


def test_every_documented_command_has_a_test_that_runs_it():
    documented = documented_commands()
    assert {"train", "bench-loader", "shards verify", "lm build"} <= documented
    assert documented == set(TESTED), documented ^ set(TESTED)
    for name, test in TESTED.items():
        module, function = test.split(".")
        assert callable(getattr(importlib.import_module(module), function, None)), (name, test)


def test_synth_then_shards_print_their_corpus_and_splits(tmp_path):
    out = run("synth", "--out", tmp_path / "cv" / LANG, "--clips", 12, "--seed", 3, "--jobs", 1)
    assert out.startswith(f"corpus in {tmp_path / 'cv' / LANG}") and "clips" in out
    assert {"dev.tsv", "test.tsv", "train.tsv", "validated.tsv"} <= {p.name for p in (tmp_path / "cv" / LANG).glob("*.tsv")}
    out = run("shards", "--cv-root", tmp_path / "cv", "--lang", LANG, "--out", tmp_path / "shards", "--jobs", 1,
              "--no-progress")
    assert out.splitlines()[0].split() == ["split", "kept", "hours", "speakers", "rejected", "shards", "MB", "MB/h"]
    for split in ("train", "dev", "test"):
        assert re.search(rf"^{split}\s+[1-9]\d*\s+\d+\.\d{{3}}(\s+\d+){{3}}\s+\d+\.\d\s+\d+\.\d$", out, re.M), out
    assert f"are in {tmp_path / 'shards'}" in out


def test_shards_verify_prints_ok(shards_dir):
    out = run("shards", "verify", shards_dir)
    assert out.strip() == f"{shards_dir}: all shards, index.parquet and dataset.json agree"


def test_train_then_average_print_their_checkpoints(shards_dir, tmp_path):
    out = run("train", "--shards", shards_dir, "--out", tmp_path / "run", "--preset", "tiny", "--max-steps", 4,
              "--warmup", 1, "--eval-every", 2, "--eval-utts", 4, "--batch-frames", 4000, "--workers", 0,
              "--average", 2, "--no-progress")
    assert "stopped at step 4 (max_steps)" in out and "dev CER" in out
    assert "averaged.pt (steps 2, 4)" in out
    assert f"checkpoints: {tmp_path / 'run'}/best.pt, {tmp_path / 'run'}/last.pt" in out
    kept = sorted((tmp_path / "run" / "avg").glob("*.pt"))
    out = run("checkpoint", "average", *kept, "--out", tmp_path / "mean.pt")
    assert out.strip() == f"wrote {tmp_path / 'mean.pt'}: the mean of {len(kept)} checkpoints"


def test_eval_prints_its_table(tiny_ctc, shards_dir, tmp_path):
    out = run("eval", "--checkpoint", tiny_ctc, "--shards", shards_dir, "--split", "dev", "--out", tmp_path / "e",
              "--workers", 0, "--no-progress")
    assert re.search(r"^CER\s+\d+\.\d\d%", out, re.M) and re.search(r"^WER\s+\d+\.\d\d%", out, re.M), out
    assert f"results     {tmp_path / 'e'}/utterances.jsonl" in out


def test_transcribe_prints_a_line_per_file(chatty_ckpt, synth_root):
    clips = sorted((synth_root / LANG / "clips").glob("*.mp3"))[:2]
    lines = run("transcribe", "--checkpoint", chatty_ckpt, "--device", "cpu", *clips).splitlines()
    assert len(lines) == 2 and all(lines)


def test_plot_writes_the_png_it_names(shards_dir, tmp_path):
    out = run("plot", "--shards", shards_dir, "--out", tmp_path / "s.png", "--n", 2)
    assert out.strip() == f"wrote {tmp_path / 's.png'}"
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_loader_prints_its_rows(shards_dir):
    out = run("bench-loader", "--shards", shards_dir, "--workers", 0, "--batch-frames", 3000, "--utterances", 16,
              "--seconds", 5, "--train-preset", "tiny")
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["path", "utt/s", "audio"]
    names = [r for r in rows[1:] if re.search(r"\d+\.\d\s+\d+\.\d{3}", r)]
    assert [n.split(" (")[0] for n in names] == ["shards", "on the fly", "training consumes"], out
    assert "shards / training consumption:" in out


@pytest.mark.parametrize("name", sorted(TESTED))
def test_every_documented_command_has_help(name):
    assert CliRunner().invoke(app, [*name.split(), "--help"]).exit_code == 0
