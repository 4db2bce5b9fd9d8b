"""The name a request's samples and timings go under: the path template of
the Starlette or FastAPI route it will reach (``/items/{item_id}``), never
the raw path, whose values are unbounded."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

__all__ = ["route_name", "MAX_DEPTH"]

#: Mounts followed at most (a mount of a mount of ...).
MAX_DEPTH = 8


def _level(match: Any) -> int:
    """Starlette's ``Match`` as a number: 0 none, 1 partial (another method), 2 full."""
    return int(getattr(match, "value", match) or 0)


def _search(routes: Iterable[Any], scope: Mapping[str, Any], prefix: str, depth: int) -> Optional[str]:
    partial: Optional[str] = None
    for route in routes:
        try:
            match, child = route.matches(scope)
        except Exception:  # noqa: BLE001 - a custom route may fail on a scope it does not expect
            continue
        level = _level(match)
        if not level:
            continue
        path = prefix + str(getattr(route, "path", "") or "")
        inner = getattr(route, "routes", None)
        if inner is not None:  # a Mount (or Host): its own routes, else the mount itself
            name = None
            if inner and depth < MAX_DEPTH:
                name = _search(inner, dict(scope, **child), path, depth + 1)
            return name or path or "/"
        if level >= 2:
            return path
        if partial is None:
            partial = path
    return partial


def route_name(scope: Mapping[str, Any]) -> Optional[str]:
    """The path template of the route of a Starlette/FastAPI app
    (``scope["app"]``) that the request will reach, or None (no such app, or
    no route matches)."""
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", None)
    if routes is None:
        routes = getattr(app, "routes", None)
    if not routes:
        return None
    try:
        return _search(routes, scope, "", 0)
    except Exception:  # noqa: BLE001 - naming must never break a request
        return None
