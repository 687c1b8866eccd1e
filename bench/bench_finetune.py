"""Fine-tuning (`--init-from`) against training from scratch, on a small child corpus.

    python bench/bench_finetune.py --parent runs/demo-ctc/best.pt --parent-shards shards/demo-fr \
        --work bench-work/finetune                       # every config at 250, 500 and 1000 steps
    python bench/bench_finetune.py ... --steps 500 --configs scratch,init

The child corpus is made here: `asr-cli synth --hours 0.4 --seed 5` and its shards (the
parent's feature settings: the defaults). Another seed draws other sentences from the same
French grammar and lexicon and other speakers (pitch, rate, dialect, device) from the same
espeak-ng voice variants: the child is the same language with new sentences and speakers, not a
new language; the script counts the child's sentences the parent corpus also holds.

Configs (each trained with the demo's recipe, asr/apps/demo.py's DEMO_TRAIN["ctc"], for --steps):
    scratch       characters, from random weights
    init          characters, --init-from the parent (the fine-tuning schedule: train_config's
                  scales of the recipe's lr and warm-up, or --lr-scale / --warmup-scale)
    freeze        init, with --freeze-encoder-steps (--freeze-share of the steps)
    uni-scratch   --tokens unigram:N (--unigram), from random weights
    uni-init      --tokens unigram:N, --init-from the parent (the shared units: specials and
                  one-letter pieces keep their rows)
Each trained run is evaluated greedily on the child's dev and test and, for forgetting, on the
parent shards' test split (CER compares strings, so a unigram child is measured there too).
A run folder with summary.json is reused (rerun a subset freely; --retrain trains again).
The bars, at 500 steps: init / scratch <= 0.6 (characters), uni-init / uni-scratch <= 0.7.
Results: <work>/results.json and the table printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ("scratch", "init", "freeze", "uni-scratch", "uni-init")
BARS = {("init", "scratch"): 0.6, ("uni-init", "uni-scratch"): 0.7}  # test CER ratio at BAR_STEPS
BAR_STEPS = 500


def cli(*args) -> None:
    subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], check=True)


def child_corpus(work: Path, hours: float, seed: int, jobs: int) -> Path:
    """<work>/shards/child, from `asr-cli synth` and `asr-cli shards` (each reuses what it finished)."""
    from pipeline.shardformat import dataset_path

    cv, shards = work / "child", work / "shards" / "child"
    if not (cv / "fr" / "train.tsv").is_file():
        cli("synth", "--out", cv / "fr", "--hours", hours, "--seed", seed, *(["--jobs", jobs] if jobs else []))
    if not dataset_path(shards).is_file():
        cli("shards", "--cv-root", cv, "--lang", "fr", "--out", shards, *(["--jobs", jobs] if jobs else []))
    return shards


def overlap(child: Path, parent: Path) -> dict:
    """How many of the child's sentences (normalised text) the parent corpus holds, by split."""
    from pipeline.shardformat import read_index

    seen = {r["text"] for r in read_index(parent, columns=["text"])}
    out = {}
    for split in ("train", "dev", "test"):
        texts = [r["text"] for r in read_index(child, ["text"], split)]
        out[split] = {"sentences": len(texts), "in_parent": sum(t in seen for t in texts)}
    return out


def recipe(args, config: str, steps: int, shards: Path, out: Path):
    """The TrainConfig of one run: the demo's CTC recipe, --procs processes sharing its batch."""
    from asr.apps.demo import DEMO_TRAIN
    from asr.training.config import TrainConfig, finetune_schedule

    r = dict(DEMO_TRAIN["ctc"], max_steps=steps, eval_every=0, progress=False, seed=args.seed)
    r["warmup"] = min(r["warmup"], max(1, steps // 4))
    if args.procs > 1:  # the same batch per step, split over the processes (as the demo does)
        r["batch_frames"] //= args.procs
        r["workers"] = 0
    if config.startswith("uni-"):
        r["tokens"] = f"unigram:{args.unigram}"
    if config in ("init", "freeze", "uni-init"):
        r.pop("preset")  # the parent's network
        lr, warmup = finetune_schedule(r["lr"], r["warmup"])
        r["lr"] = r["lr"] * args.lr_scale if args.lr_scale is not None else lr
        r["warmup"] = round(r["warmup"] * args.warmup_scale) if args.warmup_scale is not None else warmup
        r["init_from"] = str(args.parent)
        if config == "freeze":
            r["freeze_encoder_steps"] = max(1, round(steps * args.freeze_share))
    return TrainConfig(shards=str(shards), out=str(out), force=True, **r)


def evaluate(ckpt: Path, shards: Path, split: str, out: Path) -> float:
    from asr.inference.evaluate import EvalConfig
    from asr.inference.evaluate import evaluate as run_eval

    return run_eval(EvalConfig(ckpt, shards, split, out=out, workers=1, progress=False))["cer"]


def run_one(args, config: str, steps: int, shards: Path) -> dict:
    from asr.training.loop import train_local

    from asr.training.config import FINETUNE_LR_SCALE, FINETUNE_WARMUP_SCALE

    scales = (FINETUNE_LR_SCALE if args.lr_scale is None else args.lr_scale,
              FINETUNE_WARMUP_SCALE if args.warmup_scale is None else args.warmup_scale)
    swept = scales != (FINETUNE_LR_SCALE, FINETUNE_WARMUP_SCALE) and config in ("init", "freeze", "uni-init")
    tag = f"-lr{scales[0]:g}-wu{scales[1]:g}" if swept else ""  # a sweep's runs in their own folders
    out = args.work / "runs" / f"{config}-{steps}{tag}"
    if args.retrain or not (out / "summary.json").is_file():
        cfg = recipe(args, config, steps, shards, out)
        print(f"== {config}, {steps} steps: {out}", flush=True)
        train_local(cfg, args.procs)
    summary = json.loads((out / "summary.json").read_text())
    ckpt = out / "last.pt"  # the schedule's end (eval_every 0: no best.pt to choose)
    row = {"config": config, "steps": steps, "seconds": summary["seconds"], "init_from": summary.get("init_from"),
           "dev_cer": evaluate(ckpt, shards, "dev", out / "eval-dev"),
           "test_cer": evaluate(ckpt, shards, "test", out / "eval-test"),
           "parent_test_cer": evaluate(ckpt, args.parent_shards, "test", out / "eval-parent-test")}
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict], parent_cer: float) -> str:
    steps = sorted({r["steps"] for r in rows})
    lines = [f"parent {parent_cer:.2%} test CER on its own shards (before any fine-tuning)", "",
             "CER (greedy): dev / test / parent's test (forgetting), minutes to train",
             f"{'config':<12}" + "".join(f"{s:>30}" for s in steps)]
    for config in CONFIGS:
        cells = {r["steps"]: r for r in rows if r["config"] == config}
        if cells:
            lines.append(f"{config:<12}" + "".join(
                f"{c['dev_cer']:8.2%} {c['test_cer']:7.2%} {c['parent_test_cer']:7.2%} {c['seconds'] / 60:4.0f}m"
                if (c := cells.get(s)) else f"{'-':>30}" for s in steps))
    at = {r["config"]: r for r in rows if r["steps"] == BAR_STEPS}
    for (a, b), bar in BARS.items():
        if a in at and b in at:
            ratio = at[a]["test_cer"] / max(at[b]["test_cer"], 1e-9)
            lines.append(f"{a} / {b} test CER at {BAR_STEPS} steps: {ratio:.2f}x (bar <= {bar}x: "
                         f"{'met' if ratio <= bar else 'NOT met'})")
    return "\n".join(lines)


def main() -> None:
    from asr.training.config import FINETUNE_LR_SCALE, FINETUNE_WARMUP_SCALE

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parent", type=Path, required=True, help="The parent checkpoint (the demo's CTC best.pt).")
    p.add_argument("--parent-shards", type=Path, required=True, help="The parent's shards (its test split).")
    p.add_argument("--work", type=Path, default=Path("bench-work/finetune"))
    p.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000])
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"Comma-separated, of {', '.join(CONFIGS)}.")
    p.add_argument("--hours", type=float, default=0.4, help="Hours of the child corpus.")
    p.add_argument("--child-seed", type=int, default=5, help="Seed of the child corpus.")
    p.add_argument("--seed", type=int, default=0, help="Training seed.")
    p.add_argument("--unigram", type=int, default=128, help="Pieces of the uni-* configs (a 0.4 h corpus).")
    p.add_argument("--freeze-share", type=float, default=0.2, help="freeze: the encoder frozen this share of steps.")
    p.add_argument("--lr-scale", type=float, default=None, help=f"Fine-tuning peak lr / recipe's [{FINETUNE_LR_SCALE}].")
    p.add_argument("--warmup-scale", type=float, default=None,
                   help=f"Fine-tuning warm-up / recipe's [{FINETUNE_WARMUP_SCALE}].")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--jobs", type=int, default=0, help="synth / shards processes (0: every core).")
    p.add_argument("--retrain", action="store_true")
    args = p.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        p.error(f"unknown configs {sorted(unknown)} (choose from {', '.join(CONFIGS)})")

    shards = child_corpus(args.work, args.hours, args.child_seed, args.jobs)
    shared = overlap(shards, args.parent_shards)
    print("child sentences the parent corpus also holds: " +
          ", ".join(f"{k} {v['in_parent']} of {v['sentences']}" for k, v in shared.items()), flush=True)
    parent_cer = evaluate(args.parent, args.parent_shards, "test", args.work / "eval-parent")
    rows = [run_one(args, c, s, shards) for s in args.steps for c in configs]
    text = table(rows, parent_cer)
    (args.work / "results.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "overlap": shared, "parent_test_cer": parent_cer,
         "rows": rows, "table": text}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
