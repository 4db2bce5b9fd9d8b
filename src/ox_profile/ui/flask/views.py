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

import dataclasses
import hmac
import json
import os
import re
import secrets
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlencode, urlsplit

from flask import (Response, current_app, flash, g, jsonify, redirect, render_template,
                   request, send_from_directory, session, url_for)

from ox_profile import web
from ox_profile import _validate
from ox_profile.ui.flask import OX_PROF_BP, OxProfBlueprint, ReqRecord, pagedata
from ox_profile.ui.flask.access import check_access, forbidden, log
from ox_profile.ui.flask.refilter import MAX_PATTERN_LENGTH, FilterError, SafeFilter
from ox_profile.ui.flask.timing import summaries_csv

__all__ = ["OX_PROF_BP", "OxProfBlueprint", "ReqRecord", "BadParameter", "rotate_csrf_token"]

#: Rows of the top-functions table when max_records is not given.
DEFAULT_MAX_RECORDS = 50
#: Largest max_records accepted.
MAX_MAX_RECORDS = 10000
#: Sampling interval bounds, in seconds: the engine's.
MIN_INTERVAL = _validate.MIN_INTERVAL
MAX_INTERVAL = _validate.MAX_INTERVAL
#: Longest endpoint name accepted as a selection.
MAX_ENDPOINT_LENGTH = 200

#: Download formats: name -> (exporter format, mimetype, file name).
DOWNLOADS: Dict[str, Tuple[str, str, str]] = {
    "collapsed": ("collapsed", "text/plain; charset=utf-8", "ox_profile.collapsed"),
    "speedscope": ("speedscope", "application/json", "ox_profile.speedscope.json"),
    "pprof": ("pprof", "application/octet-stream", "ox_profile.pb.gz"),
    "html": ("html", "text/html; charset=utf-8", "ox_profile.html"),
    "text": ("text", "text/plain; charset=utf-8", "ox_profile.txt"),
}

#: Static files served from ox_profile/web/static.
STATIC_FILES = frozenset({"flamegraph.js", "flamegraph.css"})

_CSRF_SESSION_KEY = "_ox_prof_csrf"
_CSRF_FIELD = "csrf_token"
_CSRF_HEADER = "X-OxProf-CSRF"
_INT_RE = re.compile(r"\s*[0-9]{1,9}\s*\Z")


class BadParameter(Exception):
    """A request parameter is invalid: answered with a 400 and its message."""


def _echo(raw: str, limit: int = 40) -> str:
    return repr(raw if len(raw) <= limit else raw[:limit] + "...")


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
    if not expected or not sent:
        return False
    return hmac.compare_digest(str(expected).encode(), str(sent).encode())


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
ACTIONS = frozenset({"pause", "unpause", "reset", "set_interval"})

#: ``Sec-Fetch-Site`` values of requests a person made on this site: typed,
#: bookmarked (``none``) or from its own pages.
_OWN_SITE = frozenset({"none", "same-origin"})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme.lower(), parts.netloc.lower())


def requested_by_another_site() -> bool:
    """Whether the browser says this request was made by another site's page
    (``Sec-Fetch-Site``; browsers without it: a ``Referer`` from another origin)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site.strip().lower() not in _OWN_SITE
    referer = request.headers.get("Referer")
    return bool(referer) and _origin(referer) != _origin(request.host_url)


def _action_guard() -> Optional[Response]:
    """State changes: POSTs need the CSRF token; the original's GET links
    work unless another site made the request; HEAD never acts."""
    if request.method == "POST":
        if not _csrf_ok():
            raise BadParameter("The form's CSRF token is missing or invalid: reload the page and "
                               "try again (POSTs need the csrf_token of this session).")
        return None
    if request.method == "GET":
        if not requested_by_another_site():
            return None
        log.warning("ox_profile: refused %s %s requested by another site (Sec-Fetch-Site %r, "
                    "Referer %r)", request.method, request.path,
                    request.headers.get("Sec-Fetch-Site"), request.headers.get("Referer"))
        return forbidden(
            "This action was requested by a page of another site, and was not done.",
            "Use the buttons of the ox_profile status page, or open the link yourself "
            "(typed or bookmarked).")
    # HEAD (and anything else Flask would route to the view) changes nothing.
    response = current_app.response_class(
        "%s does not run ox_profile actions; use POST (the status page's buttons) or GET.\n"
        % request.method, status=405, mimetype="text/plain")
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
        raise BadParameter("The form's CSRF token is missing or invalid: reload the page and try "
                           "again (POSTs need the csrf_token of this session).")
    return None


@OX_PROF_BP.after_request
def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")
    if response.mimetype == "text/html" and "Content-Disposition" not in headers:
        headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'nonce-%s'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'" % _nonce())
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


def parse_interval(raw: Optional[str]) -> float:
    """A sampling interval in seconds from a request parameter."""
    if raw is None or not raw.strip():
        raise BadParameter("interval is required: the sampling interval in seconds, from %g to "
                           "%g (e.g. interval=0.001 samples at 1 kHz)." % (MIN_INTERVAL, MAX_INTERVAL))
    try:
        value = float(raw)
    except ValueError:
        raise BadParameter("interval must be a number of seconds, not %s." % _echo(raw)) from None
    try:
        return _validate.interval(value)
    except ValueError:
        raise BadParameter("interval must be between %g and %g seconds, not %s."
                           % (MIN_INTERVAL, MAX_INTERVAL, _echo(raw))) from None


def parse_max_records(raw: Optional[str]) -> int:
    """The number of top functions to show."""
    if raw is None:
        return DEFAULT_MAX_RECORDS
    if not _INT_RE.match(raw) or not 1 <= int(raw) <= MAX_MAX_RECORDS:
        raise BadParameter("max_records must be a whole number from 1 to %d, not %s."
                           % (MAX_MAX_RECORDS, _echo(raw)))
    return int(raw)


def parse_flag(name: str, raw: Optional[str]) -> bool:
    """A 0/1 switch."""
    if raw is None or raw == "0" or raw == "":
        return False
    if raw == "1":
        return True
    raise BadParameter("%s must be 0 or 1, not %s." % (name, _echo(raw)))


@dataclasses.dataclass
class Selection:
    """What part of the profile a page shows.  ``thread`` is a number from
    the page's list or, stable across the workers of a server whose pages
    merge several processes, ``"<pid>:<native thread id>"``; ``process`` a
    pid of the server's list."""

    re_filter: str = ""
    max_records: int = DEFAULT_MAX_RECORDS
    thread: Optional[int] = None
    endpoint: Optional[str] = None
    matcher: Optional[SafeFilter] = None
    thread_key: Optional[Tuple[int, int]] = None
    process: Optional[int] = None

    @property
    def thread_param(self) -> Optional[str]:
        """The ``thread`` argument as given."""
        if self.thread_key is not None:
            return "%d:%d" % self.thread_key
        return None if self.thread is None else str(self.thread)

    def query(self, **extra: Any) -> Dict[str, Any]:
        """The query arguments that reproduce this selection."""
        args: Dict[str, Any] = {}
        if self.re_filter:
            args["re_filter"] = self.re_filter
        if self.max_records != DEFAULT_MAX_RECORDS:
            args["max_records"] = self.max_records
        if self.thread_param is not None:
            args["thread"] = self.thread_param
        if self.endpoint is not None:
            args["endpoint"] = self.endpoint
        if self.process is not None:
            args["process"] = self.process
        args.update(extra)
        return args


_THREAD_KEY_RE = re.compile(r"\s*([0-9]{1,10}):([0-9]{1,20})\s*\Z")


def parse_selection() -> Selection:
    """The selection from the query string (raises :class:`BadParameter`)."""
    args = request.args
    sel = Selection(max_records=parse_max_records(args.get("max_records")))
    re_filter = args.get("re_filter", "")
    if re_filter and re_filter != ".*":
        if len(re_filter) > MAX_PATTERN_LENGTH:
            raise BadParameter("re_filter must be at most %d characters long." % MAX_PATTERN_LENGTH)
        try:
            sel.matcher = SafeFilter(re_filter)
        except FilterError as exc:
            raise BadParameter(str(exc)) from None
        sel.re_filter = re_filter
    thread = args.get("thread", "")
    if thread:
        key = _THREAD_KEY_RE.match(thread)
        if key is not None:
            sel.thread_key = (int(key.group(1)), int(key.group(2)))
        elif _INT_RE.match(thread):
            sel.thread = int(thread)
        else:
            raise BadParameter("thread must be a thread number from the list (or PID:THREAD_ID), not %s."
                               % _echo(thread))
    endpoint = args.get("endpoint", "")
    if endpoint:
        if len(endpoint) > MAX_ENDPOINT_LENGTH:
            raise BadParameter("endpoint must be at most %d characters long." % MAX_ENDPOINT_LENGTH)
        sel.endpoint = endpoint
    process = args.get("process", "")
    if process:
        if not _INT_RE.match(process):
            raise BadParameter("process must be a process id (pid) from the list, not %s." % _echo(process))
        sel.process = int(process)
    return sel


# -- data ------------------------------------------------------------------------


def _state() -> Dict[str, Any]:
    bp = OX_PROF_BP
    paused = bp.is_paused()
    stats = bp.launcher.profiler.stats()
    return {
        "state": "running" if not paused else ("paused" if bp.started else "not started"),
        "paused": paused,
        "started": bp.started,
        "interval": float(stats.get("interval") or 0.0),
        "pid": os.getpid(),
    }


def _shared_info() -> Dict[str, Any]:
    """How this process shares with the server's others (for pages and JSON)."""
    sharing = OX_PROF_BP.sharing
    share = sharing.share
    if share is None:
        return {"enabled": False, "error": sharing.error}
    return {"enabled": True, "directory": share.shared.path, "publish_interval": share.publish_interval,
            "publish_errors": share.publish_errors, "last_error": share.last_error}


def _process_json(info: Any) -> Dict[str, Any]:
    stats = info.stats
    return {"pid": info.pid, "state": info.state, "samples": info.samples, "current": info.current,
            "rate_hz": stats.get("rate_hz"), "backend": stats.get("backend"), "mode": stats.get("mode"),
            "interval": stats.get("interval"), "stats_samples": stats.get("samples"),
            "publish_interval": stats.get("share_interval"),
            "updated": info.updated, "command": info.command}


def _thread_key(profile: Any, thread: Any) -> Optional[Tuple[int, int]]:
    """(pid, native id) of a thread of a merged profile."""
    if 0 <= thread.process < len(profile.processes):
        return profile.processes[thread.process].pid, thread.native_id
    return None


def _selected(sel: Selection) -> Tuple[Any, Any]:
    """(whole profile, profile narrowed to the selection).  When the
    blueprint shares with the server's other processes, the whole profile
    is theirs merged; ``sel.thread`` is set to the selected thread's number."""
    view = OX_PROF_BP.merged()
    profile = view.profile if view is not None else OX_PROF_BP.launcher.snapshot()
    if sel.thread_key is not None:
        found = [t.index for t in profile.threads if _thread_key(profile, t) == sel.thread_key]
        if not found:
            raise BadParameter("thread %d:%d is not one of the threads sampled." % sel.thread_key)
        sel.thread = found[0]
    if sel.thread is not None:
        if not 0 <= sel.thread < len(profile.threads):
            raise BadParameter("thread %d is not one of the %d threads sampled."
                               % (sel.thread, len(profile.threads)))
    if sel.process is not None and profile.process(sel.process) is None:
        raise BadParameter("process %d is not one of the %d processes of this server%s."
                           % (sel.process, len(profile.processes),
                              "" if view is not None else " (sharing between processes is off)"))
    if sel.thread is None and sel.endpoint is None and sel.process is None:
        return profile, profile
    narrowed = profile if sel.thread is None else profile.thread_profile(sel.thread)
    if sel.process is not None:
        narrowed = narrowed.filter(processes=[sel.process])
        narrowed.stats = dict(profile.process(sel.process).stats)
    if sel.endpoint is not None:
        narrowed = narrowed.filter(labels=[sel.endpoint])
    return profile, narrowed


def _top(profile: Any, sel: Selection) -> Tuple[List[Any], int]:
    """The top functions of the selection and how many matched re_filter."""
    stats = profile.top()
    if sel.matcher is not None:
        try:
            stats = sel.matcher.select(stats, lambda s: s.function.display_name,
                                       lambda s: s.function.filename)
        except FilterError as exc:
            raise BadParameter(str(exc)) from None
    return stats[:sel.max_records], len(stats)


def _top_json(stat: Any) -> Dict[str, Any]:
    func = stat.function
    return {"function": func.display_name, "name": func.name, "qualname": func.qualname,
            "module": func.module, "file": func.filename, "line": stat.hot_line,
            "first_line": func.firstlineno, "self_hits": stat.self_hits,
            "total_hits": stat.total_hits, "self_share": stat.self_share,
            "total_share": stat.total_share}


def _json_response(payload: Dict[str, Any], flame_text: str, bare: bool = False) -> Response:
    """``payload`` plus ``"flame": flame`` as a JSON response (or the flame data
    alone when ``bare``), ``flame_text`` being the flame data serialised by
    ox_profile.web (whose call trees come already encoded)."""
    if bare:
        body = flame_text
    else:
        head = json.dumps(web.json_safe(payload), separators=(",", ":"))
        body = head[:-1] + ("," if payload else "") + '"flame":' + flame_text + "}"
    return current_app.response_class(body, mimetype="application/json")


#: Page builds: one at a time, the last few kept (see pagedata).
_PAGES = pagedata.BuildGate()
#: Downloads: one at a time, never cut, never kept.
_DOWNLOADS = pagedata.BuildGate(entries=0)


def _data_version() -> Tuple[Any, ...]:
    """What a kept page was built from: resets, the profiler, and (last) how
    many samples it had."""
    launcher = OX_PROF_BP.launcher
    return (OX_PROF_BP.generation, id(launcher), OX_PROF_BP.sharing.version(),
            int(launcher.profiler.stats().get("total_hits") or 0))


def _build_page(sel: Selection) -> pagedata.PageData:
    profile, narrowed = _selected(sel)
    top, matched = _top(narrowed, sel)
    flame = web.flame_data(narrowed, title=_page_title(sel), budget=pagedata.PAGE_BUDGET)
    threads, threads_omitted = pagedata.listed(
        [t for t in profile.threads], lambda t: t.hits, pagedata.MAX_LISTED_THREADS,
        keep=profile.threads[sel.thread] if sel.thread is not None else None)
    label_hits = profile.label_hits()
    endpoints, endpoints_omitted = pagedata.listed(
        sorted(label_hits), lambda lab: label_hits[lab], pagedata.MAX_LISTED_ENDPOINTS, keep=sel.endpoint)
    merged = len(profile.processes) > 1
    thread_values = {t.index: "%d:%d" % _thread_key(profile, t) for t in threads
                     if merged and _thread_key(profile, t) is not None}
    return pagedata.PageData(
        stats=dict(narrowed.stats), top=top, matched=matched, total_functions=len(profile.functions),
        total_samples=narrowed.total_samples, threads=threads, threads_omitted=threads_omitted,
        endpoints=endpoints, endpoints_omitted=endpoints_omitted,
        flame_text=web.dumps_for_script(flame), flame_meta=flame["meta"],
        processes=list(profile.processes), thread_values=thread_values, selected_thread=sel.thread,
        skipped=list(profile.stats.get("shared_skipped_files") or ()))


def _page(sel: Selection) -> pagedata.PageData:
    """The data of the selection's pages, built within bounds or reused."""
    key = (sel.re_filter, sel.max_records, sel.thread, sel.thread_key, sel.endpoint, sel.process)
    return _PAGES.get(key, _data_version(), lambda: _build_page(sel))


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


def _page_title(sel: Selection) -> str:
    parts = ["ox_profile"]
    if sel.endpoint is not None:
        parts.append("endpoint " + sel.endpoint)
    if sel.thread_param is not None:
        parts.append("thread %s" % sel.thread_param)
    if sel.process is not None:
        parts.append("pid %d" % sel.process)
    return " - ".join(parts)


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
    return _json_response({
        "state": _state(),
        "stats": page.stats,
        "selection": {"re_filter": sel.re_filter, "max_records": sel.max_records,
                      "thread": sel.thread, "endpoint": sel.endpoint, "process": sel.process},
        "total_samples": page.total_samples,
        "matched_functions": page.matched,
        "top": [_top_json(s) for s in page.top],
        "threads": [{"index": t.index, "ident": t.ident, "native_id": t.native_id,
                     "name": t.name, "hits": t.hits, "key": page.thread_values.get(t.index),
                     "pid": page.processes[t.process].pid if 0 <= t.process < len(page.processes) else None}
                    for t in page.threads],
        "threads_omitted": page.threads_omitted,
        "endpoints": page.endpoints,
        "endpoints_omitted": page.endpoints_omitted,
        "answered_by": os.getpid(),
        "processes": [_process_json(p) for p in page.processes],
        "shared": dict(_shared_info(), skipped=page.skipped),
        "csrf_token": csrf_token(),
    }, flame_text=page.flame_text)


@OX_PROF_BP.route("/flame.json")
def flame_json() -> Response:
    """Flame data (docs/contract.md) of the selection, within the page budget."""
    sel = parse_selection()
    return _json_response({}, flame_text=_page(sel).flame_text, bare=True)


@OX_PROF_BP.route("/download/<fmt>")
def download(fmt: str) -> Response:
    """The selected profile as a file: every sample, whatever its size."""
    if fmt not in DOWNLOADS:
        raise BadParameter("unknown download format %s; choose one of: %s."
                           % (_echo(fmt), ", ".join(sorted(DOWNLOADS))))
    sel = parse_selection()
    export_fmt, mimetype, filename = DOWNLOADS[fmt]
    from ox_profile import export

    def build() -> bytes:
        _profile, narrowed = _selected(sel)
        return export.render_bytes(narrowed, export_fmt)

    response = current_app.response_class(_DOWNLOADS.run(build), mimetype=mimetype)
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
    OX_PROF_BP.reset()
    _PAGES.clear()
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
    process = request.args.get("process", "")
    if process and not _INT_RE.match(process):
        raise BadParameter("process must be a process id (pid) from the list, not %s." % _echo(process))
    summaries = OX_PROF_BP.request_summaries(int(process) if process else None)
    if as_csv:
        response = current_app.response_class(summaries_csv(summaries), mimetype="text/csv")
        response.headers["Content-Disposition"] = "attachment; filename=ox_profile_requests.csv"
        return response
    return render_template("ox_prof_rinfo.html", rinfo=summaries, answered_by=os.getpid(),
                           shared=_shared_info(), process=int(process) if process else None,
                           csv_url=url_with_query(".show_req_times", {"as_csv": 1, "process": process or None}))
