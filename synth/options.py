"""`SynthOptions`: the defaults of `asr-cli synth` and of `synthesize` (stated once, here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import DEFAULT_LANG
from pipeline.options import AT_LEAST_0, AT_LEAST_1, POSITIVE, option


@dataclass
class SynthOptions:
    out: Path = option(Path("data/demo/fr"), "Language folder to write (clips/ and the TSVs).")
    lang: str = option(DEFAULT_LANG, "Language (only French has a sentence generator).")
    hours: float = option(5.0, "Hours of audio to synthesise.", bounds=POSITIVE)
    clips: int | None = option(None, "Number of clips (overrides --hours).", bounds=AT_LEAST_1)
    seed: int = option(0, "Same seed, same corpus.", bounds=AT_LEAST_0)
    jobs: int = option(0, "Worker processes (0: every core).", bounds=AT_LEAST_0)
