"""The modern API: ``Profiler`` as a context manager, decorator, or start/stop."""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, Optional, Sequence, TypeVar

from ox_profile import _engine, _forks, _validate
from ox_profile.caveats import sampling_caveat
from ox_profile.profile import Profile

F = TypeVar("F", bound=Callable[..., Any])

BACKEND_ENV = _validate.BACKEND_ENV


def _choose_backend(requested: Optional[str]) -> "tuple[str, Optional[str]]":
    """The backend to build with, and a note when the environment's choice
    could not be honoured."""
    if requested not in (None, "auto"):
        return requested, None
    env = os.environ.get(BACKEND_ENV, "").strip().lower()  # checked by _validate.environment
    if env in ("", "auto"):
        return "auto", None
    if env == "nogil" and not _engine.nogil_available()[0]:
        return "gil", "%s=nogil is not available here (%s): using gil" % (BACKEND_ENV, _engine.nogil_available()[1])
    return env, None


class Profiler:
    """A statistical profiler: a native thread samples every Python thread.

    >>> import ox_profile
    >>> with ox_profile.Profiler(interval=0.001) as prof:
    ...     sum(i * i for i in range(100000))  # doctest: +SKIP
    >>> print(prof.snapshot().render("text"))  # doctest: +SKIP

    ``interval`` is in seconds (50 µs to 10 s); ``mode`` is ``"wall"`` (every
    thread, every tick) or ``"cpu"`` (only threads that used CPU since the last
    tick); ``backend`` is ``"nogil"`` (read stacks without the GIL: CPython
    3.11), ``"gil"`` (portable) or None/``"auto"`` (the best available; the
    ``OX_PROFILE_BACKEND`` environment variable can choose); ``max_memory``
    caps the database in bytes (default 32 MiB).  A value of
    ``OX_PROFILE_BACKEND`` or ``OX_PROFILE_READER`` that is not one of theirs
    raises :class:`ox_profile._validate.BadEnvironment` (a ``ValueError``).
    """

    #: Whether a process forked while this profiler runs starts its own
    #: sampler in the child, in the same state (paused or not), with an empty
    #: profile (the parent keeps its data).  False: the child's profiler is
    #: stopped and keeps a copy of the parent's data.
    rearm_after_fork: bool = True

    def __init__(self, interval: float = 0.001, mode: str = "wall", backend: Optional[str] = None,
                 max_memory: Optional[int] = None, *, database: Optional["_engine.Database"] = None) -> None:
        _validate.environment()
        self._interval = _validate.interval(interval)
        self.mode = _validate.mode(mode)
        chosen, self._backend_note = _choose_backend(_validate.backend(backend))
        self._database = database if database is not None else _engine.Database(max_memory)
        self._sampler = _engine.Sampler(self._database, self._interval, self.mode, chosen)
        self._lock = threading.Lock()
        install_thread_name_hook()
        self._started = False
        _live_profilers.add(self)

    # -- control -------------------------------------------------------------

    def start(self) -> "Profiler":
        """Start sampling (a second start while running is an error)."""
        return self._start(paused=False)

    def start_paused(self) -> "Profiler":
        """Start the sampler thread without taking samples until resume()."""
        return self._start(paused=True)

    def _start(self, paused: bool) -> "Profiler":
        with self._lock:
            if self._sampler.is_alive():
                raise RuntimeError("this profiler is already running")
            self._sampler.start(paused=paused)
        return self

    def stop(self) -> None:
        """Stop sampling and end the sampler thread; the data stays."""
        self._sampler.stop()

    def pause(self) -> None:
        """Stop taking samples; the thread stays, ready to resume()."""
        self._sampler.pause()

    def resume(self) -> None:
        """Take samples again after pause()."""
        if not self._sampler.is_alive():
            raise RuntimeError("the profiler is not running: call start() first")
        self._sampler.resume()

    @property
    def is_running(self) -> bool:
        """Whether the sampler thread is alive and not paused."""
        return self._sampler.is_alive() and not self._sampler.is_paused()

    @property
    def is_alive(self) -> bool:
        """Whether the sampler thread exists (paused or not)."""
        return self._sampler.is_alive()

    @property
    def is_paused(self) -> bool:
        """Whether sampling is paused (also true before start)."""
        return self._sampler.is_paused()

    @property
    def interval(self) -> float:
        """The requested interval between samples, in seconds."""
        return self._interval

    def set_interval(self, interval: float) -> None:
        """Change the interval (seconds, 50 µs to 10 s) while running or not."""
        seconds = _validate.interval(interval)
        self._sampler.set_interval(seconds)
        self._interval = seconds

    def clear(self) -> None:
        """Forget the samples collected so far, and the statistics."""
        self._database.clear()
        self._sampler.reset_stats()

    def _after_fork_in_child(self) -> None:
        """In a forked child: start a sampler if this profiler's ran in the
        parent, paused as it was there, on an empty profile."""
        paused = self._sampler._take_fork_state()
        # A lock held by another thread of the parent stays held here.
        self._lock = threading.Lock()
        if paused is None or not self.rearm_after_fork:
            return
        self._database.clear()
        self._sampler.reset_stats()
        self._sampler.start(paused=paused)

    # -- results -------------------------------------------------------------

    @property
    def database(self) -> "_engine.Database":
        """The engine database this profiler records into (for publishing it)."""
        return self._database

    def name_threads(self) -> None:
        """Give the recorded threads their names (done by :meth:`snapshot`)."""
        name_threads(self._database)

    def stats(self) -> Dict[str, Any]:
        """Sampler statistics: rate, capture cost, drops, memory, backend..."""
        stats = self._sampler.stats()
        stats.update(self._database.info())
        if self._backend_note:
            stats["backend_note"] = self._backend_note
        caveat = sampling_caveat(stats)
        if caveat:
            stats["warning"] = caveat
        return stats

    def thread_samples(self) -> Dict[int, int]:
        """Samples recorded so far per thread ident, without taking a snapshot
        (cheap enough for a live display)."""
        return self._database.thread_hits()

    def snapshot(self, path_roots: Optional[Sequence[str]] = None) -> Profile:
        """A :class:`~ox_profile.Profile` of everything collected so far
        (``path_roots``: see :class:`~ox_profile.Profile`)."""
        name_threads(self._database)
        snapshot = self._database.snapshot()
        stats = self.stats()  # after the copy: the statistics cover every sample in it
        if not stats.get("started_at"):
            stats["started_at"] = time.time()
        return Profile(snapshot, stats, path_roots=path_roots)

    # -- sugar ---------------------------------------------------------------

    def __enter__(self) -> "Profiler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __call__(self, func: F) -> F:
        """As a decorator: profile every call of ``func``."""
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._sampler.is_alive():
                return func(*args, **kwargs)
            self.start()
            try:
                return func(*args, **kwargs)
            finally:
                self.stop()
        wrapper.profiler = self  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return "<Profiler interval=%g mode=%s %s>" % (
            self._interval, self.mode, "running" if self.is_running else "stopped")


# Every Profiler alive in this process, for the after-fork hook.
_live_profilers: "weakref.WeakSet[Profiler]" = weakref.WeakSet()


def _rearm_after_fork() -> None:
    """After a fork, in the child: re-arm every profiler that was running."""
    current = threading.current_thread()
    real = threading.get_native_id()
    if current.native_id is not None and current.native_id != real:
        # Forked in C without Python's own after-fork cleanup (uWSGI): this
        # thread's state still names the parent's thread.
        _engine._alias_native_id(current.native_id, real)
        current._set_native_id()  # type: ignore[attr-defined]
    for profiler in list(_live_profilers):
        try:
            profiler._after_fork_in_child()
        except Exception as exc:  # never let the profiler break a fork
            print("ox_profile: could not restart the profiler after fork: %s" % (exc,), file=sys.stderr)


_forks.register(_rearm_after_fork)


# Names of threads seen starting since the first profiler started, so that
# threads which ended before a snapshot keep their names.  Bounded.
_thread_names: Dict[int, str] = {}
_MAX_REMEMBERED = 10000
_hook_installed = False
_hook_lock = threading.Lock()


def _remember(ident: Optional[int], name: str) -> None:
    if ident is None:
        return
    if len(_thread_names) >= _MAX_REMEMBERED:
        _thread_names.pop(next(iter(_thread_names)), None)
    _thread_names[ident] = name


def install_thread_name_hook() -> None:
    """Note the name of every thread ``threading`` starts from now on.

    Uses ``threading.setprofile``: each new thread runs the hook once, on
    its first call, and the hook then puts back the previous profile
    function (chaining to it), so no per-call cost remains."""
    global _hook_installed
    with _hook_lock:
        if _hook_installed:
            return
        previous = threading.getprofile()

        def note_thread_name(frame: Any, event: str, arg: Any) -> Any:
            current = threading.current_thread()
            _remember(current.ident, current.name)
            sys.setprofile(previous)
            if previous is not None:
                return previous(frame, event, arg)
            return None

        threading.setprofile(note_thread_name)
        _hook_installed = True


def name_threads(database: "_engine.Database") -> None:
    """Give the database the names of the threads seen so far."""
    names = dict(_thread_names)
    names.update((t.ident, t.name) for t in threading.enumerate() if t.ident is not None)
    database.set_thread_names(names)
