"""ASGI middleware: labels each HTTP request's samples with its route and
times it into the request-timing table, while the profiler is unpaused."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Dict, MutableMapping, Optional, Tuple

from ox_profile import _engine, _forks
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
#: Request paths whose route name is remembered (past it the memory starts over).
MAX_REMEMBERED = 4096


class OxProfileMiddleware:
    """Wraps an ASGI app (``app.add_middleware(OxProfileMiddleware)`` in
    Starlette and FastAPI).

    While ``control`` (the process's :func:`default_control` unless given)
    is unpaused, each HTTP request is timed, and the samples of the asyncio
    task serving it carry its name: ``route_name(scope)`` when given, else
    the path template of the Starlette/FastAPI route it reaches, else
    ``<no endpoint>`` (a name never comes from the raw path).  Paused, a
    request pays two tests (a fork, the switch).
    """

    def __init__(self, app: ASGIApp, *, control: Optional[ProfilerControl] = None,
                 route_name: Optional[Callable[[Scope], Optional[str]]] = None) -> None:
        self.app = app
        self.control = control if control is not None else default_control()
        self.route_name = route_name
        # (method, root_path, path) -> name: matching the routes costs ~20 µs
        # a request, a dictionary look-up well under one.
        self._remembered: Dict[Tuple[Any, Any, Any], str] = {}
        #: Requests whose samples could not be labelled (the engine's label
        #: table, 4096 threads and tasks, was full); they are timed all the same.
        self.unlabelled = 0

    def _name(self, scope: Scope) -> str:
        if self.route_name is not None:
            try:
                name = self.route_name(scope)
            except Exception:  # noqa: BLE001 - naming must never break a request
                name = None
            if name:
                return str(name)[:200]
            return NO_ENDPOINT
        key = (scope.get("method"), scope.get("root_path"), scope["path"])
        found = self._remembered.get(key)
        if found is None:
            found = starlette_route_name(scope) or NO_ENDPOINT
            if len(self._remembered) >= MAX_REMEMBERED:
                self._remembered.clear()
            self._remembered[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _fork_check()  # first: a worker forked in C re-arms even while paused
        control = self.control
        if scope["type"] != "http" or not control._observe:
            await self.app(scope, receive, send)
            return
        name = self._name(scope)
        status = [500]

        async def send_status(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message.get("status", 500))
            await send(message)

        # ASGI servers run each request in a task of its own, whose context
        # (asyncio's, trio's) keys the label: other requests keep theirs.
        previous = _engine.get_label(True)
        try:
            _engine.set_label(name, True)
        except RuntimeError:  # more labelled tasks than the engine's table holds: unlabelled
            self.unlabelled += 1
        t0 = _perf_counter()
        failed = True
        try:
            await self.app(scope, receive, send_status)
            failed = False
        finally:
            _engine.set_label(previous, True)
            control.timings.record(name, _perf_counter() - t0, failed or status[0] >= 500)
