"""What the load benches share: a free port, a process's CPU time, one wrk
run, the machine's load average."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from typing import Iterable, Tuple, Union


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg says them."""
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def cpu_seconds(pids: Union[int, Iterable[int]]) -> float:
    """User + system CPU time of process(es) ``pids`` (all their threads)."""
    total = 0.0
    for pid in ([pids] if isinstance(pids, int) else pids):
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_wrk(url: str, seconds: float, connections: int, threads: int, wrk: str = "wrk") -> Tuple[float, int]:
    """(requests/s, requests) of one wrk run; an error answer under load is an error."""
    out = subprocess.run([wrk, "-t%d" % threads, "-c%d" % connections, "-d%ds" % max(1, round(seconds)),
                          "--timeout", "10s", url],
                         capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"Requests/sec:\s*([0-9.]+)", out.stdout)
    if out.returncode != 0 or not match:
        raise RuntimeError("wrk failed: %s %s" % (out.stdout, out.stderr))
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out.stdout)
    if errors:
        raise RuntimeError("wrk saw %s error responses" % errors.group(1))
    count = re.search(r"(\d+) requests in", out.stdout)
    return float(match.group(1)), int(count.group(1)) if count else 0
