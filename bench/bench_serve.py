"""`asr-cli serve` under load: 20 concurrent POST /transcribe, 1 model replica against 2.

    python bench/bench_serve.py --checkpoint runs/demo-ctc/best.pt --lm runs/demo-ctc/lm-3gram.arpa \\
        --clips data/demo/fr/clips --requests 20 --repeats 3

Each setting serves the same app as `asr-cli serve --workers N` (uvicorn in a thread, real
HTTP); the rounds of the settings are interleaved and the best is kept (a loaded machine is
noisy). Prints wall seconds per round, requests per second and the median latency, with
workers 1 as the baseline.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asr.apps.serve import ServeConfig, create_app  # noqa: E402


def start(app):
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def round_(url: str, files: list[Path], mode: str) -> tuple[float, list[float], list[str]]:
    def one(path: Path):
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/transcribe", files={"file": (path.name, path.read_bytes())}, data={"mode": mode},
                       timeout=600)
        r.raise_for_status()
        return time.perf_counter() - t0, r.json()["text"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(files)) as pool:
        results = list(pool.map(one, files))
    return time.perf_counter() - t0, [r[0] for r in results], [r[1] for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--lm", type=Path)
    ap.add_argument("--clips", type=Path, required=True, help="folder of MP3s (the first --requests are sent)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2")
    a = ap.parse_args()
    files = sorted(a.clips.glob("*.mp3"))[: a.requests]
    mode = "beam-lm" if a.lm else "greedy"
    servers = {}
    for w in map(int, a.workers.split(",")):
        servers[w] = start(create_app(ServeConfig(a.checkpoint, lm=a.lm, workers=w)))
    best: dict[int, tuple] = {}
    texts = {}
    for _ in range(a.repeats):
        for w, (url, _) in servers.items():
            wall, lat, t = round_(url, files, mode)
            texts.setdefault(w, t)
            assert t == texts[w], "answers differ between rounds"
            if w not in best or wall < best[w][0]:
                best[w] = (wall, lat)
    base = best[min(best)][0]
    print(f"{len(files)} concurrent requests, mode {mode}, best of {a.repeats} interleaved rounds")
    print(f"{'workers':>8} {'wall s':>8} {'req/s':>7} {'median latency s':>17} {'vs 1':>6}")
    for w, (wall, lat) in best.items():
        print(f"{w:>8} {wall:8.2f} {len(files) / wall:7.2f} {statistics.median(lat):17.2f} {base / wall:6.2f}x")
    print("same texts for every setting:", len({tuple(t) for t in texts.values()}) == 1)
    for _, server in servers.values():
        server.should_exit = True


if __name__ == "__main__":
    main()
