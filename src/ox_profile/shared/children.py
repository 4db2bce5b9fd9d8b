"""Profiling a program's child processes (``ox-profile run --subprocesses``).

The parent creates a private directory for the run and tells its children
about it through the environment (``OX_PROFILE_CHILD``, JSON: the directory
and the profiler's settings), with ``ox_profile/_autostart`` first on
``PYTHONPATH`` so that every Python child imports its ``sitecustomize`` at
start-up and starts a profiler (:func:`start_in_child`):

* ``multiprocessing`` with ``spawn`` and ``forkserver``, and Python programs
  started with ``subprocess``, start through that ``sitecustomize``;
* ``fork`` children (and the forkserver's) inherit the running profiler,
  which re-arms itself in the child (Profiler.rearm_after_fork).

Every child publishes its profile into the directory every second and when
it ends: at exit, at the end of a ``multiprocessing`` process (which leaves
with ``os._exit``), and on SIGTERM (``Pool.terminate``) when the program has
no handler of its own, after which the child still dies of SIGTERM.  The
parent merges them all with its own at the end (:func:`merged_profile`).
Exit statuses are never changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from ox_profile import _engine
from ox_profile.profile import ProcessInfo, Profile
from ox_profile.shared.agent import PROCESS_FILE_RE, ProcessShare, unflatten_stats
from ox_profile.shared.location import SharedDir, open_private_dir, private_temp_dir, remove_dir
from ox_profile.shared.process import ProcessId, command_line, is_alive

#: The environment variable that tells a child what to do.
ENV = "OX_PROFILE_CHILD"
#: The directory whose sitecustomize starts the children's profilers.
AUTOSTART_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_autostart")
#: Files the children's sitecustomize leaves when it could not profile one.
SKIPPED_PREFIX = "skipped-"
#: Largest child file read.
MAX_FILE_BYTES = 1 << 30
#: How long the parent waits, at the end, for children still ending.
SETTLE_SECONDS = 0.5


class _ProfilerSource:
    """A ShareSource publishing one profiler (no timings, no settings)."""

    def __init__(self, profiler: Any) -> None:
        self.profiler = profiler

    def share_profiler(self) -> Any:
        return self.profiler

    def share_timings(self) -> Optional[list]:
        return None

    def share_apply(self, settings: Any, reset: bool) -> None:
        pass


@dataclasses.dataclass
class ChildRun:
    """The parent's side: the run's directory and the environment it set."""

    shared: SharedDir
    share: ProcessShare
    saved_env: Dict[str, Optional[str]]

    def close(self) -> None:
        """Put the environment back and remove the directory."""
        self.share.close()
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        remove_dir(self.shared)


def prepare(profiler: Any, settings: Dict[str, Any]) -> ChildRun:
    """Make the program's children profile themselves into a new private
    directory, with ``settings`` (Profiler keyword arguments).  ``profiler``
    is the parent's: fork children re-arm it and publish its data."""
    shared = private_temp_dir("ox-profile-run-")
    saved = {ENV: os.environ.get(ENV), "PYTHONPATH": os.environ.get("PYTHONPATH")}
    os.environ[ENV] = json.dumps(dict(settings, dir=shared.path))
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = AUTOSTART_DIR + (os.pathsep + path if path else "")
    profiler.rearm_after_fork = True
    # Not started here: the parent's data is merged live at the end.  A
    # forked child's copy starts (ProcessShare re-arms after a fork).
    share = ProcessShare(shared, _ProfilerSource(profiler), follow=False)
    _install_child_hooks(share, forked_only=True)
    return ChildRun(shared, share, saved)


# -- in the children -----------------------------------------------------------


def start_in_child() -> Optional[ProcessShare]:
    """Profile this process (a child started with OX_PROFILE_CHILD): start a
    profiler and publish it into the run's directory."""
    try:
        config = json.loads(os.environ[ENV])
        directory = str(config.pop("dir"))
        from ox_profile.profiler import Profiler
        kwargs = {k: config[k] for k in ("interval", "mode", "backend", "max_memory") if config.get(k) is not None}
        shared = SharedDir(directory, open_private_dir(directory, create=False), None)
        profiler = Profiler(**kwargs)
        profiler.start()
        share = ProcessShare(shared, _ProfilerSource(profiler), follow=False)
        share.start()
    except Exception as exc:  # never stop the child
        try:
            print("ox_profile: this child process is not profiled: %s" % (exc,), file=sys.stderr)
        except Exception:
            pass
        return None
    _install_child_hooks(share, forked_only=False)
    _final_hooks(share)
    return share


def _install_child_hooks(share: ProcessShare, forked_only: bool) -> None:
    """In every forked child of this process, end the child's share cleanly."""
    def after_fork() -> None:
        _final_hooks(share)
    os.register_at_fork(after_in_child=after_fork)


def _final_hooks(share: ProcessShare) -> None:
    """Publish for the last time however this process ends: a multiprocessing
    process ends with os._exit (its finalizers run first), Pool.terminate
    sends SIGTERM."""
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        # multiprocessing clears its finalizers in a new process, then runs
        # the after-fork callbacks: register the finalizer from one.
        mp_util.register_after_fork(share, _register_finalizer)
        _register_finalizer(share)
    _catch_sigterm(share)


def _register_finalizer(share: ProcessShare) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(share, share.stop, kwargs={"final": True}, exitpriority=-100)


def _catch_sigterm(share: ProcessShare) -> None:
    """On SIGTERM (when nothing else handles it): publish, then die of it."""
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def die() -> None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        def terminated(signum: int, frame: Any) -> None:
            if share.finishing:
                # It was ending anyway and is publishing its last data (this
                # handler interrupted that): let it finish, then die.
                share.after_final = die
                return
            try:
                share.stop(final=True)
            finally:
                die()

        signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread
        pass


# -- the parent, at the end ------------------------------------------------------


def _child_files(shared: SharedDir) -> List[str]:
    return sorted(n for n in shared.names() if PROCESS_FILE_RE.match(n))


def _settle(shared: SharedDir, timeout: float) -> None:
    """Wait (up to ``timeout``) until every child that published is gone or
    has published its last data."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = []
        for name in _child_files(shared):
            match = PROCESS_FILE_RE.match(name)
            assert match is not None
            proc = ProcessId(int(match.group(1)), int(match.group(2)))
            if is_alive(proc):
                pending.append(name)
        if not pending:
            return
        time.sleep(0.05)


def merged_profile(run: ChildRun, own: Profile, settle: float = SETTLE_SECONDS) -> Tuple[Profile, List[str]]:
    """The parent's profile ``own`` merged with every child's; and one line
    per child that could not be profiled or read."""
    _settle(run.shared, settle)
    names = _child_files(run.shared)
    me = os.getpid()
    names = [n for n in names if not n.startswith("p%d-" % me)]
    snapshot, merged, skipped = _engine.share_merge(run.shared.fd, names, (own._snap, me), MAX_FILE_BYTES,
                                                    None, True)
    processes = [ProcessInfo(0, me, run.share.me.start, command_line(), "exited", int(own._snap.total_hits),
                             dict(own.stats), time.time(), current=True)]
    for name, meta, _timings, total in merged:
        match = PROCESS_FILE_RE.match(name)
        start = int(match.group(2)) if match else 0
        if is_alive(ProcessId(int(meta.get("pid") or 0), start)):
            state = "running"  # still running: what it published last
        else:
            state = "exited" if meta.get("final") else "lost"
        processes.append(ProcessInfo(len(processes), int(meta.get("pid") or 0), start,
                                     str(meta.get("command") or ""), state, int(total),
                                     unflatten_stats(meta), float(meta.get("written_at") or 0.0)))
    from ox_profile.shared.merge import _merge_stats
    stats = _merge_stats(dict(own.stats), [(p.stats, False) for p in processes])
    notes = ["could not read %s: %s" % (name, why) for name, why in skipped]
    for name in sorted(run.shared.names()):
        if name.startswith(SKIPPED_PREFIX):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=run.shared.fd)
                with os.fdopen(fd, encoding="utf-8", errors="replace") as fh:
                    notes.append("a child process was not profiled: %s" % fh.read(500).strip())
            except OSError:
                pass
    return Profile(snapshot, stats, processes=processes, path_roots=own.path_roots), notes
