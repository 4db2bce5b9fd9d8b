"""Several threads: CPU-bound ones and sleeping ones.

The main thread (``threads_main``) starts ``N_CPU`` threads running
``cpu_worker`` (a fixed amount of pure-Python work each, sharing the GIL) and
``N_SLEEP`` threads running ``sleep_worker`` (sleeping 5 ms at a time until
told to stop), then waits for the CPU threads.  Each thread's CPU time is
measured with ``time.thread_time``.

Run directly it prints one ``BENCH_RESULT {json}`` line.
"""

import json
import sys
import threading
import time

N_CPU = 2
N_SLEEP = 2


def spin(n):
    s = 0
    for i in range(n):
        s += i % 3
    return s


def cpu_worker(chunks, out, idx):
    t0 = time.thread_time()
    for _ in range(chunks):
        spin(2000)
    out[idx] = time.thread_time() - t0


def sleep_worker(stop, out, idx):
    t0 = time.thread_time()
    while not stop.is_set():
        time.sleep(0.005)
    out[idx] = time.thread_time() - t0


def threads_main(chunks):
    start = time.perf_counter()
    stop = threading.Event()
    cpu_out = [0.0] * N_CPU
    sleep_out = [0.0] * N_SLEEP
    workers = [threading.Thread(target=cpu_worker, args=(chunks, cpu_out, i), name="cpu-%d" % i)
               for i in range(N_CPU)]
    sleepers = [threading.Thread(target=sleep_worker, args=(stop, sleep_out, i), name="sleep-%d" % i)
                for i in range(N_SLEEP)]
    for t in sleepers + workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - start
    stop.set()
    for t in sleepers:
        t.join()
    return elapsed, cpu_out, sleep_out


def run(argv=()):
    scale = float(argv[0]) if argv else 1.0
    chunks = max(1, int(18000 * scale))
    cpu0 = time.process_time()
    elapsed, cpu_out, sleep_out = threads_main(chunks)
    return {
        "workload": "threads",
        "root": "threads_main",
        "elapsed": elapsed,
        "n_cpu": N_CPU,
        "n_sleep": N_SLEEP,
        "truth": {"cpu_worker_cpu_share": sum(cpu_out) / N_CPU / elapsed,
                  "sleep_worker_cpu_share": sum(sleep_out) / N_SLEEP / elapsed},
        "cpu_s": time.process_time() - cpu0,
    }


if __name__ == "__main__":
    print("BENCH_RESULT " + json.dumps(run(sys.argv[1:])), flush=True)
