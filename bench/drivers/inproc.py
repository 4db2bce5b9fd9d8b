"""Run one workload under an in-process profiler (or none) and report.

Usage (run by bench/run.py, in the venv that has the profiler)::

    python inproc.py --profiler {none,ours,orig,pyinstrument} [--interval S]
                     [--backend B] [--mode M] [--stacks-out FILE]
                     WORKLOAD.py [workload args...]

Prints one line ``BENCH_RESULT {json}`` with the workload's own result
(elapsed time of its root function, ground truth), the profiler's statistics,
the CPU time of the sampler thread and the process CPU time.  The stacks the
profiler recorded are written to ``--stacks-out`` in the bench's common
format, one distinct stack a line::

    THREAD<TAB>COUNT<TAB>WEIGHT<TAB>func;func;...;leaf

THREAD is ``main`` for the main thread (else a name), COUNT the number of
samples, WEIGHT what the profiler weights shares by (samples, or seconds for
pyinstrument), frames are bare function names, root first.

This file runs under the dev venv (ours), the ox_profile 0.2.14 venv (orig),
the pyinstrument venv, and as the target of py-spy/austin (--profiler none),
so it uses only the standard library besides the profiler under test.
"""

import argparse
import importlib.util
import json
import os
import sys
import threading
import time

_CLK = os.sysconf("SC_CLK_TCK")


def thread_cpu(native_id):
    """CPU seconds (user+sys) used so far by a thread of this process, or None.

    Uses the thread's CPU-time clock (Linux encodes a per-thread clock id from
    the thread id: ((~tid) << 3) | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED), which
    has ns resolution; falls back to /proc/self/task/TID/stat (clock ticks)."""
    if not native_id:
        return None
    try:
        return time.clock_gettime(((~int(native_id)) << 3) | 6)
    except (OSError, OverflowError, ValueError):
        pass
    try:
        with open("/proc/self/task/%d/stat" % native_id) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / _CLK


def process_cpu():
    t = os.times()
    return t.user + t.system


def load_workload(path):
    name = "bench_wl_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class Window:
    """CPU accounting over the profiled window: the sampler thread's CPU if its
    native id is known, and (process CPU - main thread CPU) as a fallback."""

    def __init__(self, sampler_tid=None):
        self.tid = sampler_tid
        self.t0 = time.perf_counter()
        self.s0 = thread_cpu(sampler_tid)
        self.p0 = process_cpu()
        self.m0 = time.thread_time()

    def close(self):
        out = {"window_s": time.perf_counter() - self.t0,
               "other_threads_cpu_s": (process_cpu() - self.p0) - (time.thread_time() - self.m0)}
        s1 = thread_cpu(self.tid)
        if self.s0 is not None and s1 is not None:
            out["sampler_cpu_s"] = s1 - self.s0
        return out


def run_none(mod, wargs, opts):
    return mod.run(wargs), {}, [], None


def run_ours(mod, wargs, opts):
    import ox_profile

    kwargs = {"interval": opts.interval, "mode": opts.mode}
    if opts.backend:
        kwargs["backend"] = opts.backend
    prof = ox_profile.Profiler(**kwargs)
    prof.start()
    tid = None
    for _ in range(100):  # the sampler thread may take a moment to publish its id
        tid = prof.stats().get("sampler_native_id")
        if tid:
            break
        time.sleep(0.001)
    win = Window(tid)
    result = mod.run(wargs)
    cpu = win.close()
    prof.stop()
    stats = dict(prof.stats())
    profile = prof.snapshot()
    main_ident = threading.main_thread().ident
    stacks = []
    for s in profile.stacks():
        key = "main" if s.thread.ident == main_ident else (s.thread.name or "t%d" % s.thread.ident)
        stacks.append((key, s.hits, s.hits, [f.function.name for f in s.frames]))
    stats["distinct_stacks"] = profile.distinct_stacks
    return result, stats, stacks, cpu


def run_orig(mod, wargs, opts):
    from ox_profile.core.launchers import SimpleLauncher

    launcher = SimpleLauncher(interval=opts.interval)
    sampler = launcher.sampler
    real_run = sampler.run
    cap = [0, 0.0, 0.0]

    def timed_run():  # measure the cost of each capture (Sampler.__call__ -> self.run)
        t = time.perf_counter()
        real_run()
        d = time.perf_counter() - t
        cap[0] += 1
        cap[1] += d
        cap[2] = max(cap[2], d)

    sampler.run = timed_run
    launcher.start()
    launcher.unpause()
    win = Window(launcher.native_id)
    result = mod.run(wargs)
    cpu = win.close()
    launcher.pause()
    launcher.cancel()
    with sampler.my_db.db_lock:
        raw = dict(sampler.my_db.my_db)
    tracker = launcher.tracker.stats()
    stats = {"ticks": cap[0],
             "capture_mean_us": cap[1] / cap[0] * 1e6 if cap[0] else None,
             "capture_max_us": cap[2] * 1e6,
             "tracker": tracker if isinstance(tracker, dict) else None,
             "distinct_stacks": len(raw)}
    stacks = []
    for name, hits in raw.items():
        frames = [f.rsplit("(", 1)[0] for f in name.split(";")]
        # The main thread's outermost frame is this driver's module frame.
        key = "main" if name.startswith("<module>(__main__)") else "other"
        stacks.append((key, hits, hits, frames))
    return result, stats, stacks, cpu


def run_pyinstrument(mod, wargs, opts):
    from pyinstrument import Profiler

    prof = Profiler(interval=opts.interval)
    prof.start()
    win = Window(None)
    result = mod.run(wargs)
    cpu = win.close()
    session = prof.stop()
    root = session.root_frame(trim_stem=False)
    mean_dt = session.duration / session.sample_count if session.sample_count else opts.interval
    stacks = []

    def walk(frame, path):
        path = path + [frame.function]
        kids = [c for c in frame.children if not c.is_synthetic]
        self_time = frame.time - sum(c.time for c in kids)
        if self_time > 0:
            stacks.append(("main", self_time / mean_dt, self_time, path))
        for c in kids:
            walk(c, path)

    if root is not None:
        walk(root, [])
    stats = {"sample_count": session.sample_count, "duration": session.duration,
             "weights": "seconds"}
    return result, stats, stacks, cpu


RUNNERS = {"none": run_none, "ours": run_ours, "orig": run_orig, "pyinstrument": run_pyinstrument}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiler", choices=sorted(RUNNERS), default="none")
    ap.add_argument("--interval", type=float, default=0.001)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--mode", default="wall")
    ap.add_argument("--stacks-out", default=None)
    ap.add_argument("workload")
    ap.add_argument("wargs", nargs=argparse.REMAINDER)
    opts = ap.parse_args()
    mod = load_workload(opts.workload)
    result, stats, stacks, cpu = RUNNERS[opts.profiler](mod, opts.wargs, opts)
    if opts.stacks_out:
        with open(opts.stacks_out, "w") as fh:
            for key, count, weight, frames in stacks:
                fh.write("%s\t%r\t%r\t%s\n" % (key, count, weight, ";".join(frames)))
    out = {"result": result, "stats": stats, "cpu": cpu, "proc_cpu_s": time.process_time(),
           "pid": os.getpid(),
           "python": sys.version.split()[0]}
    print("BENCH_RESULT " + json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
