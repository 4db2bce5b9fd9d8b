#!/usr/bin/env python3
"""ox_profile benchmark: ours against the original ox_profile 0.2.14, py-spy,
pyinstrument and austin, all in one run on this machine.

    .venv/bin/python bench/run.py            # full run (~8-10 minutes)
    .venv/bin/python bench/run.py --quick    # short run (< 2 minutes)
    .venv/bin/python bench/run.py --only accuracy

Prints markdown tables and writes them to bench/results/latest.md (raw
per-run data in bench/results/latest.json).  See bench/README.md for how
each number is computed.
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import peers  # noqa: E402

# The interpreter that runs our ox_profile (and the no-profiler baseline).
DEV_PY = os.environ.get("OXP_BENCH_PYTHON") or os.path.join(ROOT, ".venv", "bin", "python")
DRIVER = os.path.join(BENCH, "drivers", "inproc.py")
WORKLOADS = os.path.join(BENCH, "workloads")
RESULTS = os.path.join(BENCH, "results")
TABLES = ("overhead", "accuracy", "depth", "threads")

INTERVALS = (0.001, 0.0001)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Profiler configurations


class Config:
    """One way of profiling a workload.

    kind: none | ours | orig | pyinstrument (in-process, via drivers/inproc.py)
          pyspy | austin (external, wrapping the driver with --profiler none).
    """

    def __init__(self, key, label, kind, interval=None, backend=None, mode="wall", flags=(), cid=None,
                 max_reps=None):
        self.key, self.label, self.kind = key, label, kind
        self.interval, self.backend, self.mode, self.flags = interval, backend, mode, tuple(flags)
        self.cid = cid
        self.max_reps = max_reps  # run at most this many repetitions (very slow configurations)

    @property
    def id(self):
        if self.cid:
            return self.cid
        return "%s@%s" % (self.key, fmt_interval(self.interval)) if self.interval else self.key


def fmt_interval(iv):
    if iv is None:
        return "-"
    return "%g ms" % (iv * 1e3) if iv >= 0.001 else "%g µs" % (iv * 1e6)


def profiler_configs(interval):
    return [
        Config("ours-nogil", "ours (nogil)", "ours", interval, backend="nogil"),
        Config("ours-gil", "ours (gil)", "ours", interval, backend="gil"),
        Config("orig", "ox_profile 0.2.14", "orig", interval),
        # Blocking py-spy at 10 kHz stretches the workload ~10x: one run is enough.
        Config("pyspy", "py-spy", "pyspy", interval, max_reps=1 if interval < 0.001 else None),
        Config("pyspy-nb", "py-spy --nonblocking", "pyspy", interval, flags=["--nonblocking"]),
        Config("pyinstrument", "pyinstrument", "pyinstrument", interval),
        Config("austin", "austin", "austin", interval),
    ]


def thread_configs(interval):
    return [
        Config("ours-wall", "ours (nogil, wall)", "ours", interval, backend="nogil", mode="wall"),
        Config("ours-cpu", "ours (nogil, cpu)", "ours", interval, backend="nogil", mode="cpu"),
        Config("ours-gil-wall", "ours (gil, wall)", "ours", interval, backend="gil", mode="wall"),
        Config("orig", "ox_profile 0.2.14", "orig", interval),
        Config("pyspy", "py-spy (active threads)", "pyspy", interval),
        Config("pyspy-idle", "py-spy --idle", "pyspy", interval, flags=["--idle"]),
        Config("austin", "austin (wall)", "austin", interval),
        Config("austin-cpu", "austin -s (cpu)", "austin", interval, mode="cpu", flags=["-s"]),
    ]


BASELINE = Config("baseline", "no profiler", "none")


# ---------------------------------------------------------------------------
# Running one configuration


class Env:
    """What is available: peer versions or reasons they are not."""

    def __init__(self, only_peers=None):
        self.avail = {}
        self.versions = {}
        ours_ok, ours_info = check_ours()
        self.avail["ours"] = (ours_ok, ours_info)
        self.avail["none"] = (os.path.exists(DEV_PY), "dev venv missing: run make build")
        for peer in ("pyspy", "pyinstrument", "austin", "orig"):
            if only_peers is not None and peer not in only_peers:
                self.avail[peer] = (False, "not selected")
                continue
            self.avail[peer] = peers.ensure(peer, log)

    def python_for(self, kind):
        if kind in ("none", "ours"):
            return DEV_PY
        if kind in ("orig", "pyinstrument"):
            return peers.venv_python(kind)
        # Targets of the external samplers: the same interpreter, from the
        # peer's own venv (no ox_profile on its path).
        return peers.venv_python(kind)


def check_ours():
    if not os.path.exists(DEV_PY):
        return False, "no dev venv (.venv): run make build"
    code = ("import ox_profile, sys; ox_profile.Profiler; import ox_profile._engine as e; "
            "b = getattr(e, 'BUILD_INFO', {}); b = b if isinstance(b, dict) else {}; "
            "print(getattr(ox_profile, '__version__', 'dev'), '(reader %s)' % b.get('reader', '?'))")
    proc = subprocess.run([DEV_PY, "-c", code], capture_output=True, text=True, env=clean_env())
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, "engine not available: %s" % err[-150:]
    return True, proc.stdout.strip() or "dev"


def clean_env():
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(var, None)
    env["PYTHONHASHSEED"] = "0"
    return env


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_config(env, cfg, workload, wargs, tmpdir, timeout=300, attempts=3):
    """Run one workload once under one configuration; returns a record dict.

    A run that fails is retried (austin now and then fails to identify the
    interpreter of a process it just started); the failures are kept."""
    failures = []
    for _ in range(attempts):
        rec = _run_config_once(env, cfg, workload, wargs, tmpdir, timeout)
        if "error" not in rec or not env.avail.get(cfg.kind, (False,))[0] or "timed out" in rec["error"]:
            break
        failures.append(rec["error"])
        log("    retrying %s: %s" % (cfg.id, rec["error"][:120]))
    if failures and "error" not in rec:
        rec["failed_attempts"] = failures
    return rec


def _run_config_once(env, cfg, workload, wargs, tmpdir, timeout):
    rec = {"config": cfg.id, "key": cfg.key, "label": cfg.label, "kind": cfg.kind,
           "interval": cfg.interval, "mode": cfg.mode, "workload": workload, "wargs": list(wargs)}
    ok, info = env.avail.get(cfg.kind, (False, "unknown profiler"))
    if not ok:
        rec["error"] = info
        return rec
    wl = os.path.join(WORKLOADS, workload + ".py")
    stacks = os.path.join(tmpdir, "stacks.txt")
    if os.path.exists(stacks):
        os.unlink(stacks)
    py = env.python_for(cfg.kind)
    if cfg.kind in ("none", "ours", "orig", "pyinstrument"):
        cmd = [py, DRIVER, "--profiler", cfg.kind, "--mode", cfg.mode]
        if cfg.interval:
            cmd += ["--interval", repr(cfg.interval)]
        if cfg.backend:
            cmd += ["--backend", cfg.backend]
        if cfg.kind != "none":
            cmd += ["--stacks-out", stacks]
        cmd += [wl] + list(wargs)
    elif cfg.kind == "pyspy":
        rate = int(round(1.0 / cfg.interval))
        cmd = [peers.venv_bin("pyspy", "py-spy"), "record", "--format", "raw", "-r", str(rate),
               "--threads", "-o", stacks] + list(cfg.flags) + [
               "--", py, DRIVER, "--profiler", "none", wl] + list(wargs)
    elif cfg.kind == "austin":
        cmd = [peers.venv_bin("austin", "austin"), "-i", str(int(round(cfg.interval * 1e6))),
               "-o", stacks] + list(cfg.flags) + [py, DRIVER, "--profiler", "none", wl] + list(wargs)
    else:
        rec["error"] = "unknown kind %s" % cfg.kind
        return rec
    c0 = children_cpu()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=clean_env(), cwd=tmpdir)
    except subprocess.TimeoutExpired:
        rec["error"] = "timed out after %d s" % timeout
        return rec
    rec["proc_wall_s"] = time.perf_counter() - t0
    rec["children_cpu_s"] = children_cpu() - c0
    out = None
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            out = json.loads(line[len("BENCH_RESULT "):])
    if proc.returncode != 0 or out is None:
        err = [ln.strip() for ln in _ANSI.sub("", proc.stderr).strip().splitlines() if ln.strip()]
        rec["error"] = "exit %d: %s" % (proc.returncode, (" ".join(err[-3:]) if err else "no output")[-300:])
        if cfg.kind == "austin" and re.search(r"permission|ptrace|EPERM", proc.stderr, re.I):
            rec["error"] = "austin cannot attach (ptrace permission): " + rec["error"]
        return rec
    rec.update(result=out["result"], stats=out.get("stats") or {}, cpu=out.get("cpu"),
               proc_cpu_s=out.get("proc_cpu_s"))
    if cfg.kind == "none":
        return rec
    try:
        if cfg.kind == "pyspy":
            st = parse_pyspy(stacks, out.get("pid"))
        elif cfg.kind == "austin":
            st = parse_austin(stacks)
            m = re.search(r"Frame sampling \(min/avg/max\)\s*:\s*([\d.]+)/([\d.]+)/([\d.]+)",
                          _ANSI.sub("", proc.stderr))
            if m:
                rec["stats"]["capture_mean_us"] = float(m.group(2))
                rec["stats"]["capture_max_us"] = float(m.group(3))
        else:
            st = parse_common(stacks)
    except OSError as exc:
        rec["error"] = "no profile written: %s" % exc
        return rec
    rec["analysis"] = analyze(st, out["result"])
    return rec


# ---------------------------------------------------------------------------
# Parsing profiles into (thread, count, weight, [func, ...root->leaf])


def parse_common(path):
    rows = []
    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            thread, count, weight, frames = line.split("\t", 3)
            rows.append((thread, float(count), float(weight), frames.split(";") if frames else []))
    return rows


def parse_pyspy(path, pid=None):
    """py-spy --format raw --threads: ``thread (TID): NAME;func (file:line);... COUNT``.

    The name is missing when py-spy could not read it (early in the process), so
    the main thread is recognised by its native id (= the pid) as well."""
    rows = []
    with open(path) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, count = line.rsplit(" ", 1)
            parts = stack.split(";")
            thread = "other"
            if parts and parts[0].startswith("thread ("):
                head = parts[0]
                name = head.split(": ", 1)[1] if ": " in head else ""
                try:
                    tid = int(head[len("thread ("):head.index(")")], 0)
                except ValueError:
                    tid = None
                main = name == "MainThread" or (pid is not None and tid == pid)
                thread = "main" if main else (name or "t%s" % tid)
                parts = parts[1:]
            if parts and parts[0].startswith("process "):
                parts = parts[1:]
            frames = [p.rsplit(" (", 1)[0] for p in parts]
            rows.append((thread, float(count), float(count), frames))
    return rows


def parse_austin(path):
    """austin 3 collapsed output: ``P<pid>;T<iid>:<tid>;file:func:line;... METRIC``,
    one line per sample (metric: µs of wall or CPU time); ``#`` lines are metadata."""
    rows = []
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            try:
                stack, metric = line.rsplit(" ", 1)
                metric = float(metric)
            except ValueError:
                continue
            parts = stack.split(";")
            pid = parts[0][1:] if parts and parts[0].startswith("P") else None
            thread = "other"
            if len(parts) > 1 and parts[1].startswith("T"):
                tid = parts[1].rsplit(":", 1)[-1]
                thread = "main" if tid == pid else "t" + tid
            frames = []
            for p in parts[2:]:
                bits = p.rsplit(":", 2)
                func = bits[1] if len(bits) == 3 else p
                frames.append(func.rsplit(".", 1)[-1] if not func.startswith("<") else func)
            rows.append((thread, 1.0, metric, frames))
    return rows


def analyze(rows, result):
    """Shares of the tracked functions and sample rates.

    The denominator is the samples of the main thread taken while the
    workload's root function (cpu_main, cfunc_main, ...) was on the stack, so
    interpreter start-up, imports and profiler set-up never count; the ground
    truth is measured over exactly that function too."""
    root = result["root"]
    elapsed = result["elapsed"]
    tracked = list(result.get("truth", {}))
    root_count = root_weight = 0.0
    total = {f: 0.0 for f in tracked}
    self_ = {f: 0.0 for f in tracked}
    roles = {"cpu_worker": 0.0, "sleep_worker": 0.0, "threads_main": 0.0}
    for thread, count, weight, frames in rows:
        fs = set(frames)
        for role in roles:
            if role in fs:
                roles[role] += count
        if root not in fs:
            continue
        if thread != "main" and root != "threads_main":
            continue
        root_count += count
        root_weight += weight
        for f in tracked:
            if f in fs:
                total[f] += weight
            if frames and frames[-1] == f:
                self_[f] += weight
    out = {"root_samples": root_count, "rate_hz": root_count / elapsed if elapsed else None}
    if root_weight:
        out["share"] = {f: total[f] / root_weight for f in tracked}
        out["self_share"] = {f: self_[f] / root_weight for f in tracked}
    if result.get("workload") == "threads":
        out["cpu_thread_hz"] = roles["cpu_worker"] / result["n_cpu"] / elapsed
        out["sleep_thread_hz"] = roles["sleep_worker"] / result["n_sleep"] / elapsed
        out["main_thread_hz"] = roles["threads_main"] / elapsed
    return out


# ---------------------------------------------------------------------------
# Derived per-run numbers


def sampler_cpu_pct(rec):
    """CPU used by the sampler as % of one core, and how it was measured."""
    kind = rec["kind"]
    if kind in ("pyspy", "austin"):
        if rec.get("proc_cpu_s") is None:
            return None, ""
        return 100.0 * (rec["children_cpu_s"] - rec["proc_cpu_s"]) / rec["proc_wall_s"], "ext"
    cpu = rec.get("cpu") or {}
    if kind == "pyinstrument":
        return None, "in-thread"
    if cpu.get("sampler_cpu_s") is not None and cpu.get("window_s"):
        return 100.0 * cpu["sampler_cpu_s"] / cpu["window_s"], "thread"
    if cpu.get("window_s"):
        return 100.0 * cpu["other_threads_cpu_s"] / cpu["window_s"], "proc-main"
    return None, ""


BASELINE_EVERY = 4


def with_baselines(configs, rng):
    """Shuffle configs and put a baseline first, last and every BASELINE_EVERY runs."""
    configs = list(configs)
    rng.shuffle(configs)
    batch = [BASELINE]
    for i, c in enumerate(configs):
        batch.append(c)
        if (i + 1) % BASELINE_EVERY == 0 and i + 1 < len(configs):
            batch.append(BASELINE)
    batch.append(BASELINE)
    return batch


def nearest_baselines(base, r):
    """The baseline runs just before and just after run r (same workload)."""
    seq = r.get("seq")
    if seq is None:
        return base
    before = [b for b in base if b.get("seq", -1) < seq]
    after = [b for b in base if b.get("seq", -1) > seq]
    near = ([max(before, key=lambda b: b["seq"])] if before else []) + \
           ([min(after, key=lambda b: b["seq"])] if after else [])
    return near or base


def paired_overheads(records, runs, workload, key="elapsed"):
    """Per run: 100 * (x / x0 - 1), x0 = mean of the baseline runs just before
    and after it, so changes of the machine's load over time mostly cancel."""
    base = ok_runs(records, BASELINE.id, workload)
    out = []
    for r in runs:
        x = r["result"].get(key)
        near = [b["result"].get(key) for b in nearest_baselines([b for b in base if b is not r], r)]
        near = [v for v in near if v is not None]
        x0 = sum(near) / len(near) if near else None
        if x is not None and x0:
            out.append(100.0 * (x / x0 - 1.0))
    return out


def baseline_spread(records, workload, key="elapsed"):
    """Noise floor: median |difference| in % between a baseline run and its
    neighbouring baselines (what a profiler's 'overhead' may be off by)."""
    base = ok_runs(records, BASELINE.id, workload)
    ovh = paired_overheads(records, base, workload, key)
    return median([abs(x) for x in ovh])


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ok_runs(records, cid, workload):
    return [r for r in records if r["config"] == cid and r["workload"] == workload and "error" not in r]


def first_error(records, cid, workload):
    for r in records:
        if r["config"] == cid and r["workload"] == workload and "error" in r:
            return r["error"]
    return None


def f1(x, suffix=""):
    return "n/a" if x is None else "%.1f%s" % (x, suffix)


def na(reason):
    reason = reason or "no data"
    reason = reason.replace("|", "/")
    return "n/a (%s)" % (reason if len(reason) < 90 else reason[:87] + "...")


# ---------------------------------------------------------------------------
# Tables


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def table_overhead(records):
    base = ok_runs(records, BASELINE.id, "cpu")
    t0 = median([r["result"]["elapsed"] for r in base])
    noise = baseline_spread(records, "cpu")
    noise_cpu = baseline_spread(records, "cpu", "main_cpu_s")
    header = ["profiler", "interval", "wall s (median)", "overhead % (wall)", "overhead % (main-thread CPU)",
              "achieved Hz (main thread)", "requested Hz", "capture µs/tick", "sampler CPU % of a core", "runs"]
    rows = [["no profiler (baseline)", "-", "%.3f" % t0 if t0 else "n/a",
             "0 (noise ±%.1f)" % noise if noise is not None else "0",
             "0 (noise ±%.1f)" % noise_cpu if noise_cpu is not None else "0",
             "-", "-", "-", "-", len(base)]]
    for iv in INTERVALS:
        for cfg in profiler_configs(iv):
            runs = ok_runs(records, cfg.id, "cpu")
            if not runs:
                err = first_error(records, cfg.id, "cpu")
                if err is None:
                    continue
                rows.append([cfg.label, fmt_interval(iv), na(err), "", "", "", "%g" % (1 / iv), "", "", 0])
                continue
            t = median([r["result"]["elapsed"] for r in runs])
            ovh = median(paired_overheads(records, runs, "cpu"))
            ovh_cpu = median(paired_overheads(records, runs, "cpu", "main_cpu_s"))
            hz = median([r["analysis"]["rate_hz"] for r in runs])
            cap = median([r["stats"].get("capture_mean_us") for r in runs])
            cpus = [sampler_cpu_pct(r) for r in runs]
            how = {h for _, h in cpus}
            cpu = median([c for c, _ in cpus])
            if "in-thread" in how:
                cpu_s = "in-thread"
            else:
                cpu_s = f1(cpu) + (" *" if "proc-main" in how else "")
            cap_s = f1(cap) if cap is not None else "n/a"
            if cfg.kind == "ours" and cfg.backend == "gil" and cap is not None:
                cap_s += " †"
            rows.append([cfg.label, fmt_interval(iv), "%.3f" % t,
                         "%+.1f" % ovh if ovh is not None else "n/a",
                         "%+.1f" % ovh_cpu if ovh_cpu is not None else "n/a",
                         "%.0f" % hz if hz is not None else "n/a", "%g" % (1 / iv),
                         cap_s, cpu_s, len(runs)])
    return md_table(header, rows)


def _share_cell(runs, fn):
    shares = [r["analysis"].get("share", {}).get(fn) for r in runs]
    errs = []
    for r in runs:
        s = r["analysis"].get("share", {}).get(fn)
        if s is not None:
            errs.append(100.0 * (s - r["result"]["truth"][fn]))
    s = median(shares)
    e = median(errs)
    if s is None:
        return "n/a"
    return "%.1f (%+.1f)" % (100.0 * s, e)


def table_accuracy(records):
    cols = [("cpu", "work_a"), ("cpu", "work_b"), ("cfunc", "in_c_call"), ("cfunc", "in_python")]
    header = ["profiler", "interval"] + ["%s: %s" % c for c in cols] + ["runs"]
    truth = []
    for wl, fn in cols:
        vals = [r["result"]["truth"][fn] for r in ok_runs(records, BASELINE.id, wl)]
        m = median(vals)
        truth.append("**%.1f**" % (100 * m) if m is not None else "n/a")
    rows = [["ground truth (perf_counter)", "-"] + truth + ["-"]]
    for iv in INTERVALS:
        for cfg in profiler_configs(iv):
            if cfg.key == "pyspy-nb":
                continue
            cells, nruns, err = [], [], None
            for wl, fn in cols:
                runs = ok_runs(records, cfg.id, wl)
                nruns.append(len(runs))
                if runs:
                    cells.append(_share_cell(runs, fn))
                else:
                    err = err or first_error(records, cfg.id, wl)
                    cells.append(na(err) if err else "-")
            if not any(nruns):
                if err is not None:
                    rows.append([cfg.label, fmt_interval(iv), na(err)] + [""] * (len(cols) - 1) + [0])
                continue
            rows.append([cfg.label, fmt_interval(iv)] + cells + ["/".join(str(n) for n in sorted(set(nruns)))])
    return md_table(header, rows)


def table_depth(records, depths, threads):
    header = ["depth \\ threads"] + ["%d" % t for t in threads]
    rows = []
    err = first_error(records, "ours-deep@%d/%d" % (depths[0], threads[0]), "deep")
    if not any(ok_runs(records, "ours-deep@%d/%d" % (d, t), "deep") for d in depths for t in threads) and err:
        return "ours: " + na(err) + "\n\n" + table_depth_details(records, depths, threads)
    for d in depths:
        row = ["%d" % d]
        for t in threads:
            runs = ok_runs(records, "ours-deep@%d/%d" % (d, t), "deep")
            cap = median([r["stats"].get("capture_mean_us") for r in runs])
            if cap is None:
                err = first_error(records, "ours-deep@%d/%d" % (d, t), "deep")
                row.append(na(err) if err else "-")
            else:
                row.append("%.1f" % cap)
        rows.append(row)
    return md_table(header, rows) + "\n\n" + table_depth_details(records, depths, threads)


def table_depth_details(records, depths, threads):
    header2 = ["depth", "threads", "ours capture mean µs", "ours capture max µs", "ours achieved Hz",
               "ours late wakeups", "0.2.14 capture mean µs", "0.2.14 achieved Hz"]
    rows2 = []
    for d in depths:
        for t in threads:
            ours = ok_runs(records, "ours-deep@%d/%d" % (d, t), "deep")
            orig = ok_runs(records, "orig-deep@%d/%d" % (d, t), "deep")
            rows2.append([
                d, t,
                f1(median([r["stats"].get("capture_mean_us") for r in ours])),
                f1(median([r["stats"].get("capture_max_us") for r in ours])),
                f1(median([r["stats"].get("rate_hz") for r in ours])),
                f1(median([r["stats"].get("late_wakeups") for r in ours]), ""),
                f1(median([r["stats"].get("capture_mean_us") for r in orig])),
                f1(median([r["stats"]["ticks"] / r["result"]["elapsed"] for r in orig
                           if r["stats"].get("ticks")])),
            ])
    return "Details (medians):\n\n" + md_table(header2, rows2)


def table_threads(records, interval):
    base = ok_runs(records, BASELINE.id, "threads")
    t0 = median([r["result"]["elapsed"] for r in base])
    truth_cpu = median([r["result"]["truth"]["cpu_worker_cpu_share"] for r in base])
    truth_sleep = median([r["result"]["truth"]["sleep_worker_cpu_share"] for r in base])
    header = ["profiler", "wall s", "overhead %", "samples/s per CPU-bound thread",
              "samples/s per sleeping thread", "samples/s of main thread (in join)", "runs"]
    noise = baseline_spread(records, "threads")
    rows = [["no profiler (baseline)", "%.3f" % t0 if t0 else "n/a",
             "0 (noise ±%.1f)" % noise if noise is not None else "0",
             "CPU share %s" % (f1(100 * truth_cpu, "%") if truth_cpu is not None else "n/a"),
             "CPU share %s" % (f1(100 * truth_sleep, "%") if truth_sleep is not None else "n/a"),
             "-", len(base)]]
    for cfg in thread_configs(interval):
        runs = ok_runs(records, cfg.id, "threads")
        if not runs:
            err = first_error(records, cfg.id, "threads")
            if err:
                rows.append([cfg.label, na(err), "", "", "", "", 0])
            continue
        t = median([r["result"]["elapsed"] for r in runs])
        ovh = median(paired_overheads(records, runs, "threads"))
        rows.append([cfg.label, "%.3f" % t, "%+.1f" % ovh if ovh is not None else "n/a",
                     f1(median([r["analysis"]["cpu_thread_hz"] for r in runs])),
                     f1(median([r["analysis"]["sleep_thread_hz"] for r in runs])),
                     f1(median([r["analysis"]["main_thread_hz"] for r in runs])),
                     len(runs)])
    return md_table(header, rows)


# ---------------------------------------------------------------------------
# The plan


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M %Z").strip(),
            "host": platform.node(), "kernel": platform.release(), "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}


DEPTHS, DTHREADS = (10, 50, 200), (1, 8, 32)


def render(data):
    """The markdown report for the results of one run."""
    info, versions, records = data["info"], data["versions"], data["records"]
    unavailable = data.get("unavailable", {})
    tables = info.get("tables", list(TABLES))
    quick, reps = info.get("quick"), info.get("reps")
    parts = ["# ox_profile benchmark%s" % (" (quick)" if quick else ""), "",
             "- date: %s; machine: %s, %s cores, Linux %s; CPython %s" % (
                 info["date"], info["cpu"], info["cores"], info["kernel"], info["python"]),
             "- load average at start %s, at end %s, median 1-min load over the runs %s (this bench alone "
             "adds ~1-2); bench took %d s; %s repetition(s) per configuration" % (
                 "/".join("%.2f" % x for x in info["loadavg_start"]),
                 "/".join("%.2f" % x for x in info["loadavg_end"]),
                 f1(median([r.get("loadavg_1min") for r in records])),
                 info["bench_seconds"], reps),
             "- niceness of the bench processes: %s" % info.get("nice", 0),
             "- versions: " + ", ".join("%s %s" % (k, v) for k, v in sorted(versions.items()) if k != "none"),
             "- unavailable: " + (", ".join("%s (%s)" % kv for kv in sorted(unavailable.items())) or "none"),
             ""]
    if "overhead" in tables:
        parts += ["## 1. Overhead and rate (cpu workload)", "",
                  table_overhead(records), "",
                  "Overhead: median over runs of (time of the workload's own timed loop / mean of the "
                  "no-profiler runs just before and after it - 1); wall time, and the main thread's CPU time "
                  "(insensitive to other load on the machine, blind to pauses such as py-spy's). "
                  "Noise: median |difference| between a baseline run and its neighbouring baseline runs. Achieved Hz: samples of the main thread inside the "
                  "timed loop / its duration. Capture cost: ours = stats()['capture_mean_us']; 0.2.14 = "
                  "timed Sampler.run; austin = its own 'frame sampling avg'. Sampler CPU: ours and 0.2.14 "
                  "= CPU of the sampler thread (its per-thread CPU clock); py-spy/austin = CPU of the "
                  "profiler process; pyinstrument samples inside the profiled thread. * = process CPU "
                  "minus main-thread CPU. † ours (gil): the tick's time includes waiting for the GIL.", ""]
    if "accuracy" in tables:
        parts += ["## 2. Accuracy: reported share % (error in percentage points vs ground truth)", "",
                  table_accuracy(records), "",
                  "Share = samples (austin: sampled µs; pyinstrument: seconds) of the main thread with "
                  "the function on the stack / those with the workload's root function on the stack. "
                  "Error = median over runs of (share - ground truth of that run).", ""]
    if "depth" in tables:
        parts += ["## 3. Capture cost vs depth/threads (ours, 1 kHz, wall mode): capture_mean_us", "",
                  table_depth(records, DEPTHS, DTHREADS), ""]
    if "threads" in tables:
        parts += ["## 4. Threads (2 CPU-bound + 2 sleeping threads, 1 ms)", "",
                  table_threads(records, 0.001), "",
                  "Wall mode samples every thread each tick (~1000/s per thread); CPU mode only threads "
                  "that ran since the last tick.", ""]
    return "\n".join(parts)


def write_report(data, opts):
    md = render(data)
    print(md)
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    with open(opts.out, "w") as fh:
        fh.write(md + "\n")
    if opts.docs:
        with open(os.path.join(ROOT, "docs", "bench.md"), "w") as fh:
            fh.write(md.replace("# ox_profile benchmark", "# Benchmark results", 1) +
                     "\nProduced by `make bench` (bench/run.py --docs); see bench/README.md for the "
                     "method.\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (< 2 minutes)")
    ap.add_argument("--only", action="append", choices=TABLES,
                    help="only this table (repeatable): " + ", ".join(TABLES))
    ap.add_argument("--reps", type=int, default=None, help="repetitions per configuration")
    ap.add_argument("--profilers", default=None,
                    help="comma-separated config keys to run (e.g. ours-nogil,pyspy); baseline always runs")
    ap.add_argument("--docs", action="store_true", help="also write docs/bench.md")
    ap.add_argument("--out", default=os.path.join(RESULTS, "latest.md"))
    ap.add_argument("--nice", type=int, default=None, metavar="N",
                    help="run the bench and everything it starts at this niceness (e.g. -5 as root: "
                         "less disturbed by other work on the machine; disturbs that work more)")
    ap.add_argument("--render", metavar="JSON", help="only re-render the tables of a saved run (latest.json)")
    opts = ap.parse_args(argv)
    if opts.render:
        with open(opts.render) as fh:
            data = json.load(fh)
        if opts.out == os.path.join(RESULTS, "latest.md") and \
                os.path.abspath(opts.render) != os.path.join(RESULTS, "latest.json"):
            opts.out = os.path.splitext(opts.render)[0] + ".md"
        write_report(data, opts)
        return 0

    if opts.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, opts.nice)
        except OSError as exc:
            log("cannot set niceness %d: %s" % (opts.nice, exc))
    tables = opts.only or list(TABLES)
    quick = opts.quick
    reps = opts.reps or (1 if quick else 3)
    scale = "0.25" if quick else "1"
    deep_seconds = "0.4" if quick else "1.2"
    depths, dthreads = DEPTHS, DTHREADS
    only_keys = set(opts.profilers.split(",")) if opts.profilers else None

    info = machine_info()
    info["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    log("ox_profile bench: %s, %s cores, %s; reps=%d%s" % (
        info["cpu"], info["cores"], info["date"], reps, " (quick)" if quick else ""))
    env = Env()
    for kind, (ok, what) in env.avail.items():
        log("  %-13s %s" % (kind, ("ok " + what) if ok else "n/a: " + what))

    def wanted(cfg, rep):
        if cfg.max_reps is not None and rep >= cfg.max_reps:
            return False
        return only_keys is None or cfg.key in only_keys or cfg.kind == "none"

    # Build the job list: each repetition runs every configuration once in a
    # shuffled order, with a no-profiler baseline run before, after and every
    # BASELINE_EVERY runs in between; each run is compared with its nearest
    # baselines, so changes of the machine's load over time mostly cancel.
    jobs = []
    rng = random.Random(2024)
    workloads = []
    if "overhead" in tables or "accuracy" in tables:
        workloads.append("cpu")
    if "accuracy" in tables:
        workloads.append("cfunc")
    for rep in range(reps):
        for wl in workloads:
            batch = with_baselines([c for iv in INTERVALS for c in profiler_configs(iv) if wanted(c, rep)], rng)
            jobs += [(c, wl, [scale], rep) for c in batch]
        if "threads" in tables:
            batch = with_baselines([c for c in thread_configs(0.001) if wanted(c, rep)], rng)
            jobs += [(c, "threads", [scale], rep) for c in batch]
    if "depth" in tables:
        for rep in range(1 if quick else 2):
            for d in depths:
                for t in dthreads:
                    for kind in ("ours", "orig"):
                        if kind == "orig" and rep > 0:
                            continue  # the original is slow at depth; once is enough
                        if only_keys is not None and not any(k.startswith(kind) for k in only_keys):
                            continue
                        c = Config("%s-deep" % kind, kind, kind, 0.001,
                                   cid="%s-deep@%d/%d" % (kind, d, t))
                        jobs.append((c, "deep", [str(d), str(t), deep_seconds], rep))

    records = []
    tmpdir = tempfile.mkdtemp(prefix="oxp-bench-")
    start = time.time()
    try:
        for i, (cfg, wl, wargs, rep) in enumerate(jobs):
            t = time.time()
            load = os.getloadavg()[0]
            rec = run_config(env, cfg, wl, wargs, tmpdir)
            rec["rep"] = rep
            rec["seq"] = i
            rec["loadavg_1min"] = load
            records.append(rec)
            if "error" in rec:
                status = "n/a: " + rec["error"][:100]
            else:
                status = "%.3fs" % rec["result"]["elapsed"]
                a = rec.get("analysis")
                if a and a.get("share"):
                    status += " " + " ".join("%s=%.1f%%" % (k, 100 * v) for k, v in a["share"].items())
            log("[%3d/%d %4.0fs] %-8s %-28s %s (%.1fs)" % (
                i + 1, len(jobs), time.time() - start, wl, rec["config"], status, time.time() - t))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    info["loadavg_end"] = os.getloadavg()
    info["bench_seconds"] = round(time.time() - start)
    info["quick"], info["reps"], info["tables"] = quick, reps, tables
    versions = {k: v[1] for k, v in env.avail.items() if v[0]}
    unavailable = {k: v[1] for k, v in env.avail.items() if not v[0]}
    data = {"info": info, "versions": versions, "unavailable": unavailable, "records": records}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.splitext(opts.out)[0] + ".json", "w") as fh:
        json.dump(data, fh, indent=1, default=str)
    write_report(data, opts)
    log("wrote %s" % opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
