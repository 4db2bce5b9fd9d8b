"""The profiler behind a web integration: its launcher, request timings and
controls (pause, unpause, reset, interval), the same for every framework.

A :class:`ProfilerControl` starts paused: no sampler thread runs until
:meth:`~ProfilerControl.unpause`, and a request meanwhile pays one test of
:attr:`~ProfilerControl.observing`.  While unpaused (or when
``always_time_requests`` is set) the integrations time each request into
:attr:`~ProfilerControl.timings` and label its samples with its endpoint.
When shared (:mod:`ox_profile.ui.core.sharing`), the controls reach every
process of a pre-fork server and :meth:`~ProfilerControl.merged` shows them
all.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, List, Optional

from ox_profile import _forks
from ox_profile.ui.core.pagedata import BuildGate
from ox_profile.ui.core.sharing import ControlSharing
from ox_profile.ui.core.timing import EndpointSummary, RequestTimings

__all__ = ["ProfilerControl", "default_control"]


class ProfilerControl:
    """The (paused until unpaused) profiler of one web integration.

    ``launcher`` (an :class:`ox_profile.core.launchers.SimpleLauncher`) is
    created on first use; ``timings`` holds per-endpoint request durations in
    bounded memory; ``pages`` and ``downloads`` build the pages one at a time.
    """

    def __init__(self, max_endpoints: int = 1000) -> None:
        self.timings = RequestTimings(max_endpoints=max_endpoints)
        self._launcher: Any = None
        self._state_lock = threading.Lock()
        self._always_time = False
        self._observe = False  # read on every request: time and label it?
        #: How many times the samples were reset (pages built before are stale).
        self.generation = 0
        #: Keyword arguments for the SimpleLauncher, used when it is created
        #: (e.g. ``{"mode": "cpu"}`` to sample only threads that ran).
        self.launcher_options: dict = {}
        #: Sharing with the server's other processes (off until ``sharing.setup``).
        self.sharing = ControlSharing(self)
        #: Page builds: one at a time, the last few kept (see pagedata).
        self.pages = BuildGate()
        #: Downloads: one at a time, never cut, never kept.
        self.downloads = BuildGate(entries=0)
        _controls.add(self)

    @property
    def observing(self) -> bool:
        """Whether requests are timed and labelled now (unpaused, or always)."""
        return self._observe

    @property
    def always_time_requests(self) -> bool:
        """Time requests (and label samples) while paused too (default False)."""
        return self._always_time

    @always_time_requests.setter
    def always_time_requests(self, value: bool) -> None:
        self._always_time = bool(value)
        self._update_observe()

    def _update_observe(self) -> None:
        self._observe = self._always_time or not self.is_paused()

    # -- profiler control ----------------------------------------------------

    @property
    def launcher(self) -> Any:
        """The (paused until unpaused) SimpleLauncher, created on first use."""
        if self._launcher is None:
            with self._state_lock:
                self._launcher_unlocked()
        return self._launcher

    def _launcher_unlocked(self) -> Any:
        """The launcher, created if need be (caller holds ``_state_lock``)."""
        if self._launcher is None:
            from ox_profile.core.launchers import SimpleLauncher
            self._launcher = SimpleLauncher(**self.launcher_options)
        return self._launcher

    @property
    def started(self) -> bool:
        """Whether the sampler thread runs (paused or not)."""
        return self._launcher is not None and self._launcher.is_alive()

    def is_paused(self) -> bool:
        """True unless the sampler is started and sampling."""
        return self._launcher is None or self._launcher.is_paused()

    def unpause(self) -> List[str]:
        """Start the sampler on first use, then unpause it (in every process
        of the server when shared); returns what was done."""
        share = self.sharing.share
        if share is not None:
            was_started = self.started
            share.change(paused=False, default_interval=self._interval())
            done = ["Started thread for first time"] if self.started and not was_started else []
            return done + ["unpaused"]
        done = []
        with self._state_lock:
            launcher = self._launcher_unlocked()
            if not launcher.is_alive():
                launcher.start()
                done.append("Started thread for first time")
            launcher.unpause()
            self._update_observe()
        done.append("unpaused")
        return done

    def pause(self) -> None:
        """Stop sampling (the sampler keeps its data; every process of the
        server when shared)."""
        share = self.sharing.share
        if share is not None:
            share.change(paused=True, default_interval=self._interval())
            return
        with self._state_lock:
            if self._launcher is not None:
                self._launcher.pause()
            self._update_observe()

    def reset(self) -> None:
        """Forget all samples and request timings (sampling state unchanged;
        every process of the server when shared)."""
        share = self.sharing.share
        if share is not None:
            share.change(reset=True, default_interval=self._interval())
            return
        self._forget()

    def _forget(self) -> None:
        self.timings.clear()
        self.generation += 1
        if self._launcher is not None:
            self._launcher.profiler.clear()

    def set_interval(self, seconds: float) -> None:
        """Set the sampling interval in seconds (every process of the server
        when shared)."""
        share = self.sharing.share
        if share is not None:
            share.change(interval=seconds, default_interval=self._interval())
            return
        self.launcher.set_interval(seconds)

    def _interval(self) -> float:
        if self._launcher is not None:
            return float(self._launcher.interval)
        return float(self.launcher_options.get("interval", 0.001))

    def _apply_settings(self, settings: Any, reset: bool) -> None:
        """Follow the server's shared settings (called by the share)."""
        with self._state_lock:
            if reset:
                self._forget()
            launcher = self._launcher
            if launcher is None and not settings.paused:
                launcher = self._launcher_unlocked()
            if launcher is None:
                if settings.interval != self._interval():
                    self.launcher_options["interval"] = settings.interval
            else:
                if settings.interval != float(launcher.interval):
                    launcher.set_interval(settings.interval)
                if settings.paused:
                    launcher.pause()
                else:
                    if not launcher.is_alive():
                        launcher.start()
                    launcher.unpause()
            self._update_observe()

    def _after_fork_in_child(self) -> None:
        """In a forked worker: its own timings, fresh locks (its profiler is
        re-armed by the profiler's own fork hook)."""
        self._state_lock = threading.Lock()
        # A new table: the parent's lock may have been held (by its share
        # thread publishing) when it forked.
        self.timings = RequestTimings(max_endpoints=self.timings.max_endpoints)
        self.pages = BuildGate()
        self.downloads = BuildGate(entries=0)
        self.generation += 1

    def merged(self) -> Any:
        """Every process's profile and timings merged
        (:class:`ox_profile.shared.MergedView`), or None when not shared."""
        return self.sharing.view()

    def request_summaries(self, process: Optional[int] = None) -> List[EndpointSummary]:
        """Per-endpoint timing summaries, slowest total first: of every
        process of the server when shared (only ``process``, a pid, when
        given), else of this process."""
        view = self.merged()
        if view is None:
            return self.timings.summaries()
        merged = RequestTimings(max_endpoints=self.timings.max_endpoints)
        for info, entries in zip(view.profile.processes, view.timings):
            if process is None or info.pid == process:
                merged.add(entries)
        return merged.summaries()


# Every control of this process, for the after-fork hook.
_controls: "weakref.WeakSet[ProfilerControl]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for control in list(_controls):
        if control.sharing.share is None:  # a share calls it itself, before publishing
            control._after_fork_in_child()


_forks.register(_after_fork_in_child)

_default: Optional[ProfilerControl] = None
_default_lock = threading.Lock()


def default_control() -> ProfilerControl:
    """The process's control for the Django and ASGI integrations (created on
    first use; the Flask blueprint is its own)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ProfilerControl()
    return _default
