"""This process's part in a profile shared by several processes.

A :class:`ProcessShare` publishes the process's profile (and request
timings) into the shared directory every ``publish_interval`` (1 s by
default), once more when the process exits, and follows the shared settings
(:mod:`ox_profile.shared.control`), polling them every ``poll_interval``
(0.2 s).  It works from a daemon thread that sleeps in between; the thread
runs only ox_profile's own code, so the sampler never records it.  After a
fork the child gets its own thread and file.

What is published comes from a :class:`ShareSource` (the Flask blueprint,
the command line): its profiler, its timings, and what to do when the
settings change.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import threading
import time
import weakref
from typing import Any, Dict, Iterator, List, Optional, Protocol

from ox_profile import _engine, _forks
from ox_profile.shared import control as control_mod
from ox_profile.shared.control import Control
from ox_profile.shared.location import SharedDir
from ox_profile.shared.process import ProcessId, command_line, this_process

#: Names of the processes' files: p<pid>-<start>.oxp
PROCESS_FILE_RE = re.compile(r"^p([0-9]{1,10})-([0-9]{1,20})\.oxp$")
#: Temporary files left by a writer that died: .p<pid>-<start>.oxp.<pid>.tmp
TEMP_FILE_RE = re.compile(r"^\.(.+)\.([0-9]{1,10})\.tmp$")

DEFAULT_PUBLISH_INTERVAL = 1.0
DEFAULT_POLL_INTERVAL = 0.2
#: Most of its time a process spends publishing: beyond, it publishes less often.
MAX_PUBLISH_SHARE = 0.02
#: A process's file may be at most this much larger than its memory cap
#: (metadata and request timings).
META_ALLOWANCE = 1 << 20


def process_file(proc: ProcessId) -> str:
    """The name of ``proc``'s file in the shared directory."""
    return "p%d-%d.oxp" % (proc.pid, proc.start)


class ShareSource(Protocol):
    """What a ProcessShare publishes and how it applies the settings."""

    def share_profiler(self) -> Optional[Any]:
        """The profiler whose data is published (None: not created yet)."""

    def share_timings(self) -> Optional[list]:
        """Request timings as RequestTimings.export() gives them, or None."""

    def share_apply(self, settings: Control, reset: bool) -> None:
        """Make this process follow ``settings``; ``reset``: forget its data
        (samples and timings) first."""

    # Optional: share_after_fork_in_child(), called in a forked child before
    # the child's share starts (forget what was copied from the parent).


#: Signals a thread cannot block safely (faults are delivered to it whatever).
_SYNCHRONOUS = {getattr(signal, n) for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT")
                if hasattr(signal, n)}


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block the asynchronous signals in this thread for the block: a thread
    started inside inherits the mask, so the kernel never hands it a signal
    meant for the process.  (A signal a Python handler catches in another
    thread leaves the main thread blocked in a system call: a multiprocessing
    worker waiting on a lock would never see its SIGTERM.)"""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - _SYNCHRONOUS)
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def flatten_stats(stats: Dict[str, Any]) -> Dict[str, Any]:
    """``stats`` as "stats.<key>" metadata (one level of dicts flattened)."""
    out: Dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, (bool, int, float, str)):
                    out["stats.%s.%s" % (key, sub)] = v
        elif isinstance(value, (bool, int, float, str)):
            out["stats.%s" % key] = value
    return out


def unflatten_stats(meta: Dict[str, Any]) -> Dict[str, Any]:
    """The stats dict back from "stats.<key>" metadata."""
    stats: Dict[str, Any] = {}
    for key, value in meta.items():
        if not key.startswith("stats."):
            continue
        parts = key[6:].split(".", 1)
        if len(parts) == 2:
            sub = stats.setdefault(parts[0], {})
            if isinstance(sub, dict):
                sub[parts[1]] = value
        else:
            stats[parts[0]] = value
    return stats


def profiler_state(profiler: Optional[Any]) -> str:
    """running, paused or not started."""
    if profiler is None or not profiler.is_alive:
        return "not started"
    return "paused" if profiler.is_paused else "running"


class ProcessShare:
    """Publishes this process's profile to ``shared`` and follows the
    shared settings (when ``follow`` is true)."""

    def __init__(self, shared: SharedDir, source: ShareSource, *, follow: bool = True,
                 publish_interval: float = DEFAULT_PUBLISH_INTERVAL,
                 poll_interval: float = DEFAULT_POLL_INTERVAL, max_bytes: Optional[int] = None,
                 server: Optional[ProcessId] = None) -> None:
        self.shared = shared
        #: The server this process belongs to (its files name it: files of
        #: servers that are gone are removed when sharing starts).
        self.server = server
        self._source = source
        self.follow = follow
        self.publish_interval = float(publish_interval)
        self.poll_interval = float(poll_interval)
        self._max_bytes = max_bytes
        self._lock = threading.RLock()
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._reset_identity()
        _live_shares.add(self)

    def _reset_identity(self) -> None:
        """Who this process is (again, after a fork)."""
        self.me: ProcessId = this_process()
        self.file = process_file(self.me)
        self.command = command_line()
        self._control_sig: Optional[control_mod.Signature] = None
        #: The settings last applied, and the reset they include.
        self.control: Optional[Control] = None
        self.applied_reset = ""
        self._published_sig: Optional[tuple] = None
        self._last_publish = 0.0
        self.publishes = 0
        self.publish_errors = 0
        self.last_error = ""
        self.final = False
        #: The last publication is under way (in the thread that stopped us).
        self.finishing = False
        #: Called once it is done (a signal that arrived meanwhile).
        self.after_final: Optional[Any] = None
        self._final_state: Optional[str] = None
        #: Seconds until the next publication: publish_interval, or more when
        #: publishing takes over 2% of the time (a database near its cap).
        self.gap = self.publish_interval
        self.last_publish_seconds = 0.0

    # -- thread ------------------------------------------------------------

    def start(self) -> "ProcessShare":
        """Apply the current settings, publish, and start the thread."""
        if self.publishes == 0 and self.server is not None:
            self.remove_files_of_gone_servers()
        self.poll_control()
        self.publish()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="ox_profile-share", daemon=True)
                with _signals_blocked():
                    self._thread.start()
        return self

    def _run(self) -> None:
        # time.sleep (a C function) called from here: while it waits, the
        # thread's innermost Python frame is ox_profile's, so it is not sampled.
        while not self._stop:
            time.sleep(self.poll_interval)
            if self._stop:
                break
            try:
                self.poll_control()
                if time.monotonic() - self._last_publish >= self.gap:
                    self.publish()
            except Exception as exc:  # keep serving; say what went wrong
                self.publish_errors += 1
                self.last_error = "%s: %s" % (type(exc).__name__, exc)

    def stop(self, final: bool = True) -> None:
        """Stop the thread; with ``final``, stop the profiler and publish
        what it has for the last time (at exit)."""
        self._stop = True
        if not final or self.final or self.finishing or self.me.pid != os.getpid():
            return
        self.finishing = True
        try:
            profiler = self._source.share_profiler()
            self._final_state = profiler_state(profiler)  # what it was doing, not "stopped"
            if profiler is not None and profiler.is_alive:
                try:
                    profiler.stop()
                except Exception:
                    pass
            self.final = True
            self.publish(force=True)
        finally:
            self.finishing = False
            then, self.after_final = self.after_final, None
            if then is not None:
                then()

    def close(self) -> None:
        """Stop for good without publishing again (the directory may be gone)."""
        self._stop = True
        self.final = True
        _live_shares.discard(self)

    # -- settings ----------------------------------------------------------

    def poll_control(self) -> Optional[Control]:
        """Apply the shared settings if they changed since last time."""
        if not self.follow:
            return self.control
        sig = control_mod.signature(self.shared)
        if sig is None or sig == self._control_sig:
            return self.control
        try:
            new = control_mod.read(self.shared)
        except (ValueError, OSError) as exc:
            self.last_error = "control file: %s" % (exc,)
            self._control_sig = sig
            return self.control
        self._control_sig = sig
        if new is not None:
            self._apply(new)
        return self.control

    def _apply(self, new: Control) -> None:
        with self._lock:
            first = self.control is None
            reset = bool(new.reset_id) and new.reset_id != self.applied_reset and not first
            if first and new.reset_id:
                # A process that starts after a reset has nothing from before it.
                self.applied_reset = new.reset_id
            self._source.share_apply(new, reset)
            self.control = new
            if reset:
                self.applied_reset = new.reset_id
            self.publish(force=True)

    def change(self, *, paused: Optional[bool] = None, interval: Optional[float] = None,
               reset: bool = False, default_interval: float = 0.001) -> Control:
        """Change the shared settings and apply them here at once (the other
        processes follow within ``poll_interval``)."""
        with self._lock:
            new = control_mod.update(self.shared, paused=paused, interval=interval, reset=reset,
                                     default_interval=default_interval)
            self._control_sig = control_mod.signature(self.shared)
            if reset:
                self.remove_dead_files()
            self._apply(new)
            return new

    # -- publishing --------------------------------------------------------

    def meta(self) -> Dict[str, Any]:
        """The metadata published with the profile."""
        profiler = self._source.share_profiler()
        stats = profiler.stats() if profiler is not None else {}
        meta: Dict[str, Any] = {
            "kind": "process", "pid": self.me.pid, "start": self.me.start, "command": self.command,
            "state": self._final_state or profiler_state(profiler), "written_at": time.time(),
            "final": self.final, "reset_id": self.applied_reset, "publishes": self.publishes,
            "stats.share_interval": self.gap, "stats.share_publish_ms": self.last_publish_seconds * 1e3,
            "server": self.server.key if self.server is not None else "",
        }
        meta.update(flatten_stats(stats))
        return meta

    def _signature(self, meta: Dict[str, Any], timings: Optional[list]) -> tuple:
        return (meta["state"], meta.get("stats.samples"), meta.get("stats.interval"), meta["reset_id"],
                sum(t[1] for t in timings) if timings else 0, self.final)

    def publish(self, force: bool = False) -> bool:
        """Write this process's file (unless nothing changed since the last
        time and not ``force``); whether it was written."""
        with self._lock:
            if self.me.pid != os.getpid():
                return False  # forked and not re-armed yet
            profiler = self._source.share_profiler()
            if profiler is not None:
                profiler.name_threads()
            meta = self.meta()
            timings = self._source.share_timings()
            sig = self._signature(meta, timings)
            now = time.monotonic()
            if not force and sig == self._published_sig and meta["state"] != "running":
                self._last_publish = now
                return False
            database = profiler.database if profiler is not None else None
            cap = int(meta.get("stats.memory_cap") or 0) or (32 << 20)
            limit = self._max_bytes or cap + META_ALLOWANCE
            try:
                _engine.share_publish(self.shared.fd, self.file, database, meta, timings, limit)
            except (OSError, ValueError) as exc:
                self.publish_errors += 1
                self.last_error = "publishing %s: %s" % (self.file, exc)
                self._last_publish = now
                return False
            self.publishes += 1
            self._published_sig = sig
            self._last_publish = time.monotonic()
            self.last_publish_seconds = self._last_publish - now
            self.gap = max(self.publish_interval, self.last_publish_seconds / MAX_PUBLISH_SHARE)
            return True

    # -- housekeeping --------------------------------------------------------

    def other_files(self) -> List[str]:
        """The other processes' files."""
        return sorted(n for n in self.shared.names() if PROCESS_FILE_RE.match(n) and n != self.file)

    def remove_dead_files(self) -> List[str]:
        """Remove the files of processes that are gone, and temporary files
        their writers left; the names removed."""
        from ox_profile.shared.process import is_alive
        removed = []
        for name in self.shared.names():
            match = PROCESS_FILE_RE.match(name)
            if match is not None:
                proc = ProcessId(int(match.group(1)), int(match.group(2)))
                if proc != self.me and not is_alive(proc) and self.shared.remove(name):
                    removed.append(name)
                continue
            match = TEMP_FILE_RE.match(name)
            if match is not None and int(match.group(2)) != os.getpid():
                age = time.time() - (self.shared.mtime(name) or time.time())
                if age > 60 and self.shared.remove(name):
                    removed.append(name)
        return removed

    def remove_files_of_gone_servers(self) -> List[str]:
        """Remove the files of processes that are gone and whose server is
        gone too (a directory given by a setting, used again by a new run of
        the server); the names removed."""
        from ox_profile.shared.process import is_alive
        removed = []
        for name in self.other_files():
            match = PROCESS_FILE_RE.match(name)
            assert match is not None
            if is_alive(ProcessId(int(match.group(1)), int(match.group(2)))):
                continue
            try:
                meta = _engine.share_read(self.shared.fd, name, 1 << 30)[0]
            except (OSError, ValueError):
                continue  # unreadable: listed on the pages as such, removed by a reset
            server = str(meta.get("server") or "")
            key = re.match(r"^([0-9]{1,10})-([0-9]{1,20})$", server)
            if key is None or (self.server is not None and server == self.server.key):
                continue
            if not is_alive(ProcessId(int(key.group(1)), int(key.group(2)))) and self.shared.remove(name):
                removed.append(name)
        return removed

    # -- fork ---------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        self._thread = None
        running = not self._stop
        self._reset_identity()
        hook = getattr(self._source, "share_after_fork_in_child", None)
        if hook is not None:
            hook()
        if running:
            self.start()


# Every share of this process, for the after-fork and exit hooks.
_live_shares: "weakref.WeakSet[ProcessShare]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for share in list(_live_shares):
        try:
            share._after_fork_in_child()
        except Exception:
            pass


def _at_exit() -> None:
    for share in list(_live_shares):
        try:
            share.stop(final=True)
        except Exception:
            pass


_forks.register(_after_fork_in_child)
atexit.register(_at_exit)
