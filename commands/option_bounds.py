"""Bounds of every numeric option of `asr-cli`, applied to the commands by `bounded`.

An option made from a config field takes the field's range (`option(..., bounds=Bound(...))`,
pipeline/options.py); the few options a command states itself have a row in BOUNDS (by
parameter name, the same meaning in every command). `bounded` refuses, when cli.py is
imported, a command with a numeric option that has neither, so a new option cannot slip in
unchecked. A value must be
finite (click's FloatRange lets nan through) and inside its range; the range is appended to
the option's `--help`, and a bad value stops the command before it does anything, with one
line naming the option and its range:

    --beam: 100000 is out of range; allowed: 1<=x<=1000 (every hypothesis costs memory: ...)

Checks that tie two options together (--min-duration < --max-duration, --batch-frames >=
--max-frames) are in the command's body, which sees both values.
"""

from __future__ import annotations

import inspect
import typing
from typing import Callable

from typer.models import OptionInfo

from pipeline.options import AT_LEAST_1, POSITIVE, Bound  # noqa: F401  (the table's shorthands)

DECODING_SCORE = Bound(-100, 100, why="a log10-probability weight; tune on dev")

# The options a command states itself (not a config field): by name, the same meaning everywhere.
BOUNDS: dict[str, Bound] = {
    "chunk_ms": Bound(40, 60000, why="one encoder frame (40 ms) at least"),  # export --streaming
    "order": Bound(1, 10, why="the n-gram order"),  # lm build
    "n": AT_LEAST_1,  # plot
    "utterances": AT_LEAST_1,  # bench-loader
    "batch_frames": AT_LEAST_1,  # bench-loader (train's takes `auto` too: checked in its body)
    "seconds": POSITIVE,
    "port": Bound(1, 65535, why="a TCP port"),  # serve
}


def _numeric(annotation) -> bool:
    """int, float, Optional[int], Optional[float] (bool is not numeric here)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return len(args) == 1 and args[0] in (int, float)


def bounded(fail: Callable[[str], None]) -> Callable:
    """Decorator for a typer command: its numeric options get their BOUNDS row (help, check).

    `fail(message)` reports a refused value and stops (cli.py's `fail`, exit status 2).
    """

    def decorate(command: Callable) -> Callable:
        hints = typing.get_type_hints(command)
        for name, param in inspect.signature(command).parameters.items():
            info = param.default
            if not isinstance(info, OptionInfo) or not _numeric(hints.get(name)):
                continue
            bound = getattr(info, "cv_bound", None) or BOUNDS.get(name)  # its config field's, else the table's
            if bound is None:
                raise TypeError(f"{command.__name__}: numeric option {name} has no bounds (option(..., bounds=) "
                                f"on its config field, or a row in {__name__}.BOUNDS)")
            option = next((d for d in info.param_decls or () if d.startswith("--")),
                          "--" + name.replace("_", "-"))
            info.help = f"{info.help or ''} [{bound.text()}]".strip()
            info.callback = _checker(option, bound, fail)
        return command

    return decorate


def _checker(option: str, bound: Bound, fail: Callable[[str], None]) -> Callable:
    def check(value):
        message = bound.problem(option, value)
        if message:
            fail(message)
        return value

    return check
