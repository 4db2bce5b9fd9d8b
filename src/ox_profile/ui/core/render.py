"""The pages' templates (Jinja2, shared by every front door) and the URLs of
the pages below the mount point, for the front doors without Flask."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import quote, urlencode

__all__ = ["TEMPLATE_DIR", "ROUTES", "url_for", "render"]

#: The templates: Flask's blueprint reads them too.
TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

#: View name -> path below the mount point (``{name}``: a path parameter).
ROUTES: Dict[str, str] = {
    "index": "/",
    "status": "/status",
    "status_json": "/status.json",
    "flame_json": "/flame.json",
    "pause": "/pause",
    "unpause": "/unpause",
    "reset": "/reset",
    "set_interval": "/set_interval",
    "show_req_times": "/show_req_times",
    "download": "/download/{fmt}",
    "static_file": "/static/{filename}",
}

_env: Any = None
_env_lock = threading.Lock()


def url_for(base: str, view: str, **values: Any) -> str:
    """The URL path of ``view`` (a name of :data:`ROUTES`, with or without
    Flask's leading dot) under ``base``: path parameters from ``values``, the
    others (those not None) as the query string."""
    return _url(base, view, values)


def _url(base: str, view: str, values: Dict[str, Any]) -> str:
    path = ROUTES[view.lstrip(".")]
    query = {}
    for name, value in values.items():
        marker = "{%s}" % name
        if marker in path:
            path = path.replace(marker, quote(str(value), safe=""))
        elif value is not None:
            query[name] = value
    url = base.rstrip("/") + path
    return url + "?" + urlencode(query) if query else url


def _environment() -> Any:
    global _env
    if _env is None:
        with _env_lock:
            if _env is None:
                import jinja2
                _env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
                                          autoescape=True, auto_reload=False)
    return _env


def render(template: str, *, base: str, csrf_token: str, csrf_field: str, nonce: str,
           flashed: Optional[List[str]] = None, **context: Any) -> str:
    """A page of the templates, its links under ``base``."""
    def page_url(view: str, **values: Any) -> str:
        return _url(base, view, values)

    def url_with_query(view: str, query: Optional[Dict[str, Any]] = None, **values: Any) -> str:
        return _url(base, view, dict(query or {}, **values))

    def flashed_messages(category_filter: Any = None, with_categories: bool = False) -> List[str]:
        return list(flashed or ())

    token: Callable[[], str] = lambda: csrf_token  # noqa: E731
    names = {"url_for": page_url, "oxp_url": url_with_query, "get_flashed_messages": flashed_messages,
             "oxp_csrf_token": token, "oxp_csrf_field": csrf_field, "oxp_nonce": lambda: nonce,
             "oxp_pid": os.getpid()}
    return _environment().get_template(template).render(**names, **context)
