"""The ox_profile pages as one framework-free request handler: a front door
(Django's view, the ASGI app) checks access, turns its request into a
:class:`WebRequest`, and sends the :class:`WebResponse` :func:`handle`
returns.  The routes and answers are the Flask blueprint's
(:mod:`ox_profile.ui.flask.views`): the same paths, parameters, 400s on bad
parameters, CSRF checks on POSTs and refusals of actions another site asked for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ox_profile import _validate, web
from ox_profile.ui.core import guard, pages
from ox_profile.ui.core.pagedata import Busy
from ox_profile.ui.core.params import (DOWNLOADS, MAX_INTERVAL, MAX_MAX_RECORDS, MIN_INTERVAL, STATIC_FILES,
                                       BadParameter, parse_flag, parse_interval, parse_process,
                                       parse_selection)
from ox_profile.ui.core.render import render, url_for

__all__ = ["WebRequest", "WebResponse", "handle", "denied", "wants_json"]

log = logging.getLogger("ox_profile.web")

_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclasses.dataclass
class WebRequest:
    """One request to the pages, whatever the framework."""

    method: str                        # upper case
    path: str                          # below the mount point, starting with "/"
    base: str                          # the mount point's URL path ("/ox_profile")
    host_url: str                      # "scheme://host[:port]/" of this request
    args: Mapping[str, str]            # query arguments (first value of each)
    form: Mapping[str, str] = dataclasses.field(default_factory=dict)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # lower-case names
    csrf_token: str = ""               # the token the pages' forms carry
    csrf_field: str = guard.CSRF_FIELD
    csrf_valid: bool = False           # a POST's token was checked and is right
    messages: List[str] = dataclasses.field(default_factory=list)  # to show once (after an action)


@dataclasses.dataclass
class WebResponse:
    """What to send back."""

    status: int
    body: bytes
    content_type: str
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)
    flash: List[str] = dataclasses.field(default_factory=list)  # messages for the next page


def wants_json(req: WebRequest) -> bool:
    """Whether the answer should be JSON (JSON routes, or a client asking for it)."""
    accept = req.headers.get("accept", "")
    return req.path.endswith(".json") or accept.split(",")[0].strip().startswith("application/json")


def _html(req: WebRequest, status: int, template: str, nonce: str, **context: Any) -> WebResponse:
    text = render(template, base=req.base, csrf_token=req.csrf_token, csrf_field=req.csrf_field,
                  nonce=nonce, flashed=req.messages, **context)
    return WebResponse(status, text.encode("utf-8"), "text/html; charset=utf-8")


def _json(status: int, payload: Any) -> WebResponse:
    return WebResponse(status, json.dumps(payload).encode("utf-8"), "application/json")


def _error(req: WebRequest, status: int, title: str, message: str, help_text: str = "",
           nonce: str = "") -> WebResponse:
    if wants_json(req):
        payload: Dict[str, Any] = {"error": message}
        if help_text or status in (401, 403, 500):
            payload["help"] = help_text
        return _json(status, payload)
    return _html(req, status, "ox_prof_err.html", nonce or guard.new_nonce(), title=title,
                 error_msg=message, help_text=help_text)


def denied(req: WebRequest, message: str, help_text: str = "", status: int = 403) -> WebResponse:
    """The refusal page (or JSON body for JSON routes), with the usual headers."""
    nonce = guard.new_nonce()
    response = _error(req, status, "Access denied", message, help_text, nonce)
    return _finish(response, nonce)


def _finish(response: WebResponse, nonce: str) -> WebResponse:
    attachment = "Content-Disposition" in response.headers
    for name, value in guard.security_headers(response.content_type, attachment, nonce).items():
        response.headers.setdefault(name, value)
    return response


# -- views --------------------------------------------------------------------


def _index(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    commands = [(name, url_for(req.base, name)) for name in ("status", "pause", "unpause", "show_req_times")]
    return _html(req, 200, "ox_prof_intro.html", nonce, commands=commands, state=pages.state(control),
                 downloads=sorted(DOWNLOADS))


def _status(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    sel = parse_selection(req.args)
    page = pages.page(control, sel)
    return _html(req, 200, "ox_prof_status.html", nonce,
                 state=pages.state(control), stats=page.stats, sel=sel, page=page,
                 shared=pages.shared_info(control), now=time.time(),
                 top=page.top, matched=page.matched, total_functions=page.total_functions,
                 total_samples=page.total_samples, threads=page.threads, endpoints=page.endpoints,
                 flame_json=page.flame_text, flame_meta=page.flame_meta, downloads=sorted(DOWNLOADS),
                 min_interval=MIN_INTERVAL, max_interval=MAX_INTERVAL, max_max_records=MAX_MAX_RECORDS)


def _status_json(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    sel = parse_selection(req.args)
    page = pages.page(control, sel)
    payload = pages.status_payload(control, sel, page, req.csrf_token)
    return WebResponse(200, pages.json_body(payload, page.flame_text).encode("utf-8"), "application/json")


def _flame_json(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    page = pages.page(control, parse_selection(req.args))
    return WebResponse(200, page.flame_text.encode("utf-8"), "application/json")


def _download(control: Any, req: WebRequest, nonce: str, fmt: str) -> WebResponse:
    body, mimetype, filename = pages.download(control, fmt, req.args)
    return WebResponse(200, body, mimetype, {"Content-Disposition": "attachment; filename=%s" % filename})


def _static(control: Any, req: WebRequest, nonce: str, filename: str) -> WebResponse:
    if filename not in STATIC_FILES:
        return WebResponse(404, b"not found", "text/plain")
    with open(os.path.join(web.STATIC_DIR, filename), "rb") as f:
        body = f.read()
    return WebResponse(200, body, _STATIC_TYPES[os.path.splitext(filename)[1]],
                       {"Cache-Control": "public, max-age=300"})


def _done(control: Any, req: WebRequest, nonce: str, *messages: str) -> WebResponse:
    """After an action: POSTs go back to the status page, GETs (the original's
    links) get a message page."""
    if req.method == "POST":
        return WebResponse(303, b"", "text/plain", {"Location": url_for(req.base, "status")},
                           flash=list(messages))
    return _html(req, 200, "ox_prof_msg.html", nonce, messages=messages, state=pages.state(control))


def _pause(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    control.pause()
    return _done(control, req, nonce, "paused")


def _unpause(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    return _done(control, req, nonce, *control.unpause())


def _reset(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    pages.reset(control)
    return _done(control, req, nonce, "samples and request timings cleared")


def _set_interval(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    source = req.form if req.method == "POST" else req.args
    value = parse_interval(source.get("interval"))
    control.set_interval(value)
    return _done(control, req, nonce, "Changed sampling interval to %g s (%g Hz)" % (value, 1.0 / value))


def _show_req_times(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    as_csv = parse_flag("as_csv", req.args.get("as_csv"))
    process = parse_process(req.args.get("process", ""))
    summaries = pages.timing_summaries(control, process)
    if as_csv:
        return WebResponse(200, pages.timing_csv(summaries).encode("utf-8"), "text/csv; charset=utf-8",
                           {"Content-Disposition": "attachment; filename=ox_profile_requests.csv"})
    return _html(req, 200, "ox_prof_rinfo.html", nonce, rinfo=summaries, answered_by=os.getpid(),
                 shared=pages.shared_info(control), process=process,
                 csv_url=url_for(req.base, "show_req_times", as_csv=1, process=process))


_View = Callable[..., WebResponse]
_GET = ("GET", "HEAD")
#: path -> (view name, function, methods)
_EXACT: Dict[str, Tuple[str, _View, Tuple[str, ...]]] = {
    "/": ("index", _index, _GET),
    "/index": ("index", _index, _GET),
    "/status": ("status", _status, _GET),
    "/status.json": ("status_json", _status_json, _GET),
    "/flame.json": ("flame_json", _flame_json, _GET),
    "/pause": ("pause", _pause, _GET + ("POST",)),
    "/unpause": ("unpause", _unpause, _GET + ("POST",)),
    "/reset": ("reset", _reset, ("POST",)),
    "/set_interval": ("set_interval", _set_interval, _GET + ("POST",)),
    "/show_req_times": ("show_req_times", _show_req_times, _GET),
}
#: path prefix -> (view name, function), the rest of the path one parameter
_PREFIXED: Dict[str, Tuple[str, _View]] = {"/download/": ("download", _download),
                                           "/static/": ("static_file", _static)}


def _route(path: str) -> Optional[Tuple[str, _View, Tuple[str, ...], Tuple[str, ...]]]:
    """(view name, function, methods, path parameters) of a path, or None."""
    path = path or "/"
    found = _EXACT.get(path)
    if found is not None:
        return found + ((),)
    for prefix, (name, view) in _PREFIXED.items():
        rest = path[len(prefix):]
        if path.startswith(prefix) and rest and "/" not in rest:
            return name, view, _GET, (rest,)
    return None


def _action_guard(req: WebRequest, nonce: str) -> Optional[WebResponse]:
    """An action's request refused (guard.action_refusal), or None."""
    fetch_site, referer = req.headers.get("sec-fetch-site"), req.headers.get("referer")
    why = guard.action_refusal(req.method, req.csrf_valid, fetch_site, referer, req.host_url)
    if why is None:
        return None
    if why == "csrf":
        raise BadParameter(guard.CSRF_MESSAGE)
    if why == "another site":
        log.warning("ox_profile: refused %s %s requested by another site (Sec-Fetch-Site %r, Referer %r)",
                    req.method, req.path, fetch_site, referer)
        return _error(req, 403, "Access denied", *guard.CROSS_SITE_REFUSAL, nonce)
    return WebResponse(405, guard.method_refusal(req.method).encode(), "text/plain; charset=utf-8",
                       {"Allow": "GET, POST"})


def _dispatch(control: Any, req: WebRequest, nonce: str) -> WebResponse:
    route = _route(req.path)
    if route is None:
        return _error(req, 404, "Not found", "There is no ox_profile page at this address.",
                      "See the index page for the pages there are.", nonce)
    name, view, methods, params = route
    if req.method == "OPTIONS":
        return WebResponse(204, b"", "text/plain", {"Allow": ", ".join(methods + ("OPTIONS",))})
    if req.method not in methods:
        response = _error(req, 405, "Method not allowed", "%s is not allowed here; use %s."
                          % (req.method[:20], " or ".join(m for m in methods if m != "HEAD")), "", nonce)
        response.headers["Allow"] = ", ".join(methods + ("OPTIONS",))
        return response
    if name in guard.ACTIONS:
        refused = _action_guard(req, nonce)
        if refused is not None:
            return refused
    elif req.method == "POST" and not req.csrf_valid:
        raise BadParameter(guard.CSRF_MESSAGE)
    return view(control, req, nonce, *params)


def handle(control: Any, req: WebRequest) -> WebResponse:
    """The answer to a request the front door has let through its access check."""
    nonce = guard.new_nonce()
    try:
        response = _dispatch(control, req, nonce)
    except BadParameter as exc:
        response = _error(req, 400, "Bad request", str(exc), "", nonce)
    except Busy as exc:
        response = _error(req, 503, "Busy", str(exc), "", nonce)
        response.headers["Retry-After"] = "5"
    except _validate.BadEnvironment as exc:
        log.error("ox_profile: cannot create the profiler: %s", exc)
        response = _error(req, 500, "Configuration error", "ox_profile cannot start: %s." % exc,
                          "Fix the environment of the server process and restart it.", nonce)
    if req.method == "HEAD":
        response.body = b""
    return _finish(response, nonce)
