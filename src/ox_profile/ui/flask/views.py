"""Routes of the ox_profile blueprint, all under ``/ox_profile``.

========================  ==========  ================================================
route                     methods     what
========================  ==========  ================================================
``/`` and ``/index``      GET         links to everything below
``/status``               GET         top functions, sampler statistics, controls and
                                      the flame graph; query args ``re_filter``,
                                      ``max_records``, ``thread``, ``endpoint``
``/status.json``          GET         the same data as JSON (state, stats, top,
                                      threads, endpoints, flame data)
``/flame.json``           GET         flame data of the selection
``/pause``                GET, POST   pause sampling
``/unpause``              GET, POST   unpause (starts the sampler the first time)
``/reset``                POST        forget samples and request timings
``/set_interval``         GET, POST   ``interval`` in seconds (0.00005 .. 10)
``/show_req_times``       GET         per-endpoint request timing; ``as_csv=1``
                                      downloads CSV
``/download/<fmt>``       GET         the profile as ``collapsed``, ``speedscope``,
                                      ``pprof``, ``html`` or ``text``
``/static/<file>``        GET         flamegraph.js / flamegraph.css
========================  ==========  ================================================

Every route is behind :func:`ox_profile.ui.flask.access.check_access`.  POSTs
(what the pages send) need the session's CSRF token, which is renewed at
login; the original's GET links for pause/unpause/set_interval keep working
for allowed users, except when the browser says another site's page made the
request (``Sec-Fetch-Site``); HEAD never acts.  Links are built relative to
the blueprint, so it works under any registration name.  Bad parameters give a
400 with a message and change nothing.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any, Dict, Optional
from urllib.parse import urlencode

from flask import (Response, current_app, flash, g, jsonify, redirect, render_template,
                   request, send_from_directory, session, url_for)

from ox_profile import web
from ox_profile import _validate
from ox_profile.ui.core import guard, pages
from ox_profile.ui.core.params import (DEFAULT_MAX_RECORDS, DOWNLOADS, MAX_ENDPOINT_LENGTH,  # noqa: F401
                                       MAX_INTERVAL, MAX_MAX_RECORDS, MIN_INTERVAL, STATIC_FILES,
                                       BadParameter, Selection, parse_flag, parse_interval,
                                       parse_max_records, parse_process)
from ox_profile.ui.core.params import parse_selection as _parse_selection
from ox_profile.ui.flask import OX_PROF_BP, OxProfBlueprint, ReqRecord, pagedata
from ox_profile.ui.flask.access import check_access, forbidden, log

__all__ = ["OX_PROF_BP", "OxProfBlueprint", "ReqRecord", "BadParameter", "rotate_csrf_token"]

_CSRF_SESSION_KEY = "_ox_prof_csrf"
_CSRF_FIELD = guard.CSRF_FIELD
_CSRF_HEADER = guard.CSRF_HEADER


# -- guards, headers, template context -----------------------------------------


def csrf_token() -> str:
    """The session's CSRF token (created on first use; '' without a session)."""
    token = session.get(_CSRF_SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        try:
            session[_CSRF_SESSION_KEY] = token
        except RuntimeError:  # no SECRET_KEY: no session, so no POST forms
            return ""
    return token


def _csrf_ok() -> bool:
    expected = session.get(_CSRF_SESSION_KEY)
    sent = request.form.get(_CSRF_FIELD) or request.headers.get(_CSRF_HEADER)
    return guard.tokens_match(expected, sent)


def _nonce() -> str:
    nonce = g.get("_oxp_nonce")
    if nonce is None:
        nonce = g._oxp_nonce = secrets.token_urlsafe(16)
    return nonce


def rotate_csrf_token(*_args: Any, **_kwargs: Any) -> None:
    """Forget the session's CSRF token; the next page gets a new one.

    Connected to Flask-Login's ``user_logged_in`` and ``user_logged_out``
    signals, so that a token planted in a session before its owner logs in
    is worthless after; apps with their own login (``OX_PROF_AUTHORIZE``)
    call it when a user logs in."""
    try:
        session.pop(_CSRF_SESSION_KEY, None)
    except RuntimeError:  # no SECRET_KEY: there is no token to forget
        pass


@OX_PROF_BP.record_once
def _connect_login_signals(_state: Any) -> None:
    try:
        import flask_login
    except ImportError:  # apps that decide access with OX_PROF_AUTHORIZE
        return
    flask_login.user_logged_in.connect(rotate_csrf_token)
    flask_login.user_logged_out.connect(rotate_csrf_token)


#: The views that change the profiler's state.
ACTIONS = guard.ACTIONS


def _action_guard() -> Optional[Response]:
    """An action's request refused (guard.action_refusal), or None."""
    fetch_site, referer = request.headers.get("Sec-Fetch-Site"), request.headers.get("Referer")
    why = guard.action_refusal(request.method, request.method == "POST" and _csrf_ok(), fetch_site, referer,
                               request.host_url)
    if why is None:
        return None
    if why == "csrf":
        raise BadParameter(guard.CSRF_MESSAGE)
    if why == "another site":
        log.warning("ox_profile: refused %s %s requested by another site (Sec-Fetch-Site %r, "
                    "Referer %r)", request.method, request.path, fetch_site, referer)
        return forbidden(*guard.CROSS_SITE_REFUSAL)
    response = current_app.response_class(guard.method_refusal(request.method), status=405, mimetype="text/plain")
    response.headers["Allow"] = "GET, POST"
    return response


@OX_PROF_BP.before_request
def _guard() -> Optional[Response]:
    """Access control for every route, then the checks of actions."""
    denied = check_access()
    if denied is not None:
        return denied
    view = (request.endpoint or "").rpartition(".")[2]
    if view in ACTIONS and request.method != "OPTIONS":
        return _action_guard()
    if request.method == "POST" and not _csrf_ok():
        raise BadParameter(guard.CSRF_MESSAGE)
    return None


@OX_PROF_BP.after_request
def _security_headers(response: Response) -> Response:
    headers = response.headers
    attachment = "Content-Disposition" in headers
    for name, value in guard.security_headers(response.mimetype or "", attachment, _nonce()).items():
        headers.setdefault(name, value)
    return response


@OX_PROF_BP.errorhandler(BadParameter)
def _bad_parameter(exc: BadParameter) -> Response:
    message = str(exc)
    if request.path.endswith(".json"):
        response = jsonify({"error": message})
    else:
        response = current_app.make_response(render_template(
            "ox_prof_err.html", title="Bad request", error_msg=message, help_text=""))
    response.status_code = 400
    return response


@OX_PROF_BP.errorhandler(_validate.BadEnvironment)
def _bad_environment(exc: _validate.BadEnvironment) -> Response:
    """The profiler cannot be created: the server's environment is wrong."""
    log.error("ox_profile: cannot create the profiler: %s", exc)
    message = "ox_profile cannot start: %s." % exc
    help_text = "Fix the environment of the server process and restart it."
    if request.path.endswith(".json"):
        response = jsonify({"error": message, "help": help_text})
    else:
        response = current_app.make_response(render_template(
            "ox_prof_err.html", title="Configuration error", error_msg=message, help_text=help_text))
    response.status_code = 500
    return response


def url_with_query(view: str, query: Optional[Dict[str, Any]] = None, **values: Any) -> str:
    """``url_for(view, **values)`` plus a query string (which may hold an
    ``endpoint`` argument, a name url_for keeps for itself)."""
    url = url_for(view, **values)
    query = {k: v for k, v in (query or {}).items() if v is not None}
    return url + "?" + urlencode(query) if query else url


@OX_PROF_BP.context_processor
def _template_context() -> Dict[str, Any]:
    return {"oxp_csrf_token": csrf_token, "oxp_nonce": _nonce,
            "oxp_csrf_field": _CSRF_FIELD, "oxp_url": url_with_query, "oxp_pid": os.getpid()}


# -- parameters ----------------------------------------------------------------


def parse_selection() -> Selection:
    """The selection from the query string (raises :class:`BadParameter`)."""
    return _parse_selection(request.args)


# -- data ------------------------------------------------------------------------


def _state() -> Dict[str, Any]:
    return pages.state(OX_PROF_BP)


def _shared_info() -> Dict[str, Any]:
    return pages.shared_info(OX_PROF_BP)


def _page(sel: Selection) -> pagedata.PageData:
    """The data of the selection's pages, built within bounds or reused."""
    return pages.page(OX_PROF_BP, sel)


def _json_response(body: str) -> Response:
    return current_app.response_class(body, mimetype="application/json")


@OX_PROF_BP.errorhandler(pagedata.Busy)
def _busy(exc: pagedata.Busy) -> Response:
    if request.path.endswith(".json"):
        response = jsonify({"error": str(exc)})
    else:
        response = current_app.make_response(render_template(
            "ox_prof_err.html", title="Busy", error_msg=str(exc), help_text=""))
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


# -- pages -------------------------------------------------------------------------


@OX_PROF_BP.route("/")
@OX_PROF_BP.route("/index")
def index() -> str:
    """Links to every page and action."""
    commands = [(name, url_for("." + name)) for name in (
        "status", "pause", "unpause", "show_req_times")]
    return render_template("ox_prof_intro.html", commands=commands, state=_state(),
                           downloads=sorted(DOWNLOADS))


@OX_PROF_BP.route("/status")
def status() -> str:
    """Top functions, sampler statistics, controls and the flame graph."""
    sel = parse_selection()
    page = _page(sel)
    return render_template(
        "ox_prof_status.html", state=_state(), stats=page.stats, sel=sel, page=page,
        shared=_shared_info(), now=time.time(),
        top=page.top, matched=page.matched, total_functions=page.total_functions,
        total_samples=page.total_samples, threads=page.threads, endpoints=page.endpoints,
        flame_json=page.flame_text, flame_meta=page.flame_meta, downloads=sorted(DOWNLOADS),
        min_interval=MIN_INTERVAL, max_interval=MAX_INTERVAL, max_max_records=MAX_MAX_RECORDS)


@OX_PROF_BP.route("/status.json")
def status_json() -> Response:
    """The status page's data for scripts."""
    sel = parse_selection()
    page = _page(sel)
    payload = pages.status_payload(OX_PROF_BP, sel, page, csrf_token())
    return _json_response(pages.json_body(payload, page.flame_text))


@OX_PROF_BP.route("/flame.json")
def flame_json() -> Response:
    """Flame data (docs/contract.md) of the selection, within the page budget."""
    sel = parse_selection()
    return _json_response(_page(sel).flame_text)


@OX_PROF_BP.route("/download/<fmt>")
def download(fmt: str) -> Response:
    """The selected profile as a file: every sample, whatever its size."""
    body, mimetype, filename = pages.download(OX_PROF_BP, fmt, request.args)
    response = current_app.response_class(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = "attachment; filename=%s" % filename
    return response


@OX_PROF_BP.route("/static/<path:filename>")
def static_file(filename: str) -> Response:
    """The flame graph's script and style sheet."""
    if filename not in STATIC_FILES:
        return current_app.response_class("not found", status=404, mimetype="text/plain")
    return send_from_directory(web.STATIC_DIR, filename, max_age=300)


# -- actions -------------------------------------------------------------------------


def _done(*messages: str) -> Any:
    """After an action: POSTs go back to the status page, GETs (the original's
    links) get a message page."""
    if request.method == "POST":
        for message in messages:
            flash(message, "ox_profile")
        return redirect(url_for(".status"), code=303)
    return render_template("ox_prof_msg.html", messages=messages, state=_state())


@OX_PROF_BP.route("/pause", methods=["GET", "POST"])
def pause() -> Any:
    """Pause sampling."""
    OX_PROF_BP.pause()
    return _done("paused")


@OX_PROF_BP.route("/unpause", methods=["GET", "POST"])
def unpause() -> Any:
    """Unpause sampling, starting the sampler the first time."""
    return _done(*OX_PROF_BP.unpause())


@OX_PROF_BP.route("/reset", methods=["POST"])
def reset() -> Any:
    """Forget samples and request timings."""
    pages.reset(OX_PROF_BP)
    return _done("samples and request timings cleared")


@OX_PROF_BP.route("/set_interval", methods=["GET", "POST"])
def set_interval() -> Any:
    """Change the sampling interval (seconds)."""
    source = request.form if request.method == "POST" else request.args
    value = parse_interval(source.get("interval"))
    OX_PROF_BP.set_interval(value)
    return _done("Changed sampling interval to %g s (%g Hz)" % (value, 1.0 / value))


# -- request timing ---------------------------------------------------------------------


@OX_PROF_BP.route("/show_req_times")
def show_req_times() -> Any:
    """Per-endpoint request timing; ``as_csv=1`` downloads it as CSV."""
    as_csv = parse_flag("as_csv", request.args.get("as_csv"))
    pid = parse_process(request.args.get("process", ""))
    process = "" if pid is None else request.args.get("process", "")
    summaries = pages.timing_summaries(OX_PROF_BP, pid)
    if as_csv:
        response = current_app.response_class(pages.timing_csv(summaries), mimetype="text/csv")
        response.headers["Content-Disposition"] = "attachment; filename=ox_profile_requests.csv"
        return response
    return render_template("ox_prof_rinfo.html", rinfo=summaries, answered_by=os.getpid(),
                           shared=_shared_info(), process=int(process) if process else None,
                           csv_url=url_with_query(".show_req_times", {"as_csv": 1, "process": process or None}))
