"""What every command shares: the typer app, `fail` (one red line, exit 1), the bounds check of
numeric options, and reading a shard folder's language."""

from __future__ import annotations

from pathlib import Path

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



def shards_lang(shards: Path) -> str:
    try:
        return read_dataset(shards)["lang"]
    except (OSError, ValueError, KeyError):
        fail(f"{dataset_path(shards)} not found: --shards must be a folder made by `asr-cli shards`")
