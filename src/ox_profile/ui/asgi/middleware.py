"""ASGI middleware: labels each HTTP request's samples with its route and
times it into the request-timing table, while the profiler is unpaused."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Dict, MutableMapping, Optional

import ox_profile
from ox_profile import _forks
from ox_profile.ui.asgi.routes import route_name as starlette_route_name
from ox_profile.ui.core.control import ProfilerControl, default_control
from ox_profile.ui.core.timing import NO_ENDPOINT

__all__ = ["OxProfileMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_perf_counter = time.perf_counter
_fork_check = _forks.check


class OxProfileMiddleware:
    """Wraps an ASGI app (``app.add_middleware(OxProfileMiddleware)`` in
    Starlette and FastAPI).

    While ``control`` (the process's :func:`default_control` unless given)
    is unpaused, each HTTP request is timed, and the samples of the asyncio
    task serving it carry its name: ``route_name(scope)`` when given, else
    the path template of the Starlette/FastAPI route it reaches, else
    ``<no endpoint>`` (a name never comes from the raw path).  Paused, a
    request pays one attribute test.
    """

    def __init__(self, app: ASGIApp, *, control: Optional[ProfilerControl] = None,
                 route_name: Optional[Callable[[Scope], Optional[str]]] = None) -> None:
        self.app = app
        self.control = control if control is not None else default_control()
        self.route_name = route_name

    def _name(self, scope: Scope) -> str:
        if self.route_name is not None:
            try:
                name = self.route_name(scope)
            except Exception:  # noqa: BLE001 - naming must never break a request
                name = None
            if name:
                return str(name)[:200]
        return starlette_route_name(scope) or NO_ENDPOINT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        control = self.control
        if scope["type"] != "http" or not control._observe:
            await self.app(scope, receive, send)
            return
        _fork_check()
        name = self._name(scope)
        status = [500]

        async def send_status(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message.get("status", 500))
            await send(message)

        previous = ox_profile.get_label()
        ox_profile.set_label(name)
        t0 = _perf_counter()
        failed = True
        try:
            await self.app(scope, receive, send_status)
            failed = False
        finally:
            ox_profile.set_label(previous)
            control.timings.record(name, _perf_counter() - t0, failed or status[0] >= 500)
