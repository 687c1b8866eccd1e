"""Bounds of every numeric option of `asr-cli`: one table, applied to the commands by `bounded`.

Every int / float option of every command has a row in BOUNDS (by parameter name, the same
meaning in every command), and `bounded` refuses, when cli.py is imported, a command with a
numeric option that has none, so a new option cannot slip in unchecked. A value must be
finite (click's FloatRange lets nan through) and inside its range; the range is appended to
the option's `--help`, and a bad value stops the command before it does anything, with one
line naming the option and its range:

    --beam: 100000 is out of range; allowed: 1<=x<=1000 (every hypothesis costs memory: ...)

Checks that tie two options together (--min-duration < --max-duration, --batch-frames >=
--max-frames) are in the command's body, which sees both values.
"""

from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass
from typing import Callable

from typer.models import OptionInfo


@dataclass(frozen=True)
class Bound:
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
DECODING_SCORE = Bound(-100, 100, why="a log10-probability weight; tune on dev")

BOUNDS: dict[str, Bound] = {
    # decoding (eval, transcribe)
    "beam": Bound(1, 1000, why="every hypothesis costs memory: 100000 needs tens of GB"),
    "lm_weight": DECODING_SCORE,
    "word_score": DECODING_SCORE,
    "ctc_weight": FRACTION,
    "batch_size": Bound(1, 4096, why="files padded into one batch"),
    # training schedule and batches
    "max_steps": AT_LEAST_1,
    "epochs": AT_LEAST_0,
    "steps_this_run": AT_LEAST_0,
    "time_budget": AT_LEAST_0,
    "batch_frames": AT_LEAST_1,
    "max_batch": AT_LEAST_1,
    "max_frames": AT_LEAST_1,
    "lr": POSITIVE,
    "warmup": AT_LEAST_0,
    "freeze_encoder_steps": AT_LEAST_0,
    "weight_decay": AT_LEAST_0,
    "clip": POSITIVE,
    "eval_every": AT_LEAST_0,
    "eval_utts": AT_LEAST_1,
    "log_every": AT_LEAST_1,
    "label_smoothing": FRACTION_BELOW_1,
    "sampling_rate": FRACTION,
    "average": Bound(0, 100, why="checkpoints kept on disk, each the model's size"),
    # processes
    "workers": AT_LEAST_0,
    "threads": AT_LEAST_0,
    "procs": AT_LEAST_1,
    "jobs": AT_LEAST_0,
    "seed": AT_LEAST_0,
    "train_seed": AT_LEAST_0,
    # model shape
    "rnn_layers": AT_LEAST_1,
    "rnn_hidden": AT_LEAST_1,
    "conv_channels": AT_LEAST_1,
    "proj_dim": AT_LEAST_1,
    "dropout": FRACTION_BELOW_1,
    "frame_stack": AT_LEAST_1,
    "pyramid_layers": AT_LEAST_0,
    "att_dim": AT_LEAST_1,
    "att_temperature": POSITIVE,
    "decoder_layers": AT_LEAST_1,
    "decoder_hidden": AT_LEAST_1,
    "embed_dim": AT_LEAST_1,
    "d_model": AT_LEAST_1,
    "blocks": AT_LEAST_1,
    "heads": AT_LEAST_1,
    "conv_kernel": AT_LEAST_1,
    "layer_scale": FRACTION,
    "subsampling": Bound(4, 8, why="4 or 8"),
    "upsample": Bound(1, 2, why="1 or 2"),
    "left_chunks": Bound(-1, 1000, why="-1 (all) or a number of chunks"),
    # streaming decoding: a chunk of one encoder frame (40 ms) to a minute; an endpoint up to a minute
    "chunk_ms": Bound(40, 60000, why="one encoder frame (40 ms) at least"),
    "endpoint_ms": Bound(0, 60000, why="0: never"),
    # SpecAugment
    "freq_masks": AT_LEAST_0,
    "freq_width": AT_LEAST_0,
    "time_masks": AT_LEAST_0,
    "time_width": AT_LEAST_0,
    "time_ratio": FRACTION,
    "freq_warp": FRACTION_BELOW_1,
    "specaug_start": AT_LEAST_0,
    # data
    "shard_size": AT_LEAST_1,
    "min_duration": AT_LEAST_0,
    "max_duration": POSITIVE,
    "hours": POSITIVE,
    "clips": AT_LEAST_1,
    "minutes": POSITIVE,
    "order": Bound(1, 10, why="the n-gram order"),
    "n": AT_LEAST_1,
    "utterances": AT_LEAST_1,
    "seconds": POSITIVE,
    # serve
    "port": Bound(1, 65535, why="a TCP port"),
    "max_mb": Bound(0, 100000, lo_open=True, why="upload size limit in MB"),
    "max_seconds": Bound(0, 86400, lo_open=True, why="audio length limit in seconds"),
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
            bound = BOUNDS.get(name)
            if bound is None:
                raise TypeError(f"{command.__name__}: numeric option {name} has no row in {__name__}.BOUNDS")
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
