"""Django middleware: labels each request's samples with its resolved view
name and times it into the request-timing table, while the profiler is
unpaused."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import ox_profile
from ox_profile import _forks
from ox_profile.ui.core.control import default_control
from ox_profile.ui.core.timing import NO_ENDPOINT

__all__ = ["OxProfileMiddleware", "view_name", "share_between_processes"]

_perf_counter = time.perf_counter
_ATTR = "_ox_profile_view"


def share_between_processes(control: Any) -> None:
    """Share the profile with the other worker processes of the server, as
    the settings say (once per process): ``OX_PROFILE_SHARED`` (default
    True), ``OX_PROFILE_SHARED_DIR``, ``OX_PROFILE_PUBLISH_INTERVAL`` (see
    :mod:`ox_profile.ui.core.sharing`)."""
    from django.conf import settings

    config = {"OX_PROF_SHARED": getattr(settings, "OX_PROFILE_SHARED", True),
              "OX_PROF_PUBLISH_INTERVAL": getattr(settings, "OX_PROFILE_PUBLISH_INTERVAL", 1.0)}
    directory = getattr(settings, "OX_PROFILE_SHARED_DIR", None)
    if directory:
        config["OX_PROF_SHARED_DIR"] = directory
    control.sharing.setup(config)
    if not config["OX_PROF_SHARED"]:
        control.sharing.error = "sharing between processes is off (OX_PROFILE_SHARED is false)"


def view_name(request: Any, view_func: Any) -> str:
    """The request's view name (``app:view`` with namespaces), else the
    view's URL name, else its dotted function name."""
    match = getattr(request, "resolver_match", None)
    name = getattr(match, "view_name", None) or getattr(match, "url_name", None)
    if not name:
        func = getattr(view_func, "view_class", view_func)
        name = "%s.%s" % (getattr(func, "__module__", "?"), getattr(func, "__qualname__", "?"))
    return str(name)[:200]


class OxProfileMiddleware:
    """Add ``"ox_profile.ui.django.middleware.OxProfileMiddleware"`` to
    ``MIDDLEWARE``.  While the profiler is unpaused, each request is timed
    under its view name (``<no endpoint>`` when no URL matched) and the
    samples of the thread serving it carry that name; paused, a request
    pays two tests (a fork, the switch)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.control = default_control()
        share_between_processes(self.control)

    def __call__(self, request: Any) -> Any:
        _forks.check()  # first: a worker forked in C re-arms even while paused
        control = self.control
        if not control._observe:
            return self.get_response(request)
        setattr(request, _ATTR, None)
        t0 = _perf_counter()
        status = 500
        try:
            response = self.get_response(request)
            status = int(getattr(response, "status_code", 500))
            return response
        finally:
            ox_profile.set_label(None)
            control.timings.record(getattr(request, _ATTR, None) or NO_ENDPOINT, _perf_counter() - t0,
                                   status >= 500)

    def process_view(self, request: Any, view_func: Any, view_args: Any, view_kwargs: Any) -> Optional[Any]:
        """Label the thread's samples with the view, once it is resolved."""
        if hasattr(request, _ATTR):
            name = view_name(request, view_func)
            setattr(request, _ATTR, name)
            ox_profile.set_label(name)
        return None
