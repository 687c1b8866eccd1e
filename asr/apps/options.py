"""The apps' configs, without torch (so the command line's --help reads them fast): `ServeConfig`
(asr-cli serve, asr/apps/serve.py) and `DemoConfig` with the demo's training recipes (asr-cli
demo, asr/apps/demo.py). Every field made with `option(...)` is a command-line option.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from asr.data.config import SpecAugmentConfig
from asr.decoding.options import LiveOptions
from pipeline.feature_codecs import DEFAULT_CODEC
from pipeline.options import AT_LEAST_0, AT_LEAST_1, POSITIVE, Bound, option

DEMO_LANG = "fr"


@dataclass
class ServeConfig:
    checkpoint: Path
    lm: Path | None = option(None, "Word n-gram LM (ARPA, from `asr-cli lm build`) for beam search. Adds the "
                                   "beam-lm mode (the default then).")
    device: str = option("cpu", "cpu, cuda, cuda:1, auto ...")
    beam: int | None = option(None, "Hypotheses of the beam and beam-lm modes (default: the model kind's).",
                              bounds=Bound(1, 1000, why="every hypothesis costs memory"))
    max_mb: float = option(50.0, "Uploads larger than this many MB are refused (413).",
                           bounds=Bound(0, 100000, lo_open=True, why="upload size limit in MB"))
    max_seconds: float = option(600.0, "Audio longer than this many seconds is refused (413).",
                                bounds=Bound(0, 86400, lo_open=True, why="audio length limit in seconds"))
    workers: int = option(1, "Model replicas decoding at once (each one a copy of the model in memory).",
                          bounds=Bound(1, 64, why="each replica is a copy of the model"))
    max_sessions: int = option(0, "Live sessions (/stream) open at once at most, 0: no cap; a session holds a few MB "
                                  "(its caches and features: ~3.5 MB for conformer-small, ~12 MB for conformer-base).",
                               bounds=Bound(0, 100000))
    body_timeout: float = 120.0  # seconds an upload's whole body may take to arrive
    stream_idle: float = 30.0  # seconds a /stream session may send nothing before it is closed
    # /stream (live sessions): the chunk (None: asr/inference/streaming.py's default, or an ONNX
    # export's own) and the silence that closes a segment: DecodeOptions' LiveOptions
    live: LiveOptions = field(default_factory=LiveOptions)

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1e6)


# The demo's training recipes (chosen on the dev split of the seed-0 corpus, 2 CPU cores).
# SpecAugment's masks are off: in a 15-minute run they cost more than they give (dev CER of
# the small CTC model at step 1000: 25.7 % with the LD masks from step 600, 23.2 % without);
# the VTLP-style frequency warp stays on. Real training keeps the masks (the CLI default).
# precision "fast": fp32 or bf16, whichever a few timed steps find faster on the machine (asr/runtime/precision.py).
# The shards carry speed copies (DemoConfig.speeds): dev 19.1 % against 20.1 % without (docs/RESULTS.md).
_COMMON = dict(preset="small", batch_frames=10000, warmup=100, min_lr_ratio=0.02, precision="fast",
               specaug=SpecAugmentConfig(freq_masks=0, time_masks=0, freq_warp=0.1), eval_every=250, eval_utts=200,
               log_every=25, workers=1)
DEMO_TRAIN: dict[str, dict] = {
    "ctc": dict(_COMMON, max_steps=2600, lr=3e-3),
    "las": dict(_COMMON, max_steps=1200, lr=2e-3, ctc_weight=0.3, label_smoothing=0.1),
    # the transducer: ctc/conformer-small's encoder and recipe (its step budget, lr, warm-up)
    "rnnt": dict(_COMMON, preset="conformer-small", max_steps=2300, lr=1e-3, warmup=300, ctc_weight=0.3),
}


# `asr-cli demo --preset NAME`: another model's recipe (DEMO_TRAIN's, these changed), trained
# into runs/demo-<model>-<preset>. conformer-small leaves CTC's blank plateau only at a lower lr
# than the BiGRU's (at 3e-3 its dev CER stayed at 89 % for 15 minutes; docs/RESULTS.md, part 2).
DEMO_PRESETS: dict[tuple[str, str], dict] = {
    ("ctc", "conformer-small"): dict(preset="conformer-small", max_steps=2300, lr=1e-3, warmup=300),
    ("las", "conformer-small"): dict(preset="conformer-small", max_steps=1200, lr=1e-3, warmup=300),
    # one model for whole files and live streaming (asr/inference/streaming.py): conformer-small's recipe
    ("ctc", "conformer-small-streaming"): dict(preset="conformer-small-streaming", max_steps=2300, lr=1e-3, warmup=300),
    ("rnnt", "conformer-small"): dict(preset="conformer-small"),  # DEMO_TRAIN's
    ("rnnt", "conformer-small-streaming"): dict(preset="conformer-small-streaming"),
}


@dataclass
class DemoConfig:
    model: str = option("ctc", "ctc, las or rnnt (the transducer: conformer-small).")
    hours: float = option(5.0, "Hours of synthetic speech.", bounds=POSITIVE)
    seed: int = option(0, "Seed of the synthetic corpus.", bounds=AT_LEAST_0)
    data: Path = option(Path("data/demo"), "Common Voice root of the synthetic corpus.")
    shards: Path = option(Path("shards/demo-fr"), "Shard folder to build.")
    runs: Path = option(Path("runs"), "Runs folder: the model goes to <runs>/demo-<model>.")
    minutes: float = option(45.0, "A cap on training's wall clock: the recipe is a number of steps, and a run the "
                                  "cap cuts short says so in the report (rerun to finish it).", bounds=POSITIVE)
    train_seed: int = option(0, "Seed of the training run (run folder <runs>/demo-<model>-seed<N> when not 0).",
                             bounds=AT_LEAST_0)
    precision: str = option("", "fp32 or bf16 to force one (run folder ...-<precision>); default: the faster, "
                                "measured.")
    jobs: int = option(0, "Worker processes for synthesis and shards (0: every core).", bounds=AT_LEAST_0)
    device: str = option("auto", "auto, cpu, cuda ...")
    retrain: bool = option(False, "Train again even if the run folder holds a finished model.")
    max_steps: int | None = option(None, "Train this many steps instead of the demo recipe's.", bounds=AT_LEAST_1)
    transcribe_clips: int = 2
    progress: bool = option(True, "Show progress bars.")
    train_overrides: dict = field(default_factory=dict)
    procs: int = 0  # training processes, 0: two on a CPU with two cores or more, else one
    preset: str = option("", "Another model's demo recipe: conformer-small (ctc, las), conformer-small-streaming "
                             "(ctc, rnnt); run folder <runs>/demo-<model>-<preset>.")
    speeds: tuple[float, ...] = (0.9, 1.1)  # speed-perturbed copies of the train split in the shards
    codec: str = option(DEFAULT_CODEC, "The shards' feature codec: qdelta or float16 (use another --shards folder "
                                       "per codec).")

    def train_procs(self) -> int:
        """On a CPU, two data-parallel processes of half the cores each train the small models
        faster than one process with every core (see asr.training.loop.train_local)."""
        if self.procs:
            return self.procs
        import torch

        device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        return 2 if device == "cpu" and len(os.sched_getaffinity(0)) >= 2 else 1

    @property
    def run(self) -> Path:
        name = f"demo-{self.model}-{self.preset}" if self.preset else f"demo-{self.model}"
        name += f"-seed{self.train_seed}" if self.train_seed else ""
        return self.runs / (f"{name}-{self.precision}" if self.precision else name)

    def recipe(self) -> dict:
        """DEMO_TRAIN's recipe for the model, with the preset's changes if any."""
        if self.preset and (self.model, self.preset) not in DEMO_PRESETS:
            known = ", ".join(p for m, p in DEMO_PRESETS if m == self.model)
            raise ValueError(f"the {self.model} demo has no preset {self.preset!r} (choose from {known})")
        recipe = {**DEMO_TRAIN[self.model], **DEMO_PRESETS.get((self.model, self.preset), {})}
        return {**recipe, "precision": self.precision} if self.precision else recipe
