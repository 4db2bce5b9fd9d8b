"""Flask blueprint for ox_profile: profile a running web app from its own pages.

The original way, still supported word for word::

    from ox_profile.ui.flask.views import OX_PROF_BP
    app.register_blueprint(OX_PROF_BP)
    app.config['OX_PROF_USERS'] = {'alice', 'bob'}

or, for application factories::

    from ox_profile.ui.flask import OxProfile
    ox = OxProfile()
    ...
    ox.init_app(app)

The pages live under ``/ox_profile`` (see :mod:`ox_profile.ui.flask.views`).
The profiler starts paused: no sampler thread runs until a permitted user
unpauses it, and meanwhile a request pays one flag test in a WSGI wrapper and
one in a before-request hook (about a microsecond).  While unpaused, each
request is timed per endpoint and the samples of the thread serving it carry
the endpoint's name, so profiles can be narrowed to one endpoint.  Set
``always_time_requests`` to time requests while paused too.
"""

from __future__ import annotations

import collections
import datetime
import os
import threading
import time
import weakref
from typing import Any, List, Optional

from flask import Blueprint, Flask, request

import ox_profile
from ox_profile import _forks
from ox_profile.ui.flask.sharing import BlueprintSharing
from ox_profile.ui.flask.timing import EndpointSummary, RequestTimings

__all__ = ["OX_PROF_BP", "OxProfBlueprint", "OxProfile", "ReqRecord"]

#: The original's record of one request (kept for code that imported it).
ReqRecord = collections.namedtuple("ReqRecord", ["start_time", "end_time"])

_perf_counter = time.perf_counter
_fork_check = _forks.check
_set_label = ox_profile.set_label

try:
    # Reading the request through its context variable skips flask.request's
    # proxy, about 1 µs of the per-request cost (Flask >= 2.2).
    from flask.globals import _cv_request

    def _current_endpoint() -> Optional[str]:
        ctx = _cv_request.get(None)
        return ctx.request.endpoint if ctx is not None else None
except ImportError:  # pragma: no cover - other Flask versions
    def _current_endpoint() -> Optional[str]:
        return request.endpoint


class _RequestState(threading.local):
    """What the request hooks know about the request this thread serves."""

    observed = False        # this request is timed and labelled
    endpoint: Optional[str] = None
    status = "500"          # the WSGI status line, once the app gave it


class _RequestObserver:
    """WSGI wrapper around a Flask app: times each request and clears the
    thread's label after it, while the blueprint observes requests.  The
    endpoint is filled in by the blueprint's before-request hook."""

    __slots__ = ("wsgi_app", "blueprint")

    def __init__(self, wsgi_app: Any, blueprint: "OxProfBlueprint") -> None:
        self.wsgi_app = wsgi_app
        self.blueprint = blueprint

    def __call__(self, environ: Any, start_response: Any) -> Any:
        _fork_check()
        bp = self.blueprint
        if not bp._observe:
            return self.wsgi_app(environ, start_response)
        state = bp._state
        state.observed = True
        state.endpoint = None
        state.status = "500"

        def capture_status(status: str, headers: Any, exc_info: Any = None) -> Any:
            state.status = status
            return start_response(status, headers, exc_info)

        t0 = _perf_counter()
        try:
            return self.wsgi_app(environ, capture_status)
        except BaseException:
            state.status = "500"
            raise
        finally:
            state.observed = False
            _set_label(None)
            bp.timings.record(state.endpoint, _perf_counter() - t0, state.status[:1] >= "5")


class OxProfBlueprint(Blueprint):
    """A Blueprint that owns the profiler launcher and the request timings.

    ``launcher`` (an :class:`ox_profile.core.launchers.SimpleLauncher`) is
    created on first use and starts paused; :meth:`unpause` starts its
    sampler the first time.  ``timings`` holds per-endpoint request
    durations in bounded memory, recorded while the profiler is unpaused
    (always, when ``always_time_requests`` is true).
    """

    def __init__(self, *args: Any, max_endpoints: int = 1000, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timings = RequestTimings(max_endpoints=max_endpoints)
        self._launcher: Any = None
        self._state_lock = threading.Lock()
        self._state = _RequestState()
        self._always_time = False
        self._observe = False  # read on every request: time and label it?
        #: How many times the samples were reset (pages built before are stale).
        self.generation = 0
        #: Keyword arguments for the SimpleLauncher, used when it is created
        #: (e.g. ``{"mode": "cpu"}`` to sample only threads that ran).
        self.launcher_options: dict = {}
        #: Sharing with the server's other processes (set up at registration).
        self.sharing = BlueprintSharing(self)
        self.before_app_request(self._request_started)
        _blueprints.add(self)

    def register(self, app: Flask, options: Any) -> None:
        """Register as usual, wrap ``app.wsgi_app`` (once per app) to time
        requests, and start sharing with the server's other processes (once
        per process, as the first app's config says: see
        :mod:`ox_profile.ui.flask.sharing`)."""
        super().register(app, options)
        observer = app.extensions.get("ox_profile.observer")
        if observer is None or observer.blueprint is not self:
            app.wsgi_app = _RequestObserver(app.wsgi_app, self)  # type: ignore[method-assign]
            app.extensions["ox_profile.observer"] = app.wsgi_app
        self.sharing.setup(app.config)

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
        self.generation += 1

    def merged(self) -> Any:
        """Every process's profile and timings merged
        (:class:`ox_profile.shared.MergedView`), or None when not shared."""
        return self.sharing.view()

    # -- request hooks -------------------------------------------------------

    # -- request hook ------------------------------------------------------

    def _request_started(self) -> None:
        """Label this thread's samples with the endpoint (observed requests only)."""
        state = self._state
        if state.observed:
            endpoint = state.endpoint = _current_endpoint()
            _set_label(endpoint)

    # -- compatibility with the original blueprint ---------------------------

    def record_req(self, username: Any, endpoint: Optional[str],
                   stime: datetime.datetime, etime: datetime.datetime) -> None:
        """Record one request of ``endpoint`` from ``stime`` to ``etime``
        (the original's API; ``username`` is no longer kept)."""
        self.timings.record(endpoint, max(0.0, (etime - stime).total_seconds()))

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

    @staticmethod
    def get_help() -> None:
        """Print where to find help (the original's API)."""
        print("Please see the ox_profile README (docs/flask.md) for more information.")


# Every blueprint of this process, for the after-fork hook.
_blueprints: "weakref.WeakSet[OxProfBlueprint]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for bp in list(_blueprints):
        if bp.sharing.share is None:  # a share calls it itself, before publishing
            bp._after_fork_in_child()


_forks.register(_after_fork_in_child)


OX_PROF_BP = OxProfBlueprint(
    "ox_profile", __name__, template_folder="templates", url_prefix="/ox_profile")


class OxProfile:
    """Flask extension form: ``OxProfile(app)`` or ``OxProfile().init_app(app)``.

    ``users`` and ``authorize`` are defaults for ``OX_PROF_USERS`` and
    ``OX_PROF_AUTHORIZE`` (the app's config wins when it already has them);
    ``always_time_requests`` sets the blueprint's attribute of that name.
    """

    def __init__(self, app: Optional[Flask] = None, *, users: Optional[Any] = None,
                 authorize: Optional[Any] = None, always_time_requests: Optional[bool] = None) -> None:
        self.blueprint = OX_PROF_BP
        self.users = users
        self.authorize = authorize
        if always_time_requests is not None:
            self.blueprint.always_time_requests = always_time_requests
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the blueprint on ``app`` (once) and apply the defaults."""
        if self.users is not None:
            app.config.setdefault("OX_PROF_USERS", self.users)
        if self.authorize is not None:
            app.config.setdefault("OX_PROF_AUTHORIZE", self.authorize)
        if self.blueprint.name not in app.blueprints:
            app.register_blueprint(self.blueprint)
        app.extensions["ox_profile"] = self

    @property
    def launcher(self) -> Any:
        """The profiler launcher shared by every app in this process."""
        return self.blueprint.launcher

    @property
    def timings(self) -> RequestTimings:
        """Per-endpoint request timings."""
        return self.blueprint.timings


# The routes are attached to OX_PROF_BP by importing the views module.
from ox_profile.ui.flask import views as _views  # noqa: E402,F401
