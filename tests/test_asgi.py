"""The ASGI integration with real Starlette/FastAPI apps: route names (never
raw paths), request timing, labels that follow each request's task on one
event loop, and the mounted app's access and CSRF rules."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any, Dict, List, Optional

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from conftest import spin
from ox_profile.ui.asgi import OxProfileApp, OxProfileMiddleware, route_name
from ox_profile.ui.asgi.app import CSRF_COOKIE
from ox_profile.ui.core.control import ProfilerControl
from ox_profile.ui.core.timing import NO_ENDPOINT

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


# -- route names ---------------------------------------------------------------------


def _names(app: Any, paths: List[str], method: str = "GET") -> List[Any]:
    seen = []
    for path in paths:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "app": app,
                 "headers": [], "query_string": b""}
        seen.append(route_name(scope))
    return seen


def test_route_names_are_templates_never_raw_paths() -> None:
    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/orders/{order_id:int}", ok)])
    app = Starlette(routes=[
        Route("/users/{user_id}", ok),
        Route("/only-post", ok, methods=["POST"]),
        Mount("/api", routes=[Route("/things/{name}", ok)]),
        Mount("/shop", app=inner),
        Mount("/ox_profile", app=OxProfileApp(authorize=lambda scope: True)),
    ])
    assert _names(app, ["/users/1", "/users/alice", "/api/things/x", "/shop/orders/7", "/ox_profile/status",
                        "/only-post", "/nowhere/123"]) == [
        "/users/{user_id}", "/users/{user_id}", "/api/things/{name}", "/shop/orders/{order_id:int}",
        "/ox_profile", "/only-post", None]

    fast = FastAPI()

    @fast.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {}

    assert _names(fast, ["/items/1", "/items/2"]) == ["/items/{item_id}"] * 2
    assert _names(object(), ["/x"]) == [None]  # not a Starlette app: no name from the path


def test_middleware_times_each_route_and_counts_errors() -> None:
    control = ProfilerControl()
    control.always_time_requests = True
    app = FastAPI()
    app.add_middleware(OxProfileMiddleware, control=control)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("boom")

    client = TestClient(app, raise_server_exceptions=False)
    for i in range(7):
        assert client.get("/items/%d" % i).status_code == 200
    assert client.get("/boom").status_code == 500
    assert client.get("/missing/1").status_code == 404
    rows = {s.endpoint: s for s in control.timings.summaries()}
    assert set(rows) == {"/items/{item_id}", "/boom", NO_ENDPOINT}
    assert rows["/items/{item_id}"].count == 7 and rows["/items/{item_id}"].errors == 0
    assert rows["/boom"].count == 1 and rows["/boom"].errors == 1
    assert rows[NO_ENDPOINT].count == 1


def test_paused_middleware_does_nothing() -> None:
    control = ProfilerControl()
    app = FastAPI()
    app.add_middleware(OxProfileMiddleware, control=control)

    @app.get("/x")
    async def x() -> dict:
        return {}

    TestClient(app).get("/x")
    assert control.timings.count() == 0


def test_custom_route_name_for_other_asgi_apps() -> None:
    control = ProfilerControl()
    control.always_time_requests = True

    async def bare(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    named = OxProfileMiddleware(bare, control=control, route_name=lambda scope: "bare:" + scope["method"])
    unnamed = OxProfileMiddleware(bare, control=control)
    TestClient(named).get("/anything/123")
    TestClient(unnamed).get("/anything/456")
    assert {s.endpoint for s in control.timings.summaries()} == {"bare:GET", NO_ENDPOINT}


# -- labels follow the tasks of one event loop ------------------------------------------


def alpha_work() -> None:
    spin(0.002)


def beta_work() -> None:
    spin(0.002)


def gamma_work() -> None:
    spin(0.002)


def _app(control: ProfilerControl, in_flight: Optional[List[int]] = None) -> FastAPI:
    """Three endpoints whose work goes in steps; ``in_flight`` gets [now, most]
    requests between their first and last step."""
    app = FastAPI()
    app.add_middleware(OxProfileMiddleware, control=control)
    counts = in_flight if in_flight is not None else [0, 0]

    async def steps(work: Any) -> dict:
        counts[0] += 1
        counts[1] = max(counts[1], counts[0])
        for _ in range(5):
            work()
            await asyncio.sleep(0)
        counts[0] -= 1
        return {}

    @app.get("/alpha/{n}")
    async def alpha(n: int) -> dict:
        return await steps(alpha_work)

    @app.get("/beta")
    async def beta() -> dict:
        return await steps(beta_work)

    @app.get("/gamma")
    async def gamma() -> dict:
        return await steps(gamma_work)

    return app


OWN = {"/alpha/{n}": "alpha_work", "/beta": "beta_work", "/gamma": "gamma_work"}


def test_100_concurrent_requests_each_carry_their_endpoint() -> None:
    control = ProfilerControl()
    control.launcher_options = {"interval": 0.0005}
    in_flight = [0, 0]
    app = _app(control, in_flight)
    paths = ["/alpha/%d" % i if i % 3 == 0 else ("/beta" if i % 3 == 1 else "/gamma") for i in range(100)]

    async def load() -> List[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(*(client.get(p) for p in paths))
        return [r.status_code for r in responses]

    control.unpause()
    try:
        loop_thread: List[int] = []

        def run() -> None:
            loop_thread.append(threading.get_ident())
            assert asyncio.run(load()) == [200] * 100

        t = threading.Thread(target=run)
        t.start()
        t.join()
    finally:
        control.pause()
    # The requests did interleave on the loop (a label kept per thread would
    # be right too if they had run one after the other).
    assert in_flight[1] > 10, in_flight
    profile = control.launcher.snapshot().filter(threads=[loop_thread[0]])
    for name, work in OWN.items():
        own = [s for s in profile.stacks() if work in [f.function.name for f in s.frames]]
        hits = sum(s.hits for s in own)
        right = sum(s.hits for s in own if s.label == name)
        assert hits >= 30, (name, hits)
        assert right >= 0.95 * hits, (name, right, hits, {s.label for s in own})
    assert {s.endpoint: s.count for s in control.timings.summaries()} == {
        "/alpha/{n}": 34, "/beta": 33, "/gamma": 33}


# -- the mounted app ---------------------------------------------------------------------


def _ui(**kwargs: Any) -> TestClient:
    app = Starlette(routes=[Mount("/prof", app=OxProfileApp(control=ProfilerControl(), **kwargs))])
    return TestClient(app)


def test_without_authorize_nobody_gets_in() -> None:
    r = _ui().get("/prof/status")
    assert r.status_code == 403 and "not configured" in r.text and "authorize=" in r.text


def test_async_authorize_and_failing_authorize() -> None:
    async def allow(scope: Dict[str, Any]) -> bool:
        return dict(scope["headers"]).get(b"x-key") == b"k"

    client = _ui(authorize=allow)
    assert client.get("/prof/status").status_code == 403
    assert client.get("/prof/status", headers={"X-Key": "k"}).status_code == 200

    def broken(scope: Dict[str, Any]) -> bool:
        raise KeyError("session")

    assert _ui(authorize=broken).get("/prof/status").status_code == 403


def test_csrf_cookie_is_signed_and_cross_origin_posts_are_refused() -> None:
    control = ProfilerControl()
    app = Starlette(routes=[Mount("/prof", app=OxProfileApp(control=control, authorize=lambda s: True))])
    client = TestClient(app)
    first = client.get("/prof/status.json")
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/prof" in cookie
    token = first.json()["csrf_token"]
    # A token of our own making, planted in the cookie and the form, is refused.
    forged = TestClient(app, cookies={CSRF_COOKIE: "abc.def"})
    assert forged.post("/prof/unpause", data={"csrf_token": "abc.def"}).status_code == 400
    # The right token from another origin is refused too.
    r = client.post("/prof/unpause", data={"csrf_token": token}, headers={"Origin": "https://evil.example"},
                    follow_redirects=False)
    assert r.status_code == 403 and control.is_paused()
    # Header instead of form field, same origin: accepted.
    r = client.post("/prof/unpause", headers={"X-OxProf-CSRF": token, "Origin": "http://testserver"},
                    follow_redirects=False)
    assert r.status_code == 303 and not control.is_paused()
    control.pause()
    # Huge bodies are not read.
    r = client.post("/prof/pause", content=b"x" * 100_000,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def test_unknown_pages_and_methods() -> None:
    client = _ui(authorize=lambda s: True)
    assert client.get("/prof/nothing").status_code == 404
    r = client.put("/prof/status")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    assert client.get("/prof/static/secret.py").status_code == 404
    assert client.get("/prof/static/..%2F__init__.py").status_code == 404


def test_more_concurrent_requests_than_label_slots_all_succeed() -> None:
    """The engine keeps 4096 labels; a request beyond them is served and
    timed, only unlabelled."""
    control = ProfilerControl()
    control.always_time_requests = True
    app = FastAPI()
    middleware: List[OxProfileMiddleware] = []
    total = 4300
    arrived = [0]
    everyone = asyncio.Event()

    @app.get("/wait")
    async def wait() -> dict:
        arrived[0] += 1
        if arrived[0] == total:
            everyone.set()
        await everyone.wait()
        return {}

    def capture(inner: Any) -> OxProfileMiddleware:
        middleware.append(OxProfileMiddleware(inner, control=control))
        return middleware[0]

    async def load() -> List[int]:
        transport = httpx.ASGITransport(app=capture(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as client:
            responses = await asyncio.gather(*(client.get("/wait") for _ in range(total)))
        return [r.status_code for r in responses]

    assert asyncio.run(load()) == [200] * total
    assert middleware[0].unlabelled >= total - 4096
    assert control.timings.count() == total
