"""`EvalConfig`: every default of `asr-cli eval` (asr/inference/evaluate.py runs it).

Without torch, so the command line's --help reads the defaults without loading a model
library; every field made with `option(...)` is an `asr-cli eval` option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asr.decoding.options import DecodeOptions
from pipeline.options import AT_LEAST_0, AT_LEAST_1, Bound, option


@dataclass
class EvalConfig:
    checkpoint: Path
    shards: Path
    split: str = option("test", "Split to evaluate (every utterance, once).")
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    out: Path | None = option(None, "Output folder (default: <checkpoint folder>/eval-<split>-<mode>).")
    device: str = option("auto", "auto, cpu, cuda, cuda:1 ...")
    batch_frames: int = option(20000, "Padded feature frames per batch.", bounds=AT_LEAST_1)
    max_batch: int = option(256, "Utterances per batch at most.", bounds=AT_LEAST_1)
    workers: int = option(1, "DataLoader workers reading the shards.", bounds=AT_LEAST_0)
    shard_url: str | None = option(None, "Read tars from this URL prefix or '{path}' template.")
    threads: int = option(0, "CPU threads per process (0: cores / processes).", bounds=AT_LEAST_0)
    progress: bool = option(True, "Show a progress bar.")
    chunk_ms: float | None = option(None, "A model trained with --streaming: decode as a live stream in chunks of "
                                          "this many ms would (the same outputs; default: whole utterances).",
                                    bounds=Bound(40, 60000, why="one encoder frame (40 ms) at least"))


@dataclass
class TranscribeOptions:
    """`asr-cli transcribe`'s own defaults (the decoding ones are DecodeOptions' and LiveOptions')."""

    device: str = option("auto", "auto, cpu, cuda, cuda:1 ...")
    batch_size: int = option(1, "Files padded into one batch through the model.",
                             bounds=Bound(1, 4096, why="files padded into one batch"))
    stream: bool = option(False, "Decode as a live stream (a model trained with --streaming): each file read in "
                                 "100 ms blocks, the text printed as it grows on a terminal; the final text is the "
                                 "Python API's rec.stream().")
