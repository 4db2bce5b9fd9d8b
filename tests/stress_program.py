"""A hostile program to profile: threads that start and end hundreds of
times a second, deep recursion, generators, coroutines, exceptions, garbage
collection and code that is created and freed, all under a 10 kHz sampler.

Run: python tests/stress_program.py [--seconds S] [--rounds N] [--backend B]
Prints one JSON line per round: sampler statistics and the process RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import threading
import time

import ox_profile


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def recurse(n: int) -> int:
    return 0 if n == 0 else 1 + recurse(n - 1)


def gen(n: int):
    for i in range(n):
        yield i * i


async def coro(n: int) -> int:
    if n == 0:
        await asyncio.sleep(0)
        return 0
    return 1 + await coro(n - 1)


def raises(n: int) -> None:
    try:
        if n % 2:
            raise ValueError(n)
        raise KeyError(n)
    except (ValueError, KeyError):
        pass


class Cycle:
    def __init__(self) -> None:
        self.me = self


def short_lived(i: int) -> None:
    recurse(30 + i % 50)
    sum(gen(200))
    raises(i)


def churn_code(i: int) -> None:
    ns: dict = {}
    exec(compile("def fresh_%d(x):\n    return [x * k for k in range(50)]\n" % (i % 1000), "<fresh>", "exec"), ns)
    ns["fresh_%d" % (i % 1000)](i)


def one_round(seconds: float) -> int:
    end = time.perf_counter() + seconds
    started = 0
    i = 0
    while time.perf_counter() < end:
        threads = [threading.Thread(target=short_lived, args=(i + k,)) for k in range(8)]
        for t in threads:
            t.start()
        started += len(threads)
        recurse(400)
        asyncio.run(coro(50))
        for _ in range(20):
            Cycle()
        if i % 10 == 0:
            gc.collect()
        churn_code(i)
        for t in threads:
            t.join()
        i += 1
    return started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--interval", type=float, default=0.0001)
    args = parser.parse_args()
    sys.setrecursionlimit(5000)
    prof = ox_profile.Profiler(interval=args.interval, backend=args.backend, max_memory=8 << 20)
    for r in range(args.rounds):
        prof.start()
        started = one_round(args.seconds)
        prof.stop()
        stats = prof.stats()
        profile = prof.snapshot()
        print(json.dumps({
            "round": r, "threads_started": started, "ticks": stats["ticks"], "samples": stats["samples"],
            "dropped": stats["dropped"], "rate_hz": stats["rate_hz"], "rss_kib": rss_kib(),
            "total": profile.total_samples, "backend": stats["backend"], "memory": stats["memory_bytes"],
            "functions": len(profile.functions),
        }), flush=True)
        prof.clear()


if __name__ == "__main__":
    main()
