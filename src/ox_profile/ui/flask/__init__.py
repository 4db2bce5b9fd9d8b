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
import threading
import time
from typing import Any, Optional

from flask import Blueprint, Flask, request

import ox_profile
from ox_profile import _forks
from ox_profile.ui.core.control import ProfilerControl
from ox_profile.ui.core.render import TEMPLATE_DIR
from ox_profile.ui.core.timing import RequestTimings

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


class OxProfBlueprint(Blueprint, ProfilerControl):
    """A Blueprint that owns the profiler launcher and the request timings
    (a :class:`~ox_profile.ui.core.control.ProfilerControl`).

    ``launcher`` (an :class:`ox_profile.core.launchers.SimpleLauncher`) is
    created on first use and starts paused; :meth:`unpause` starts its
    sampler the first time.  ``timings`` holds per-endpoint request
    durations in bounded memory, recorded while the profiler is unpaused
    (always, when ``always_time_requests`` is true).
    """

    def __init__(self, *args: Any, max_endpoints: int = 1000, **kwargs: Any) -> None:
        Blueprint.__init__(self, *args, **kwargs)
        ProfilerControl.__init__(self, max_endpoints=max_endpoints)
        self._state = _RequestState()
        self.before_app_request(self._request_started)

    def register(self, app: Flask, options: Any) -> None:
        """Register as usual, wrap ``app.wsgi_app`` (once per app) to time
        requests, and start sharing with the server's other processes (once
        per process, as the first app's config says: see
        :mod:`ox_profile.ui.core.sharing`)."""
        super().register(app, options)
        observer = app.extensions.get("ox_profile.observer")
        if observer is None or observer.blueprint is not self:
            app.wsgi_app = _RequestObserver(app.wsgi_app, self)  # type: ignore[method-assign]
            app.extensions["ox_profile.observer"] = app.wsgi_app
        self.sharing.setup(app.config)

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

    @staticmethod
    def get_help() -> None:
        """Print where to find help (the original's API)."""
        print("Please see the ox_profile README (docs/flask.md) for more information.")


OX_PROF_BP = OxProfBlueprint(
    "ox_profile", __name__, template_folder=TEMPLATE_DIR, url_prefix="/ox_profile")


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
