"""Does `--precision fast` pick the faster precision on this machine? Trains the demo's recipe
for real in fp32, in bf16 and with `fast`, side by side, and prints the audio seconds trained
per second of each with what `fast` chose; then `fast`'s precision in one process using every
core, against the demo's `--procs 2` (the demo's other choice that depends on the machine).

    python bench/bench_precision.py --shards shards/demo-fr [--steps 60] [--procs 2]

Each run: `asr-cli train` (the demo's small CTC recipe, `--procs 2 --batch-frames 5000`, as
`make demo` trains on 2 cores) for `--steps` steps into a temporary folder; its rate is the
median `audio_s_per_s` of metrics.jsonl past the first log window (start-up). Run it on an
otherwise idle machine: a load that comes and goes between runs moves the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train(shards: Path, out: Path, precision: str, steps: int, procs: int) -> dict:
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", "--shards", str(shards), "--out", str(out),
           "--preset", "small", "--precision", precision, "--procs", str(procs), "--batch-frames", str(10000 // procs),
           "--lr", "3e-3", "--warmup", "100", "--freq-masks", "0", "--time-masks", "0",
           "--max-steps", "2600", "--steps-this-run", str(steps), "--eval-every", "0", "--log-every", "10",
           "--workers", "0" if procs > 1 else "1", "--no-progress", "--force"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        raise SystemExit(f"{precision}: asr-cli train failed:\n{proc.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["audio_s_per_s"] for r in rows if "audio_s_per_s" in r][1:]
    summary = json.loads((out / "summary.json").read_text())
    return {"rate": statistics.median(rates), "precision": summary["precision"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=Path, default=ROOT / "shards/demo-fr")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--procs", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: train(args.shards, Path(tmp) / name, name, args.steps, args.procs)
                for name in ("fp32", "bf16", "fast")}
        if args.procs > 1:  # the demo's other machine-dependent choice: processes against threads
            one = train(args.shards, Path(tmp) / "one", runs["fast"]["precision"]["chosen"], args.steps, 1)
    fp32, bf16 = runs["fp32"]["rate"], runs["bf16"]["rate"]
    faster = "bf16" if bf16 > fp32 else "fp32"
    report = runs["fast"]["precision"]
    print(f"{'run':<8}{'audio s/s':>12}{'vs fp32':>10}")
    for name, r in runs.items():
        print(f"{name:<8}{r['rate']:>12.1f}{r['rate'] / fp32:>9.2f}x")
    if args.procs > 1:
        print(f"{'1 proc':<8}{one['rate']:>12.1f}{one['rate'] / fp32:>9.2f}x   ({report['chosen']}, one process with "
              f"every core, against {args.procs} processes: {one['rate'] / runs['fast']['rate']:.2f}x)")
    print(f"fast chose {report['chosen']} (its probe: {report.get('ms_per_step')}); "
          f"the faster in full training here: {faster} ({max(fp32, bf16) / min(fp32, bf16):.2f}x)"
          + ("" if report["chosen"] == faster else "  <-- fast picked the slower precision"))


if __name__ == "__main__":
    main()
