"""Deep stacks in several threads, to measure how capture cost scales.

``deep_main DEPTH THREADS SECONDS``: the main thread and ``THREADS - 1``
other threads each recurse ``DEPTH`` frames through ``recurse`` and then spin
in pure Python at the bottom until the deadline.  (Time-bounded rather than
work-bounded so a slow profiler cannot stretch the run.)

Run directly it prints one ``BENCH_RESULT {json}`` line.
"""

import json
import sys
import threading
import time


def spin_until(deadline):
    pc = time.perf_counter
    n = 0
    while pc() < deadline:
        for i in range(200):
            n += i
    return n


def recurse(depth, deadline):
    if depth <= 1:
        return spin_until(deadline)
    return recurse(depth - 1, deadline)


def deep_main(depth, nthreads, seconds):
    start = time.perf_counter()
    deadline = start + seconds
    others = [threading.Thread(target=recurse, args=(depth, deadline), name="deep-%d" % i)
              for i in range(nthreads - 1)]
    for t in others:
        t.start()
    recurse(depth, deadline)
    for t in others:
        t.join()
    return time.perf_counter() - start


def run(argv=()):
    depth = int(argv[0]) if len(argv) > 0 else 10
    nthreads = int(argv[1]) if len(argv) > 1 else 1
    seconds = float(argv[2]) if len(argv) > 2 else 1.5
    elapsed = deep_main(depth, nthreads, seconds)
    return {"workload": "deep", "root": "deep_main", "elapsed": elapsed,
            "depth": depth, "threads": nthreads, "truth": {}}


if __name__ == "__main__":
    print("BENCH_RESULT " + json.dumps(run(sys.argv[1:])), flush=True)
