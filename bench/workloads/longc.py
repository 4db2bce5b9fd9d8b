"""Long GIL-holding C calls: each ``do_sort`` call spends 0.5 s or more in
``sorted()`` of millions of floats (C code that holds the GIL and never runs
the eval loop), alternating with ``py_work``, a pure-Python loop of about the
same length.  The share inside ``do_sort`` is measured with
``time.perf_counter`` (the ground truth).  A sampler that needs the GIL
cannot sample during the sort and charges it to whatever runs next.

Run directly it prints one ``BENCH_RESULT {json}`` line.
"""

import json
import random
import sys
import time


def do_sort(data):
    return sorted(data)


def py_work(n):
    s = 0
    for i in range(n):
        s += i & 0xFF
    return s


def longc_main(data, rounds, py_n):
    pc = time.perf_counter
    in_sort = in_py = 0.0
    start = pc()
    for _ in range(rounds):
        t0 = pc()
        do_sort(data)
        t1 = pc()
        py_work(py_n)
        t2 = pc()
        in_sort += t1 - t0
        in_py += t2 - t1
    return pc() - start, in_sort, in_py


def sized_for(seconds, rng):
    """A list of floats whose sort takes about ``seconds`` here."""
    probe = [rng.random() for _ in range(500_000)]
    t0 = time.perf_counter()
    sorted(probe)
    per_item = (time.perf_counter() - t0) / len(probe)
    size = min(int(seconds / per_item), 8_000_000)
    return probe + [rng.random() for _ in range(max(0, size - len(probe)))]


def run(argv=()):
    rounds = int(argv[0]) if argv else 4
    sort_s = float(argv[1]) if len(argv) > 1 else 0.7  # at least 0.5 s per call
    data = sized_for(sort_s, random.Random(7))
    # Python work of about one sort's length, calibrated once.
    t0 = time.perf_counter()
    sorted(data)
    sort_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    py_work(1_000_000)
    per_million = time.perf_counter() - t0
    py_n = int(1_000_000 * sort_s / per_million)
    elapsed, in_sort, in_py = longc_main(data, rounds, py_n)
    return {
        "workload": "longc",
        "root": "longc_main",
        "elapsed": elapsed,
        "sort_call_s": in_sort / rounds,
        "truth": {"do_sort": in_sort / elapsed, "py_work": in_py / elapsed},
    }


if __name__ == "__main__":
    print("BENCH_RESULT " + json.dumps(run(sys.argv[1:])), flush=True)
