"""What every command shares: the typer app, `fail` (one red line, exit 1), the bounds check of
numeric options, options read from a config dataclass (`from_config`), and reading a shard
folder's language."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Callable

import typer

from commands.option_bounds import bounded as _bounded
from pipeline.shardformat import dataset_path, read_dataset

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train your own speech recogniser on Mozilla Common Voice: MP3 -> shards -> model -> text.",
)


def fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


bounded = _bounded(lambda message: fail(message, 2))  # every numeric option: commands/option_bounds.py

FROM_CONFIG = typer.Option(None, hidden=True)  # a parameter's default: `from_config` replaces it


def from_config(*configs: type) -> Callable:
    """Decorator for a typer command: each parameter whose default is FROM_CONFIG becomes the
    option of the `configs` field of its name (asr/train_config.py's `option`), with that
    field's default and help, so a default is stated once, in its dataclass. A bool field
    that defaults to False is a flag (`--compile`), one that defaults to True has `--no-X`."""
    fields = {}
    for config in configs:
        fields.update({f.name: f for f in dataclasses.fields(config) if "help" in f.metadata})

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        params = []
        for name, param in signature.parameters.items():
            if param.default is FROM_CONFIG:
                if name not in fields:
                    raise TypeError(f"{command.__name__}: {name} is not an option of {[c.__name__ for c in configs]}")
                f = fields[name]
                flag = ("--" + name.replace("_", "-"),) if f.default is False else ()
                param = param.replace(default=typer.Option(f.default, *flag, help=f.metadata["help"]))
            params.append(param)
        command.__signature__ = signature.replace(parameters=params)
        return command

    return decorate



def shards_lang(shards: Path) -> str:
    try:
        return read_dataset(shards)["lang"]
    except (OSError, ValueError, KeyError):
        fail(f"{dataset_path(shards)} not found: --shards must be a folder made by `asr-cli shards`")
