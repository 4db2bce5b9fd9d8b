"""CPU-bound pure-Python workload with a known split between two functions.

``cpu_main`` alternates calls to ``work_a`` and ``work_b`` whose lengths come
from a fixed pseudo-random sequence (so calls do not line up with the sampling
period), and measures with ``time.perf_counter`` how long is spent inside each:
that is the ground truth a profiler's shares are compared with.

Run directly it prints one ``BENCH_RESULT {json}`` line.
"""

import json
import sys
import time


def work_a(n):
    s = 0
    for i in range(n):
        s += (i * i) % 7
    return s


def work_b(n):
    s = 0
    for i in range(n):
        s ^= i << 1
    return s


def cpu_main(calls):
    pc = time.perf_counter
    seed = 12345
    in_a = in_b = 0.0
    start = pc()
    for _ in range(calls):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        na = 4000 + seed % 12000          # ~0.2-0.8 ms
        nb = 2000 + (seed >> 12) % 9000   # ~0.1-0.45 ms
        t0 = pc()
        work_a(na)
        t1 = pc()
        work_b(nb)
        t2 = pc()
        in_a += t1 - t0
        in_b += t2 - t1
    return pc() - start, in_a, in_b


def run(argv=()):
    scale = float(argv[0]) if argv else 1.0
    calls = max(1, int(3000 * scale))
    cpu0, th0 = time.process_time(), time.thread_time()
    elapsed, in_a, in_b = cpu_main(calls)
    return {
        "workload": "cpu",
        "root": "cpu_main",
        "elapsed": elapsed,
        "truth": {"work_a": in_a / elapsed, "work_b": in_b / elapsed},
        "cpu_s": time.process_time() - cpu0,
        "main_cpu_s": time.thread_time() - th0,
    }


if __name__ == "__main__":
    print("BENCH_RESULT " + json.dumps(run(sys.argv[1:])), flush=True)
