"""`option(default, help, bounds=...)`: a config dataclass field that is also a command-line option.

Every command's options are its config's fields (commands/base.py's `config_options` turns
them into typer options), so an option's default, --help and range are stated once, beside
the code that uses them. Here, in the lower package, because the configs of both halves use
it (pipeline's BuildConfig, asr's TrainConfig, DecodeOptions, EvalConfig ...). A leaf:
imports nothing of ours.

Field metadata: HELP (the --help text), BOUNDS (a `Bound`: the range of a numeric option,
checked before a command runs and shown in its --help), FLAG (the option's spellings when not
the plain --name, e.g. ("--dry-run",)), HIDDEN (a field the command line does not show).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

HELP = "help"
BOUNDS = "bounds"
FLAG = "flag"


@dataclass(frozen=True)
class Bound:
    """The range of a numeric option: lo / hi (None: open-ended), either end excluded."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded
    hi_open: bool = False
    why: str = ""  # said after the range when a value is refused

    def text(self) -> str:
        """1<=x<=1000, 0<=x<1, >=1, >0 (not click's `x>=1`: rich's help markup would take `[x...]` for
        a style tag and print nothing)."""
        left = f"{self.lo:g}{'<' if self.lo_open else '<='}" if self.lo is not None else ""
        right = f"{'<' if self.hi_open else '<='}{self.hi:g}" if self.hi is not None else ""
        if self.lo is not None and self.hi is None:
            return f"{'>' if self.lo_open else '>='}{self.lo:g}"
        return f"{left}x{right}" if left or right else "finite"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)))

    def problem(self, option: str, value) -> str | None:
        """One line for a refused value, None for a good one (None: the option was not given)."""
        if value is None or self.contains(value):
            return None
        why = f" ({self.why})" if self.why else ""
        what = "not a finite number" if isinstance(value, float) and not math.isfinite(value) else "out of range"
        return f"{option}: {value!r} is {what}; allowed: {self.text()}{why}"


AT_LEAST_0, AT_LEAST_1, POSITIVE = Bound(0), Bound(1), Bound(0, lo_open=True)
FRACTION, FRACTION_BELOW_1 = Bound(0, 1), Bound(0, 1, hi_open=True)


def option(default=dataclasses.MISSING, help: str = "", *, bounds: Bound | None = None, flag: tuple = (),
           default_factory=dataclasses.MISSING):
    """A field that is also a command-line option: its default, --help and range, stated once."""
    meta = {HELP: help}
    if bounds is not None:
        meta[BOUNDS] = bounds
    if flag:
        meta[FLAG] = tuple(flag)
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def options(cls) -> dict[str, dataclasses.Field]:
    """name -> field of the dataclass `cls`'s fields that are command-line options."""
    return {f.name: f for f in dataclasses.fields(cls) if HELP in f.metadata}
