"""Who a process is, whether it still runs, and which server it belongs to.

A process is identified by its pid and its start time (clock ticks after
boot, from ``/proc/<pid>/stat``), so a pid the kernel gives to a new process
is never taken for the old one.  The *server* of a process is the topmost of
its ancestors that run the same program: a parent joins when it runs the
same executable and either has the same command line (uWSGI workers, gunicorn
without setproctitle) or holds a socket this process holds too (the listening
socket a pre-fork master hands down to its workers).  A process whose parent
does not qualify is a server of its own.  Linux only (``/proc``); elsewhere
every process is its own server.
"""

from __future__ import annotations

import dataclasses
import os
from typing import FrozenSet, Optional

#: Longest command line kept for display.
MAX_COMMAND = 300
#: Deepest ancestry looked at.
MAX_ANCESTORS = 32


@dataclasses.dataclass(frozen=True)
class ProcessId:
    """A process: pid and start time (0 when unknown)."""

    pid: int
    start: int

    @property
    def key(self) -> str:
        """``"<pid>-<start>"``: unique among the processes since boot."""
        return "%d-%d" % (self.pid, self.start)


def _stat_fields(pid: int) -> Optional[list]:
    """The fields of ``/proc/<pid>/stat`` after the command name, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold anything, ")" included.
    return data[data.rfind(b")") + 2:].split()


def start_time(pid: int) -> Optional[int]:
    """When ``pid`` started (clock ticks after boot), or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    state = fields[0]
    if state in (b"Z", b"X"):  # a zombie has finished its work
        return None
    return int(fields[19])


def parent_pid(pid: int) -> Optional[int]:
    """The parent of ``pid``, or None."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None and len(fields) > 1 else None


def this_process() -> ProcessId:
    """The calling process."""
    pid = os.getpid()
    return ProcessId(pid, start_time(pid) or 0)


def is_alive(proc: ProcessId) -> bool:
    """Whether ``proc`` still runs (same pid, same start time, not a zombie;
    without /proc, whether the pid exists)."""
    if not os.path.isdir("/proc/self"):
        try:
            os.kill(proc.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    started = start_time(proc.pid)
    return started is not None and (proc.start == 0 or started == proc.start)


def command_line(pid: Optional[int] = None, limit: int = MAX_COMMAND) -> str:
    """The command line of ``pid`` (default: this process), words joined by
    spaces, at most ``limit`` characters."""
    try:
        with open("/proc/%s/cmdline" % ("self" if pid is None else pid), "rb") as fh:
            raw = fh.read(limit * 4 + 4)
    except OSError:
        return ""
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _exe(pid: int) -> Optional[str]:
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def _raw_cmdline(pid: int) -> Optional[bytes]:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return fh.read(1 << 16)
    except OSError:
        return None


def _sockets(pid: int) -> FrozenSet[str]:
    """The sockets (``socket:[inode]``) among ``pid``'s open files."""
    found = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return frozenset()
    for name in names[:4096]:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return frozenset(found)


def server_of(pid: Optional[int] = None) -> ProcessId:
    """The root of the server ``pid`` (default: this process) belongs to
    (see the module's description)."""
    pid = os.getpid() if pid is None else pid
    root = pid
    exe, cmdline = _exe(pid), _raw_cmdline(pid)
    sockets: Optional[FrozenSet[str]] = None
    for _ in range(MAX_ANCESTORS):
        parent = parent_pid(root)
        if parent is None or parent <= 1 or exe is None:
            break
        if _exe(parent) != exe:
            break
        if _raw_cmdline(parent) != cmdline:
            if sockets is None:
                sockets = _sockets(pid)
            if not sockets or not (sockets & _sockets(parent)):
                break
        root = parent
    return ProcessId(root, start_time(root) or 0)
