#!/usr/bin/env python3
"""What sharing one profile between processes costs (ox_profile.shared).

* merge: 16 worker processes each profile a workload with thousands of
  distinct stacks (partly shared between workers, as a server's are) and
  publish; the parent times the C merge of the 16 files (share_merge) and the
  whole merged view a status page builds (files + its own live profile);
* disk: each published file's size against its database's memory;
* kill: a process publishing every second is killed with SIGKILL at a random
  moment, 10 times: how old its last published data was, in seconds and in
  samples;
* controls: the demo under gunicorn -w 4; pause and unpause 10 times each:
  time from the answer to the POST until every worker's published state
  says so (read straight from the shared files).

    .venv/bin/python bench/share_bench.py            # all four
    .venv/bin/python bench/share_bench.py merge disk

Writes bench/results/share_bench.md and .json.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Dict, List

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import ox_profile  # noqa: E402
from ox_profile import _engine  # noqa: E402
from ox_profile.shared.agent import PROCESS_FILE_RE, ProcessShare  # noqa: E402
from ox_profile.shared.children import _ProfilerSource  # noqa: E402
from ox_profile.shared.location import SharedDir, open_private_dir  # noqa: E402
from ox_profile.shared.merge import merged_view  # noqa: E402

WORKERS = 16
BIG = 1 << 30


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- merge and disk ----------------------------------------------------------------

def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _path_a(n: int, k: int) -> None:
    if n == 0:
        _spin(0.0003)
    elif (k >> n) & 1:
        _path_a(n - 1, k)
    else:
        _path_b(n - 1, k)


def _path_b(n: int, k: int) -> None:
    if n == 0:
        _spin(0.0003)
    elif (k >> n) & 1:
        _path_a(n - 1, k)
    else:
        _path_b(n - 1, k)


def _worker(directory: str, index: int, seconds: float) -> None:
    """One worker: distinct stacks over 2^12 paths, half of them shared with
    every other worker, half its own."""
    shared = SharedDir(directory, open_private_dir(directory, create=False), None)
    prof = ox_profile.Profiler(interval=0.0002)
    share = ProcessShare(shared, _ProfilerSource(prof), follow=False)
    prof.start()
    rng = random.Random(index)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        k = rng.randrange(4096) if rng.random() < 0.5 else 4096 * (index + 1) + rng.randrange(4096)
        _path_a(13, k)
    share.stop(final=True)
    os._exit(0)


def bench_merge(results: Dict[str, Any], seconds: float = 4.0) -> None:
    directory = tempfile.mkdtemp(prefix="oxp-merge-bench-")
    ctx = multiprocessing.get_context("fork")
    # Two at a time (this machine has two cores): each worker gets a core's
    # worth of time to reach thousands of distinct stacks.
    for first in range(0, WORKERS, 2):
        procs = [ctx.Process(target=_worker, args=(directory, i, seconds)) for i in range(first, first + 2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    names = sorted(n for n in os.listdir(directory) if PROCESS_FILE_RE.match(n))
    assert len(names) == WORKERS, names
    per_file = []
    for name in names:
        meta, _t, total = _engine.share_read(fd, name, BIG)
        per_file.append({"bytes": os.path.getsize(os.path.join(directory, name)), "samples": total,
                         "stacks": meta.get("stats.stacks"), "memory_bytes": meta.get("stats.memory_bytes"),
                         "memory_cap": meta.get("stats.memory_cap")})
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        snap, merged, skipped = _engine.share_merge(fd, names, None, BIG, None, True)
        times.append(time.perf_counter() - t0)
    assert not skipped and len(merged) == WORKERS
    # What a status page does: its own live profile plus the 16 files.
    own_prof = ox_profile.Profiler(interval=0.001)
    with own_prof:
        for k in range(300):
            _path_a(13, k)
    shared = SharedDir(directory, fd, None)
    share = ProcessShare(shared, _ProfilerSource(own_prof), follow=False)
    view_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        own = own_prof.snapshot()
        view = merged_view(share, own, dict(own.stats), None)
        view_times.append(time.perf_counter() - t0)
    share.close()
    results["merge"] = {
        "workers": WORKERS, "seconds_each": seconds,
        "stacks_per_worker": [f["stacks"] for f in per_file],
        "merged_stacks": snap.nstacks, "merged_rows": len(snap.rows), "merged_samples": snap.total_hits,
        "merge_s": times, "merged_view_s": view_times, "processes": len(view.profile.processes),
    }
    results["disk"] = per_file
    log("merge: %d files, %d-%d stacks each, %d merged stacks, %d rows: share_merge median %.3f s "
        "(max %.3f), whole view median %.3f s" % (
            WORKERS, min(f["stacks"] for f in per_file), max(f["stacks"] for f in per_file), snap.nstacks,
            len(snap.rows), statistics.median(times), max(times), statistics.median(view_times)))
    for f in per_file[:3]:
        log("disk: %d bytes for a database of %d bytes (cap %d)" % (f["bytes"], f["memory_bytes"], f["memory_cap"]))
    os.close(fd)
    subprocess.run(["rm", "-rf", directory])


# -- kill ---------------------------------------------------------------------------

KILLED = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, %r)
    import ox_profile
    from ox_profile.shared.agent import ProcessShare
    from ox_profile.shared.children import _ProfilerSource
    from ox_profile.shared.location import SharedDir, open_private_dir
    d = SharedDir(sys.argv[1], open_private_dir(sys.argv[1], create=False), None)
    prof = ox_profile.Profiler(interval=0.001).start()
    ProcessShare(d, _ProfilerSource(prof), follow=False, publish_interval=1.0).start()
    while True:
        end = time.perf_counter() + 0.005
        while time.perf_counter() < end:
            pass
        print(time.time(), prof.stats()["total_hits"], flush=True)
''' % os.path.join(ROOT, "src"))


def bench_kill(results: Dict[str, Any], runs: int = 10) -> None:
    rng = random.Random(3)
    out = []
    for _ in range(runs):
        directory = tempfile.mkdtemp(prefix="oxp-kill-bench-")
        os.chmod(directory, 0o700)
        child = subprocess.Popen([sys.executable, "-c", KILLED, directory], stdout=subprocess.PIPE, text=True)
        deadline = time.time() + 2.0 + rng.random() * 2.0
        last = None
        for line in child.stdout:
            last = line.split()
            if time.time() >= deadline:
                break
        child.send_signal(signal.SIGKILL)
        killed_at = time.time()
        child.wait()
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        name = [n for n in os.listdir(directory) if PROCESS_FILE_RE.match(n)][0]
        meta, _t, published = _engine.share_read(fd, name, BIG)
        os.close(fd)
        live = int(last[1])
        out.append({"age_s": killed_at - meta["written_at"], "lost_samples": live - published,
                    "samples": live})
        subprocess.run(["rm", "-rf", directory])
    results["kill"] = out
    log("kill: data lost %.2f s at most (median %.2f s), %d samples at most of ~1000/s" % (
        max(o["age_s"] for o in out), statistics.median(o["age_s"] for o in out),
        max(o["lost_samples"] for o in out)))


# -- controls -------------------------------------------------------------------------

def bench_controls(results: Dict[str, Any], toggles: int = 10) -> None:
    from servers import DemoServer
    with tempfile.TemporaryDirectory() as tmp:
        from pathlib import Path
        server = DemoServer("gunicorn", 4, Path(tmp))
        try:
            client = server.client()
            workers = server.worker_pids()
            fd = os.open(server.shared_dir, os.O_RDONLY | os.O_DIRECTORY)

            def states() -> Dict[int, str]:
                found = {}
                for name in os.listdir(server.shared_dir):
                    m = PROCESS_FILE_RE.match(name)
                    if m and int(m.group(1)) in workers:
                        try:
                            found[int(m.group(1))] = _engine.share_read(fd, name, BIG)[0]["state"]
                        except (OSError, ValueError):
                            pass
                return found

            latencies: Dict[str, List[float]] = {"running": [], "paused": []}
            for i in range(2 * toggles):
                want = "running" if i % 2 == 0 else "paused"
                client.post("/ox_profile/%s" % ("unpause" if want == "running" else "pause"))
                t0 = time.monotonic()
                while True:
                    got = states()
                    if len(got) == len(workers) and all(v == want for v in got.values()):
                        break
                    if time.monotonic() - t0 > 10:
                        raise RuntimeError("workers did not follow: %r" % got)
                    time.sleep(0.005)
                latencies[want].append(time.monotonic() - t0)
                time.sleep(0.3 + random.random() * 0.4)
            os.close(fd)
        finally:
            server.stop()
    results["controls"] = latencies
    every = latencies["running"] + latencies["paused"]
    log("controls: every one of 4 workers follows within %.2f s at most (median %.2f s)" % (
        max(every), statistics.median(every)))


def main(argv: List[str]) -> int:
    which = argv or ["merge", "disk", "kill", "controls"]
    results: Dict[str, Any] = {}
    if "merge" in which or "disk" in which:
        bench_merge(results)
    if "kill" in which:
        bench_kill(results)
    if "controls" in which:
        bench_controls(results)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "share_bench.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    lines = []
    if "merge" in results:
        m = results["merge"]
        lines.append("| merge of %d workers (%d-%d stacks each, %d distinct merged, %d rows) | share_merge median "
                     "%.3f s, max %.3f s; whole merged view %.3f s |" % (
                         m["workers"], min(m["stacks_per_worker"]), max(m["stacks_per_worker"]),
                         m["merged_stacks"], m["merged_rows"], statistics.median(m["merge_s"]),
                         max(m["merge_s"]), statistics.median(m["merged_view_s"])))
    if "disk" in results:
        d = results["disk"]
        lines.append("| disk per worker | %d-%d bytes for databases of %d-%d bytes (cap %d) |" % (
            min(f["bytes"] for f in d), max(f["bytes"] for f in d), min(f["memory_bytes"] for f in d),
            max(f["memory_bytes"] for f in d), d[0]["memory_cap"]))
    if "kill" in results:
        k = results["kill"]
        lines.append("| SIGKILL, %d kills | last data %.2f s old at most (median %.2f s); at most %d samples lost |" % (
            len(k), max(o["age_s"] for o in k), statistics.median(o["age_s"] for o in k),
            max(o["lost_samples"] for o in k)))
    if "controls" in results:
        c = results["controls"]
        every = c["running"] + c["paused"]
        lines.append("| pause/unpause reach 4 gunicorn workers | %.2f s at most, median %.2f s (%d changes) |" % (
            max(every), statistics.median(every), len(every)))
    text = "| what | measured |\n| --- | --- |\n" + "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(RESULTS, "share_bench.md"), "w") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
