#!/usr/bin/env python3
"""Load test of the ASGI integration: what the profiler costs a FastAPI app.

The FastAPI example (examples/fastapi_app.py: OxProfileMiddleware and the
mounted pages) runs under uvicorn (one process) on 127.0.0.1 and wrk drives
it.  The same server alternates between paused and unpaused at 100 Hz
(``--interval``) through its own pages, in a shuffled order each round, so
drifts of the machine hit both alike; the table gives the median requests/s
of each and their ratio per round.  The issue's target: unpaused at 100 Hz
>= 98% of paused.

    .venv/bin/python bench/asgi_load.py                      # 8 rounds x 6 s, /fast
    .venv/bin/python bench/asgi_load.py --rounds 4 --seconds 5 --path /numbers

Writes bench/results/asgi_load.md and .json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

import httpx

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from loadkit import cpu_seconds, free_port, loadavg, log, run_wrk  # noqa: E402

ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
TOKEN = "bench-token"


class Server:
    """The FastAPI example under uvicorn, with a client allowed in."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ, OX_PROFILE_TOKEN=TOKEN, PYTHONPATH=ROOT)
        uvicorn = os.path.join(os.path.dirname(sys.executable), "uvicorn")
        self.proc = subprocess.Popen([uvicorn, "examples.fastapi_app:app", "--host", "127.0.0.1",
                                      "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = httpx.Client(base_url=self.base, timeout=30,
                                   headers={"Authorization": "Bearer " + TOKEN, "Origin": self.base})
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.get("/fast")
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("uvicorn did not start")
                time.sleep(0.2)

    def action(self, name: str, **form: str) -> None:
        token = self.client.get("/ox_profile/status.json?max_records=1").json()["csrf_token"]
        r = self.client.post("/ox_profile/" + name, data=dict(form, csrf_token=token))
        if r.status_code != 303:
            raise RuntimeError("%s: %s %s" % (name, r.status_code, r.text[:200]))

    def stats(self) -> Dict[str, Any]:
        return self.client.get("/ox_profile/status.json?max_records=1").json()["stats"]

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--path", default="/fast")
    parser.add_argument("--interval", type=float, default=0.01, help="sampling interval when unpaused (s)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is not installed (apt-get install wrk)")
        return 2
    load_before = loadavg()
    server = Server()
    results: Dict[str, List[float]] = {"paused": [], "unpaused": []}
    cpu_us: Dict[str, List[float]] = {"paused": [], "unpaused": []}  # server CPU per request
    pairs: List[float] = []
    try:
        server.action("set_interval", interval=repr(args.interval))
        url = server.base + args.path
        run_wrk(url, 2, args.connections, args.threads)  # warm-up (and the routes' names remembered)
        for rnd in range(args.rounds):
            order = ["paused", "unpaused"]
            random.shuffle(order)
            got: Dict[str, float] = {}
            for config in order:
                server.action("unpause" if config == "unpaused" else "pause")
                time.sleep(0.3)
                cpu0 = cpu_seconds(server.proc.pid)
                got[config], made = run_wrk(url, args.seconds, args.connections, args.threads)
                cpu_us[config].append(1e6 * (cpu_seconds(server.proc.pid) - cpu0) / max(1, made))
                results[config].append(got[config])
            pairs.append(got["unpaused"] / got["paused"])
            log("round %d: paused %.0f, unpaused %.0f req/s (%.1f%%); server CPU %.0f vs %.0f us a request"
                % (rnd + 1, got["paused"], got["unpaused"], 100 * pairs[-1], cpu_us["paused"][-1],
                   cpu_us["unpaused"][-1]))
        server.action("unpause")
        stats = server.stats()
        server.action("pause")
    finally:
        server.stop()
    load_after = loadavg()
    paused, unpaused = statistics.median(results["paused"]), statistics.median(results["unpaused"])
    cpu_paused, cpu_unpaused = statistics.median(cpu_us["paused"]), statistics.median(cpu_us["unpaused"])
    summary = {
        "path": args.path, "rounds": args.rounds, "seconds": args.seconds, "interval": args.interval,
        "wrk": "-t%d -c%d" % (args.threads, args.connections),
        "paused_median": paused, "unpaused_median": unpaused, "ratio_of_medians": unpaused / paused,
        "ratio_paired_median": statistics.median(pairs), "pairs": pairs, "runs": results,
        "server_cpu_us_per_request": cpu_us, "cpu_paused_median_us": cpu_paused,
        "cpu_unpaused_median_us": cpu_unpaused,
        "achieved_rate_hz": stats.get("rate_hz"), "sampler_cpu_percent": stats.get("sampler_cpu_percent"),
        "loadavg_before": load_before, "loadavg_after": load_after,
    }
    table = "\n".join([
        "| configuration | requests/s (median of %d) | ratio | server CPU a request (median) |" % args.rounds,
        "| --- | ---: | --- | ---: |",
        "| paused | %.0f | 100%% | %.0f µs |" % (paused, cpu_paused),
        "| unpaused at %g Hz | %.0f | %.1f%% of paused (%.1f%% median of the paired rounds) | %.0f µs (%+.1f%%) |"
        % (1 / args.interval, unpaused, 100 * unpaused / paused, 100 * statistics.median(pairs), cpu_unpaused,
           100 * (cpu_unpaused / cpu_paused - 1)),
    ])
    text = ("FastAPI example under uvicorn (1 process), wrk %s on %s, %d s runs, paused and unpaused "
            "alternating in one server; load average %s before, %s after.\n\n%s\n"
            % (summary["wrk"], args.path, args.seconds, load_before, load_after, table))
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "asgi_load.md"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "asgi_load.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
