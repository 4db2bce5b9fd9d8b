"""Time inside a GIL-holding C call versus pure Python.

``in_c_call`` spends its time in ``sorted()`` of a list of floats: C code that
holds the GIL and never runs the eval loop, so a sampler that needs the GIL
cannot see inside it.  ``in_python`` is a plain Python loop.  Shares of each
are measured with ``time.perf_counter`` (the ground truth).

Run directly it prints one ``BENCH_RESULT {json}`` line.
"""

import json
import random
import sys
import time


def in_c_call(data, n):
    return sorted(data[:n])


def in_python(n):
    s = 0
    for i in range(n):
        s += i & 0xFF
    return s


def cfunc_main(data, calls):
    pc = time.perf_counter
    seed = 777
    in_c = in_py = 0.0
    start = pc()
    for _ in range(calls):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        nc = 10000 + seed % 64000             # ~1.5-10 ms of sorting
        npy = 60000 + (seed >> 12) % 220000  # ~2-10 ms of Python
        t0 = pc()
        in_c_call(data, nc)
        t1 = pc()
        in_python(npy)
        t2 = pc()
        in_c += t1 - t0
        in_py += t2 - t1
    return pc() - start, in_c, in_py


def run(argv=()):
    scale = float(argv[0]) if argv else 1.0
    calls = max(1, int(250 * scale))
    rng = random.Random(42)
    data = [rng.random() for _ in range(100000)]
    cpu0, th0 = time.process_time(), time.thread_time()
    elapsed, in_c, in_py = cfunc_main(data, calls)
    return {
        "workload": "cfunc",
        "root": "cfunc_main",
        "elapsed": elapsed,
        "truth": {"in_c_call": in_c / elapsed, "in_python": in_py / elapsed},
        "cpu_s": time.process_time() - cpu0,
        "main_cpu_s": time.thread_time() - th0,
    }


if __name__ == "__main__":
    print("BENCH_RESULT " + json.dumps(run(sys.argv[1:])), flush=True)
