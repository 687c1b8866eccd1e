"""What every command shares: the typer app, `fail` (one red line, exit 1), the bounds check of
numeric options, the options made from config dataclasses (`config_options`), and reading a
shard folder's language."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from pathlib import Path
from typing import Callable

import typer

from commands.option_bounds import bounded as _bounded
from pipeline.options import BOUNDS, FLAG, HELP, options
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

def _option_type(hint):
    """A dataclass field's type as typer takes it: `X | None` -> Optional[X]."""
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return typing.Optional[rest[0]] if len(rest) == 1 else hint
    return hint


def _typer_option(f: dataclasses.Field, default, help_suffix: str = ""):
    decls = f.metadata.get(FLAG, ())
    if not decls and f.default is False and default is not None:
        decls = ("--" + f.name.replace("_", "-"),)  # a bool that defaults to False is a flag (--compile)
    info = typer.Option(default, *decls, help=(f.metadata[HELP] + help_suffix).strip())
    if BOUNDS in f.metadata:
        info.cv_bound = f.metadata[BOUNDS]  # commands/option_bounds.py's `bounded` checks and shows it
    return info


def config_options(*configs: type, overrides: tuple[type, ...] = (), skip: tuple[str, ...] = ()) -> Callable:
    """Decorator for a typer command whose signature ends in `**options`: every option field
    (pipeline/options.py's `option`) of `configs` becomes a keyword option of the same name,
    with the field's default, --help and range, so a default is stated once, in its dataclass,
    and a new option is its field and its use. The fields of `overrides` (model shapes) become
    options that default to None: the value of the chosen preset. Options the command states
    itself, or names in `skip`, are left as they are. The command receives them in `options`."""

    def decorate(command: Callable) -> Callable:
        signature, resolved = inspect.signature(command), typing.get_type_hints(command)
        params = [p.replace(annotation=resolved.get(p.name, p.annotation)) for p in signature.parameters.values()
                  if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in params} | set(skip)
        added = []
        for config, as_override in [(c, False) for c in configs] + [(c, True) for c in overrides]:
            hints = typing.get_type_hints(config)
            for name, f in options(config).items():
                if name in taken:
                    continue
                taken.add(name)
                if as_override:
                    info = _typer_option(f, None, " (default: the preset's)")
                    hint = typing.Optional[_option_type(hints[name])]
                else:
                    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    info, hint = _typer_option(f, default), _option_type(hints[name])
                added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=hint))

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=params + added)
        wrapper.__annotations__ = {p.name: p.annotation for p in params + added}
        return wrapper

    return decorate


def option_of(config: type, name: str):
    """The typer option of one field of `config` (its default, help and range), for a command
    that takes only a few of a config's options."""
    f = options(config)[name]
    return _typer_option(f, f.default if f.default is not dataclasses.MISSING else f.default_factory())


def fields_of(config: type, given: dict) -> dict:
    """The entries of `given` (a command's options) that are fields of `config`."""
    names = {f.name for f in dataclasses.fields(config)}
    return {k: v for k, v in given.items() if k in names}


def shards_lang(shards: Path) -> str:
    try:
        return read_dataset(shards)["lang"]
    except (OSError, ValueError, KeyError):
        fail(f"{dataset_path(shards)} not found: --shards must be a folder made by `asr-cli shards`")
