"""`make demo` / `asr-cli demo`: the whole product on a synthetic French corpus, no download.

    synth (espeak-ng, ~5 h, Common Voice layout)   data/demo/fr/
      -> shards (16 kHz log-Mel, webdataset)       shards/demo-fr/
      -> train (small CTC or LAS, a step budget)   runs/demo-<model>/
      -> lm build (3-gram of the train text)       runs/demo-<model>/lm-3gram.arpa
      -> eval test: greedy, beam + LM              runs/demo-<model>/eval-test-*/
      -> transcribe two test clips (their MP3s)
      -> report                                    runs/demo-<model>/report.md, report.json

Every stage reuses what an earlier run finished: the corpus (synth stamp), the shards
(finished shards are skipped), the model (a run with summary.json is done; one with only
last.pt, e.g. killed half-way, is resumed). `--retrain` trains again from scratch.

Training settings (`DEMO_TRAIN`) were chosen on the dev split of this corpus for 2 CPU cores.
The recipe is a number of steps, so every machine trains the same model up to run-to-run noise
and a faster one only finishes sooner; the wall clock (`minutes`) is a cap, not the budget: a
run it cuts short ends with a checkpoint, and the report says so and what to expect of it.
The measured figures, with their spread over training seeds, are in docs/RESULTS.md.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from asr.apps.options import DEMO_LANG, DEMO_PRESETS, DEMO_TRAIN, DemoConfig  # noqa: F401  (the recipes)
from asr.decoding.decoder import DecodeOptions
from asr.decoding.lm import build_lm_from_shards
from asr.inference.evaluate import EvalConfig, evaluate
from asr.inference.evaluate import format_summary as format_eval
from asr.inference.transcribe import FileFailure, Transcriber
from asr.training.loop import TrainConfig, train_local
from pipeline.build import BuildConfig, build, format_summary
from pipeline.shardformat import dataset_path, read_index
from synth import synthesize


def _stage(name: str) -> float:
    print(f"\n== {name} " + "=" * max(0, 70 - len(name)), flush=True)
    return time.time()


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage (reusing finished ones); returns the report (also written as JSON and
    Markdown in the run folder)."""
    if cfg.model not in DEMO_TRAIN:
        raise ValueError(f"--model must be one of {', '.join(DEMO_TRAIN)}, not {cfg.model!r}")
    cfg.recipe()  # an unknown --preset stops here, before any stage
    report: dict = {"model": cfg.model, "stages": {}}

    t = _stage("1/6 synthetic corpus (espeak-ng, Common Voice layout)")
    corpus = synthesize(cfg.data / DEMO_LANG, lang=DEMO_LANG, hours=cfg.hours, seed=cfg.seed,
                        jobs=cfg.jobs or None, progress=cfg.progress)
    report["corpus"] = {"path": str(cfg.data / DEMO_LANG), "reused": corpus["skipped"], "clips": corpus["clips"],
                        "hours": corpus["hours"], "speakers": corpus["speakers"], "seconds": corpus["seconds"]}
    print(("reused " if corpus["skipped"] else "made ") + f"{cfg.data / DEMO_LANG}: {corpus['clips']} clips, "
          f"{corpus['hours']['validated']:.2f} h, speakers {corpus['speakers']}")  # validated: every clip, once
    report["stages"]["synth"] = round(time.time() - t, 1)

    t = _stage("2/6 shards (16 kHz log-Mel features, webdataset tars)")
    built = build(BuildConfig(cv_root=cfg.data, lang=DEMO_LANG, out=cfg.shards, jobs=cfg.jobs,
                              speeds=cfg.speeds, codec=cfg.codec, progress=cfg.progress))
    print(format_summary(built))
    run = built["run"]
    report["shards"] = {
        "path": str(cfg.shards), "built": run["shards_built"], "reused": run["shards_reused"],
        "hours": {s: v["hours"] for s, v in built["splits"].items()},
        "utterances": {s: v["utterances"] for s, v in built["splits"].items()},
        "speed_copies": built["splits"]["train"].get("speed_copies", {}).get("utterances", 0),  # in train's count
        "rejects": built["rejects"], "jobs": run["jobs"],
        "audio_hours_processed": run["audio_hours_processed"], "extract_seconds": run["extract_seconds"],
        "realtime_factor": run["realtime_factor"] or None,  # None: every shard was reused
    }
    report["stages"]["shards"] = round(time.time() - t, 1)

    t = _stage(f"3/6 train {cfg.model} ({cfg.recipe()['max_steps'] if cfg.max_steps is None else cfg.max_steps} steps,"
               f" capped at {cfg.minutes:g} min)")
    report["train"] = _train(cfg)
    report["stages"]["train"] = round(time.time() - t, 1)
    ckpt, report["checkpoint_choice"] = pick_checkpoint(cfg.run, report["train"])
    print(f"evaluating {report['checkpoint_choice']}")

    t = _stage("4/6 word 3-gram LM of the train sentences")
    arpa = cfg.run / "lm-3gram.arpa"
    if not arpa.is_file() or arpa.stat().st_mtime < dataset_path(cfg.shards).stat().st_mtime:
        stats = build_lm_from_shards(cfg.shards, 3, arpa)
        print(f"wrote {arpa}: {stats['vocab_size']} words, n-grams {stats['ngrams']}")
    else:
        print(f"reused {arpa}")
    report["lm"] = str(arpa)
    report["stages"]["lm"] = round(time.time() - t, 1)

    t = _stage("5/6 evaluate on the test split (speakers and sentences unseen in training)")
    report["eval"] = {}
    for name, options in (("greedy", DecodeOptions()), ("beam+lm", DecodeOptions(lm=arpa))):
        s = evaluate(EvalConfig(checkpoint=ckpt, shards=cfg.shards, split="test", decode=options,
                                device=cfg.device, progress=cfg.progress))
        print(format_eval(s) + "\n")
        report["eval"][name] = {k: s[k] for k in ("mode", "cer", "wer", "utterances", "rtf", "out")}
    report["stages"]["eval"] = round(time.time() - t, 1)

    t = _stage("6/6 transcribe test clips (MP3 -> text)")
    report["transcripts"] = _transcribe_examples(cfg, ckpt, arpa)
    report["stages"]["transcribe"] = round(time.time() - t, 1)

    report["checkpoint"] = str(ckpt)
    report["tensorboard"] = f"tensorboard --logdir {cfg.run / 'tb'}"
    (cfg.run / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    text = format_report(report)
    (cfg.run / "report.md").write_text(text + "\n")
    print("\n" + text)
    return report


def _train(cfg: DemoConfig) -> dict:
    run = cfg.run
    if cfg.retrain and run.exists():
        shutil.rmtree(run)
    done = run / "summary.json"
    finished = done.is_file() and (run / "best.pt").is_file()
    if finished and json.loads(done.read_text())["stopped_by"] not in ("max_steps", "epochs"):
        finished = False  # interrupted (Ctrl-C) or cut short by the clock: resume it
    if finished:
        summary = json.loads(done.read_text())
        print(f"reused the model trained in {run} (step {summary['step']}, {summary['seconds']:.0f}s); "
              f"`asr-cli demo --retrain` or `make clean-demo` trains again")
        summary["reused"] = True
    else:
        recipe = {**cfg.recipe(), **cfg.train_overrides}
        if cfg.max_steps is not None:
            recipe["max_steps"] = cfg.max_steps
            recipe["warmup"] = min(recipe["warmup"], max(1, cfg.max_steps // 4))
            recipe["eval_every"] = min(recipe["eval_every"], max(1, cfg.max_steps // 2))
        preset = recipe.pop("preset")
        procs = cfg.train_procs()
        if procs > 1:  # the same batch per step, split over the processes, which load their own
            recipe["batch_frames"] //= procs
            recipe["workers"] = 0
        resume = (run / "last.pt").is_file()
        if resume:
            print(f"resuming the interrupted run in {run}")
        summary = train_local(TrainConfig(shards=str(cfg.shards), out=str(run), model=cfg.model, preset=preset,
                                          time_budget=cfg.minutes * 60, resume=resume, seed=cfg.train_seed,
                                          device=cfg.device, progress=cfg.progress, **recipe), procs)
        summary["reused"] = False
    summary["curve"] = training_curve(run / "metrics.jsonl")
    return summary


def pick_checkpoint(run: Path, summary: dict) -> tuple[Path, str]:
    """best.pt, or averaged.pt (a recipe with `average`) when its dev CER is the lower one:
    chosen on dev only -> (path, why, for the report)."""
    best = summary.get("best_dev_cer")
    averaged = summary.get("averaged")
    if averaged and (run / "averaged.pt").is_file() and best is not None:
        cer = averaged["dev"]["cer"]
        if cer < best:
            return run / "averaged.pt", f"averaged.pt (dev CER {100 * cer:.2f}% < best.pt's {100 * best:.2f}%)"
        return run / "best.pt", f"best.pt (dev CER {100 * best:.2f}% <= averaged.pt's {100 * cer:.2f}%)"
    return run / "best.pt", "best.pt (the lowest dev CER of the evaluations)"


def training_curve(metrics: Path) -> dict:
    """A few points of the training loss and every dev evaluation, from metrics.jsonl."""
    train, dev = [], []
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            r = json.loads(line)
            if "loss" in r:
                train.append((r["step"], r["loss"], r.get("audio_s_per_s")))
            elif "dev_cer" in r:
                dev.append((r["step"], r["dev_loss"], r["dev_cer"], r["dev_wer"]))
    picks = sorted({round(i * (len(train) - 1) / 4) for i in range(5)}) if train else []
    speed = [s for _, _, s in train if s]
    return {"train_loss": [(train[i][0], round(train[i][1], 3)) for i in picks],
            "dev": [(s, round(loss, 3), round(c, 4), round(w, 4)) for s, loss, c, w in dev],
            "audio_seconds_per_second": round(sorted(speed)[len(speed) // 2], 1) if speed else None}


def _transcribe_examples(cfg: DemoConfig, ckpt: Path, arpa: Path) -> list[dict]:
    rows = read_index(cfg.shards, columns=["id", "path", "text"], split="test")
    rows = sorted(rows, key=lambda r: r["id"])[:cfg.transcribe_clips]
    transcriber = Transcriber(ckpt, DecodeOptions(lm=arpa), cfg.device)
    out = []
    for r in rows:
        clip = cfg.data / DEMO_LANG / "clips" / Path(r["path"]).name
        result = transcriber(clip)
        hyp = "" if isinstance(result, FileFailure) else result.text
        print(f"{clip}\n  reference:  {r['text']}\n  transcript: {hyp}")
        out.append({"clip": str(clip), "reference": r["text"], "transcript": hyp})
    return out


def budget_line(summary: dict) -> str:
    """Whether training reached the recipe's step budget, said plainly (the figures in
    docs/RESULTS.md are for the whole budget)."""
    if summary["stopped_by"] in ("max_steps", "epochs"):
        return f"the step budget was reached ({summary['step']} steps): the figures should match docs/RESULTS.md"
    return (f"CUT SHORT at step {summary['step']} of {summary.get('max_steps', '?')} ({summary['stopped_by']}): "
            f"expect a higher CER than docs/RESULTS.md gives for the whole budget; rerun with a larger "
            f"--minutes to finish it (the run resumes)")


def format_report(r: dict) -> str:
    c, s, tr = r["corpus"], r["shards"], r["train"]
    lines = [f"# Demo report ({r['model']})", ""]
    splits = ("train", "dev", "test")
    lines.append(f"corpus     {c['path']}: " + ", ".join(
        f"{k} {c['clips'][k]} clips / {c['hours'][k]:.2f} h / {c['speakers'][k]} speakers" for k in splits)
                 + (" (reused)" if c["reused"] else f", made in {c['seconds']:.0f}s"))
    shard_line = f"shards     {s['path']}: " + ", ".join(f"{k} {s['utterances'][k]} utt / {v:.2f} h"
                                                        for k, v in s["hours"].items())
    if s.get("speed_copies"):
        shard_line += f" (train counts {s['speed_copies']} speed-perturbed copies)"
    if s["realtime_factor"]:
        shard_line += (f"; {s['audio_hours_processed']:.2f} h in {s['extract_seconds']:.1f}s = "
                       f"{s['realtime_factor']:.0f}x real time with {s['jobs']} jobs "
                       f"({s['realtime_factor'] / s['jobs']:.0f}x per core)")
    else:
        shard_line += " (reused)"
    lines.append(shard_line)
    rejects = s["rejects"]
    lines.append("rejects    " + (", ".join(f"{k} {v}" for k, v in rejects.items()) if rejects else "none"))
    curve = tr["curve"]
    lines.append(f"training   {tr['step']} of {tr.get('max_steps', '?')} steps, {tr['seconds']:.0f}s, "
                 f"precision {tr.get('precision', {}).get('chosen', '?')}" + (", reused" if tr.get("reused") else "")
                 + (f"; {curve['audio_seconds_per_second']:.0f} s of audio per second"
                    if curve["audio_seconds_per_second"] else ""))
    lines.append("  " + budget_line(tr))
    if curve["train_loss"]:
        lines.append("  loss     " + "  ".join(f"step {st}: {lo:.2f}" for st, lo in curve["train_loss"]))
    if curve["dev"]:
        lines.append("  dev CER  " + "  ".join(f"step {st}: {100 * ce:.1f}%" for st, _, ce, _ in curve["dev"]))
    lines += ["", "| test split | CER | WER | RTF |", "|---|---:|---:|---:|"]
    for name, e in r["eval"].items():
        lines.append(f"| {name} ({e['mode']}, {e['utterances']} utt) | {100 * e['cer']:.2f}% | "
                     f"{100 * e['wer']:.2f}% | {e['rtf']:.4f} |")
    lines.append("")
    for t in r["transcripts"]:
        lines += [f"{t['clip']}", f"  reference:  {t['reference']}", f"  transcript: {t['transcript']}"]
    lines += ["", f"checkpoint   {r['checkpoint']}: {r.get('checkpoint_choice', '')}", f"TensorBoard  {r['tensorboard']}",
              "stage times  " + ", ".join(f"{k} {v:.0f}s" for k, v in r["stages"].items())]
    return "\n".join(lines)
