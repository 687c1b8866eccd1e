"""`synthesize`: plan the corpus, render every clip (in worker processes), write the TSVs.

A corpus is made once: the stamp records its parameters, and a later call with the same
parameters returns the stamp's summary; a corpus this generator did not make is never
touched.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from synth.layout import (
    STAMP,
    corpus_complete,
    has_foreign_corpus,
    read_stamp,
    remove_stale_clips,
    summarize,
    summary_from_stamp,
    write_stamp,
    write_tsvs,
)
from synth.options import SynthOptions
from synth.plan import Plan, SynthConfig, make_plan, split_counts
from synth.render import ClipResult, check_espeak, render_clip

SUPPORTED_LANGS = ("fr",)


class CorpusExistsError(FileExistsError, RuntimeError):
    """`out` holds a corpus this generator did not make; it is never overwritten.

    Also a RuntimeError, so callers that report RuntimeErrors cleanly (the CLI) do so here.
    """


def synthesize(out: Path, lang: str = SynthOptions.lang, hours: float = SynthOptions.hours,
               seed: int = SynthOptions.seed, jobs: int | None = None, num_clips: int | None = None,
               progress: bool = True) -> dict:
    """Write a synthetic Common Voice language folder at `out` (e.g. data/demo/fr).

    `num_clips`, when given, overrides `hours`. `jobs=None` uses every core; the output is
    byte-identical whatever `jobs` is. If `out` already holds a complete corpus made with
    the same parameters, nothing is redone and its summary is returned ("skipped": True).

    Returns {"clips", "hours", "speakers" (per split), "sample_rates", "stereo_clips",
    "seconds", "skipped"}.
    """
    if lang not in SUPPORTED_LANGS:
        raise ValueError(f"the synthetic corpus exists for {', '.join(SUPPORTED_LANGS)} only "
                         f"(its sentence generator and espeak-ng voices are French); "
                         f"got lang={lang!r}")
    if num_clips is None:
        if hours <= 0:
            raise ValueError(f"hours must be > 0, got {hours}")
        num_clips = max(3, round(hours * 3600 / SynthConfig.mean_clip_seconds))
    cfg = SynthConfig(lang=lang, seed=seed, num_clips=int(num_clips))
    split_counts(cfg.num_clips, cfg)  # fails on too few clips before touching the disk
    out = Path(out)
    params = json.loads(json.dumps(asdict(cfg)))  # tuples -> lists, as the stamp holds them

    stamp = read_stamp(out)
    if stamp is not None and stamp.get("complete") and stamp.get("config") == params \
            and corpus_complete(out):
        return summary_from_stamp(stamp)
    if stamp is None and has_foreign_corpus(out, lang):
        raise CorpusExistsError(f"{out} holds a Common Voice corpus that this generator did "
                                f"not make (no {STAMP}); refusing to overwrite it: choose "
                                f"another --out")

    variants = check_espeak()
    start = time.time()
    (out / "clips").mkdir(parents=True, exist_ok=True)
    write_stamp(out, params)
    plan = make_plan(out, cfg, variants)
    if stamp is not None:  # an earlier synthetic corpus: drop its clips the plan lacks
        remove_stale_clips(out, lang, {Path(j.path).name for j in plan.jobs})

    results = _render_all(plan, jobs, progress)
    write_tsvs(out, plan, results)
    summary = summarize(plan, results, time.time() - start)
    write_stamp(out, params, summary)
    return summary


def _render_all(plan: Plan, jobs: int | None, progress: bool) -> dict[int, ClipResult]:
    """Render every clip of the plan, in `jobs` processes (None or <= 0: every core)."""
    jobs = (os.cpu_count() or 1) if jobs is None or jobs <= 0 else jobs
    results: dict[int, ClipResult] = {}
    bar = tqdm(total=len(plan.jobs), desc=f"synth {plan.config.lang}", unit="clip",
               disable=not progress)
    try:
        if jobs == 1:
            for job in plan.jobs:
                r = render_clip(job)
                results[r.index] = r
                bar.update()
        else:
            with mp.get_context("spawn").Pool(jobs) as pool:
                for r in pool.imap_unordered(render_clip, plan.jobs, chunksize=4):
                    results[r.index] = r
                    bar.update()
    finally:
        bar.close()
    return results
