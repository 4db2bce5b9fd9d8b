"""What the blueprint's pages cost when the profile database is full.

Starts gunicorn (``-w 1 --threads 4``, gthread) on 127.0.0.1 with a small app
whose worker fills its profiler's database to the cap with
``bench/workloads/fulldb.py`` (5,000 functions, 300 labels, random stacks
5-40 deep) before serving.  Then:

* six concurrent ``/ox_profile/status`` requests, while ``/fast`` is polled:
  the worker's peak memory (``VmHWM``) before and after, and the slowest
  ``/fast`` answer meanwhile;
* one request at a time: size and time of ``/status``, ``/status.json``,
  ``/flame.json`` and every download (median of ``--repeat``).

Prints a table and one ``BENCH_RESULT {json}`` line.

    .venv/bin/python bench/flask_pages.py [--max-memory-mib 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ROUTES = ["/ox_profile/status", "/ox_profile/status.json", "/ox_profile/flame.json",
          "/ox_profile/download/collapsed", "/ox_profile/download/speedscope",
          "/ox_profile/download/pprof", "/ox_profile/download/text", "/ox_profile/download/html"]


def create_app() -> Any:
    """The app gunicorn serves (this runs in the worker): the blueprint open to
    everybody on 127.0.0.1, its database filled to the cap."""
    sys.path.insert(0, os.path.join(HERE, "workloads"))
    import fulldb
    from flask import Flask
    from ox_profile.ui.flask.views import OX_PROF_BP

    app = Flask("flask_pages_bench")
    app.config.update(SECRET_KEY="bench", OX_PROF_AUTHORIZE=lambda: True)
    OX_PROF_BP.launcher_options = {"max_memory": int(os.environ.get("OXB_MAX_MEMORY", 32 << 20))}
    app.register_blueprint(OX_PROF_BP)
    app.add_url_rule("/fast", "fast", lambda: "ok")
    app.add_url_rule("/pid", "pid", lambda: str(os.getpid()))
    database = OX_PROF_BP.launcher.profiler._database
    info = fulldb.fill(database, fulldb.make_functions())
    app.config["OXB_FILL"] = info
    app.add_url_rule("/fill", "fill", lambda: json.dumps(info))
    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fetch(url: str, timeout: float = 300) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _memory(pid: int) -> Dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


class Server:
    """gunicorn serving :func:`create_app` with a database of ``max_memory`` bytes."""

    def __init__(self, max_memory: int) -> None:
        self.port = _free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ, OXB_MAX_MEMORY=str(max_memory),
                   PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "--timeout", "600",
             "-b", "127.0.0.1:%d" % self.port, "flask_pages:create_app()"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while True:
            try:
                self.pid = int(_fetch(self.base + "/pid", timeout=5))
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the bench app did not start: %s" % self.proc.stderr.read().decode())
                time.sleep(0.3)
        self.fill = json.loads(_fetch(self.base + "/fill"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def concurrent_status(server: Server, n: int = 6) -> Dict[str, Any]:
    """``n`` status requests at once while /fast is polled."""
    before = _memory(server.pid)
    stop = threading.Event()
    fast: List[float] = []

    def poll_fast() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            _fetch(server.base + "/fast")
            fast.append(time.perf_counter() - t0)
            time.sleep(0.02)

    sizes: List[int] = []
    errors: List[str] = []

    def one() -> None:
        try:
            sizes.append(len(_fetch(server.base + "/ox_profile/status")))
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(repr(exc))

    poller = threading.Thread(target=poll_fast)
    poller.start()
    t0 = time.perf_counter()
    workers = [threading.Thread(target=one) for _ in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    stop.set()
    poller.join()
    after = _memory(server.pid)
    return {"requests": n, "seconds": round(elapsed, 2), "errors": errors, "sizes": sizes,
            "rss_before": before["VmRSS"], "hwm_before": before["VmHWM"], "hwm_after": after["VmHWM"],
            "peak_added": after["VmHWM"] - max(before["VmHWM"], before["VmRSS"]),
            "fast_max_s": round(max(fast), 3) if fast else None, "fast_polls": len(fast)}


def one_at_a_time(server: Server, repeat: int) -> Dict[str, Dict[str, float]]:
    """Size and median time of each route.  Pages are asked with a different
    max_records each time, so that each is built afresh, not reused."""
    out = {}
    for n, route in enumerate(ROUTES):
        times, size = [], 0
        for i in range(repeat):
            fresh = "" if "/download/" in route else "?max_records=%d" % (100 + 10 * n + i)
            t0 = time.perf_counter()
            size = len(_fetch(server.base + route + fresh))
            times.append(time.perf_counter() - t0)
        out[route] = {"bytes": size, "seconds": round(statistics.median(times), 3)}
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-memory-mib", type=float, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    server = Server(int(args.max_memory_mib * (1 << 20)))
    try:
        conc = concurrent_status(server)
        single = one_at_a_time(server, args.repeat)
    finally:
        server.stop()
    mib = 1 << 20
    print("database: %(memory_bytes)d bytes, %(functions)d functions, %(stacks)d stacks, "
          "%(rows)d rows" % server.fill)
    print("six concurrent /status: %.2f s, worker peak memory %.0f -> %.0f MiB (+%.0f MiB), "
          "slowest /fast meanwhile %.3f s%s" % (
              conc["seconds"], max(conc["hwm_before"], conc["rss_before"]) / mib,
              conc["hwm_after"] / mib, conc["peak_added"] / mib, conc["fast_max_s"] or 0,
              ", errors: %s" % conc["errors"] if conc["errors"] else ""))
    print("%-34s %12s %9s" % ("route", "bytes", "seconds"))
    for route, row in single.items():
        print("%-34s %12d %9.3f" % (route, row["bytes"], row["seconds"]))
    print("BENCH_RESULT " + json.dumps({"fill": server.fill, "concurrent": conc, "single": single}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
