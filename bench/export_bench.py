"""Export benchmark: time every exporter on a profile of ~100,000 distinct stacks.

By default the profile is built directly with ``ox_profile._engine.Snapshot.from_raw``
(100,000 distinct functions, each the leaf of its own stack under a tree of
shared callers, spread over 4 threads and some labels).  With ``--program`` it
comes from the real sampler instead: a generated Python program with 100,000
distinct functions, each spinning a little longer than one sampling interval,
called one after the other under the profiler (functions the sampler missed are
run again until enough stacks are recorded).  Usage::

    .venv/bin/python bench/export_bench.py [--stacks 100000] [--program [--interval 0.0001]] [--repeat 3]

Prints the time of each format's ``render`` (and of the uncompressed pprof
encoding in C); the goal is <= 1 s per format at 100,000 stacks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

import ox_profile
from ox_profile import export

#: Where the generated program is written (removed once profiled).
GENERATED = os.path.join(tempfile.gettempdir(), "oxb_generated_%d.py" % os.getpid())


def generate_functions(count: int, spin: float) -> List[Callable[[], int]]:
    """``count`` distinct functions ``oxb_fn_NNNNNN``, each spinning ``spin`` s in its own frame."""
    lines = ["import time", "_pc = time.perf_counter", ""]
    for i in range(count):
        lines.append("def oxb_fn_%06d():\n    end = _pc() + %r\n    n = 0\n"
                     "    while _pc() < end:\n        n += 1\n    return n\n" % (i, spin))
    source = "\n".join(lines)
    namespace: Dict[str, Any] = {"__name__": "oxb_generated"}
    path = GENERATED
    with open(path, "w") as fh:  # a real file so the profile's filenames exist
        fh.write(source)
    exec(compile(source, path, "exec"), namespace)
    return [namespace["oxb_fn_%06d" % i] for i in range(count)]


def oxb_driver(functions: List[Callable[[], int]]) -> None:
    """Call each function once."""
    for fn in functions:
        fn()


def build_profile(stacks: int, interval: float, rounds: int = 4) -> "ox_profile.Profile":
    """A profile with about ``stacks`` distinct stacks recorded by the real sampler."""
    t0 = time.perf_counter()
    functions = generate_functions(stacks, interval * 1.6)
    print("generated %d functions in %.1f s" % (stacks, time.perf_counter() - t0))
    profiler = ox_profile.Profiler(interval=interval, mode="wall",
                                   max_memory=512 * 1024 * 1024)
    todo = functions
    t0 = time.perf_counter()
    for _ in range(rounds):
        profiler.start()
        try:
            oxb_driver(todo)
        finally:
            profiler.stop()
        seen = {f.qualname for f in profiler.snapshot().functions}
        todo = [fn for fn in functions if fn.__name__ not in seen]
        if len(todo) < stacks * 0.005:
            break
    profile = profiler.snapshot()
    print("profiled in %.1f s: %d samples, %d distinct stacks, %d functions, %d missed"
          % (time.perf_counter() - t0, profile.total_samples, profile.distinct_stacks,
             len(profile.functions), len(todo)))
    return profile


def build_raw_profile(stacks: int, depth: int = 12, threads: int = 4) -> "ox_profile.Profile":
    """A profile of ``stacks`` distinct stacks made with ``Snapshot.from_raw``."""
    from ox_profile import _engine
    from ox_profile.profile import Profile

    t0 = time.perf_counter()
    fanout = 10
    inner = depth - 1  # caller frames above each leaf: a tree with `fanout` children per node
    functions = [("oxb_caller_%d" % i, "OxbTree.oxb_caller_%d" % i, "oxb.tree",
                  "/srv/app/oxb/tree_%d.py" % (i % 50), 10 + i) for i in range(inner * fanout)]
    base = len(functions)
    functions += [("oxb_fn_%06d" % i, "oxb_fn_%06d" % i, "oxb.generated",
                   "/srv/app/oxb/generated_%d.py" % (i % 100), 1 + i) for i in range(stacks)]
    stack_list = []
    for i in range(stacks):
        callers = [((i // fanout ** (k % 5)) % fanout) + k * fanout for k in range(inner)]
        frames = [(base + i, 3 + i % 7)]  # leaf first
        frames += [(fid, 20 + fid % 13) for fid in reversed(callers)]
        stack_list.append(frames)
    thread_list = [(1000 + t, 5000 + t, "oxb-worker-%d" % t) for t in range(threads)]
    labels = ["endpoint_%d" % i for i in range(10)]
    rows = [(i % threads, (i % 11) - 1, i, 1 + i % 5, i % 2, 0) for i in range(stacks)]
    snapshot = _engine.Snapshot.from_raw(functions, thread_list, labels, stack_list, rows)
    profile = Profile(snapshot, {"mode": "wall", "interval": 0.001, "duration": 10.0,
                                 "samples": sum(r[3] for r in rows), "backend": "raw"})
    print("built %d stacks with Snapshot.from_raw in %.1f s: %d samples, %d functions"
          % (profile.distinct_stacks, time.perf_counter() - t0, profile.total_samples,
             len(profile.functions)))
    return profile


def timed(fn: Callable[[], Any], repeat: int) -> "tuple[float, Any]":
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=100_000)
    parser.add_argument("--program", action="store_true",
                        help="profile a generated program instead of using Snapshot.from_raw")
    parser.add_argument("--interval", type=float, default=0.0001,
                        help="sampling interval with --program")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    if args.program:
        try:
            profile = build_profile(args.stacks, args.interval)
        finally:
            try:
                os.unlink(GENERATED)
            except OSError:
                pass
    else:
        profile = build_raw_profile(args.stacks)
    print("%-12s %10s %12s" % ("format", "seconds", "bytes"))
    worst = 0.0
    rows = [("pprof (raw)", profile.pprof_bytes)]
    rows += [(fmt, (lambda fmt=fmt: export.render(profile, fmt))) for fmt in export.FORMATS]
    for name, fn in rows:
        try:
            seconds, out = timed(fn, args.repeat)
        except Exception as exc:  # e.g. the HTML report not installed yet
            print("%-12s failed: %s: %s" % (name, type(exc).__name__, exc))
            continue
        size = len(out.encode("utf-8") if isinstance(out, str) else out)
        worst = max(worst, seconds)
        print("%-12s %10.3f %12d%s" % (name, seconds, size, "  (over 1 s)" if seconds > 1 else ""))
    with tempfile.TemporaryDirectory() as tmp:
        seconds, _ = timed(lambda: export.save(profile, os.path.join(tmp, "p.pb.gz")), args.repeat)
        print("%-12s %10.3f" % ("save .pb.gz", seconds))
    print("slowest format: %.3f s for %d distinct stacks" % (worst, profile.distinct_stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
