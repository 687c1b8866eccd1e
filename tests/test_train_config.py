"""`asr-cli train` reads every training default and --help from asr/training/config.py's
dataclasses, and builds its TrainConfig from the options by name (no mapping by hand)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from typer.testing import CliRunner

import commands.training
from asr.training.config import HELP, SpecAugmentConfig, TrainConfig, options
from cli import app


def _captured(monkeypatch, *args) -> tuple[TrainConfig, int]:
    """The TrainConfig (and --procs) `asr-cli train ARGS` would train with."""
    import asr.training.loop

    seen = {}

    def fake(cfg, procs):
        seen.update(cfg=cfg, procs=procs)
        raise ValueError("captured")  # the command's one-line error path: nothing is trained

    monkeypatch.setattr(asr.training.loop, "train_local", fake)
    result = CliRunner().invoke(app, ["train", *map(str, args)])
    assert result.exit_code == 1 and "captured" in result.output, result.output
    return seen["cfg"], seen["procs"]


def test_the_cli_defaults_are_the_dataclass_defaults(shards_dir, tmp_path, monkeypatch):
    cfg, procs = _captured(monkeypatch, "--shards", shards_dir, "--out", tmp_path / "run")
    assert cfg == TrainConfig(shards=str(shards_dir), out=str(tmp_path / "run"))
    assert procs == 1


def test_every_option_field_is_an_option_with_its_default_and_help():
    params = inspect.signature(commands.training.train).parameters
    fields = {**options(TrainConfig), **options(SpecAugmentConfig)}
    assert len(fields) > 35
    for name, f in fields.items():
        info = params[name].default
        assert info.default == f.default, name
        assert info.help.startswith(f.metadata[HELP]), name
    # the fields that are not options are not on the command line
    internal = {f.name for f in dataclasses.fields(TrainConfig)} - set(fields)
    assert internal == {"shards", "out", "model_options", "train_split", "dev_split", "min_lr_ratio", "specaug"}
    assert not internal & (set(params) - {"shards", "out"})


def test_given_options_land_in_the_config_by_name(shards_dir, tmp_path, monkeypatch):
    cfg, procs = _captured(monkeypatch, "--shards", shards_dir, "--out", tmp_path / "r", "--model", "las",
                           "--lr", "0.002", "--freq-masks", "0", "--time-ratio", "0.1", "--rnn-layers", "2",
                           "--listener", "pyramid", "--ctc-weight", "0.5", "--compile", "--no-progress",
                           "--procs", "2", "--shard-url", "pipe:cat {path}")
    assert (cfg.model, cfg.lr, cfg.ctc_weight, cfg.compile, cfg.progress, cfg.shard_url) == (
        "las", 0.002, 0.5, True, False, "pipe:cat {path}")
    assert cfg.specaug == SpecAugmentConfig(freq_masks=0, time_ratio=0.1)
    assert cfg.model_options == {"rnn_layers": 2, "listener": "pyramid", "ctc_weight": 0.5}
    assert procs == 2


@pytest.mark.parametrize("args, message", [
    (["--listener", "pyramid"], "--listener applies to --model las only"),
    (["--model", "las", "--upsample", "2"], "--upsample applies to --model ctc only"),
])
def test_model_options_of_the_other_kind_are_refused(shards_dir, args, message):
    result = CliRunner().invoke(app, ["train", "--shards", str(shards_dir), *args])
    assert result.exit_code == 1 and message in result.output
