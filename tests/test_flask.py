"""The Flask blueprint through Flask's test client: every route under every
access case, bad parameters, CSRF, escaping, per-endpoint profiles, request
timing, the extension form and the original README's snippet."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from flask import Flask, Response, request
from flask_login import LoginManager, UserMixin, login_user

import ox_profile
from ox_profile.ui.flask import OX_PROF_BP, OxProfile
from ox_profile.ui.flask import timing as timing_mod
from ox_profile.ui.flask.refilter import FilterError, FilterTooCostly, SafeFilter
from ox_profile.ui.flask.views import MAX_MAX_RECORDS

from conftest import spin

P = "/ox_profile"
CSRF = "test-csrf-token"


# -- workloads with recognisable names ------------------------------------------------


def func_alpha() -> int:
    return spin(0.15)


def func_beta() -> int:
    return spin(0.15)


def nightly_import_work() -> int:
    return spin(0.15)


def _renamed(func, name: str, filename: str = None):
    """``func`` whose code object carries another name (and file name)."""
    changes = {"co_name": name, "co_qualname": name}
    if filename:
        changes["co_filename"] = filename
    func.__code__ = func.__code__.replace(**changes)
    return func


def _markup_func() -> int:
    return spin(0.25)


MARKUP_NAME = "<img src=x onerror=alert(2)>"
MARKUP_FILE = "<b>evil</b>.py"
_renamed(_markup_func, MARKUP_NAME, MARKUP_FILE)

LONG_NAME = "a" * 3000
_long_func = _renamed(lambda: spin(0.25), LONG_NAME)

SCRIPT_THREAD = "<script>alert(1)</script>"


# -- apps ---------------------------------------------------------------------------


class User(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name
        self.name = name
        self.email = name + "@example.org"


_app_count = [0]


def make_app(users=("admin",), *, login=True, login_view="login", authorize=None,
             register=True, **config) -> Flask:
    _app_count[0] += 1
    app = Flask("oxp_test_%d" % _app_count[0])
    app.config.update(SECRET_KEY="test-secret", TESTING=True)
    if users is not None:
        app.config["OX_PROF_USERS"] = users if isinstance(users, str) else set(users)
    if authorize is not None:
        app.config["OX_PROF_AUTHORIZE"] = authorize
    app.config.update(config)
    if login:
        manager = LoginManager(app)
        manager.login_view = login_view
        manager.user_loader(User)

        @app.route("/login", endpoint="login")
        def login_page():
            return "please log in"

        @app.route("/test_login/<name>")
        def test_login(name):
            login_user(User(name))
            return "logged in"

    @app.route("/work_a")
    def work_a():
        return str(func_alpha())

    @app.route("/work_b")
    def work_b():
        return str(func_beta())

    @app.route("/five_hundred")
    def five_hundred():
        return Response("no", status=500)

    @app.route("/boom")
    def boom():
        raise RuntimeError("boom")

    app.add_url_rule("/markup", endpoint="<i>ep</i>", view_func=lambda: "markup")

    if register:
        app.register_blueprint(OX_PROF_BP)
    return app


def client_as(app: Flask, name=None, csrf=True):
    client = app.test_client()
    if name is not None:
        assert client.get("/test_login/" + name).status_code == 200
    if csrf:
        with client.session_transaction() as sess:
            sess["_ox_prof_csrf"] = CSRF
    return client


@pytest.fixture()
def app():
    return make_app()


@pytest.fixture()
def admin(app):
    return client_as(app, "admin")


@pytest.fixture(autouse=True)
def _paused_and_empty():
    """Every test starts and ends with the shared profiler paused and empty."""
    OX_PROF_BP.pause()
    OX_PROF_BP.reset()
    yield
    OX_PROF_BP.pause()
    OX_PROF_BP.reset()
    if OX_PROF_BP._launcher is not None:
        OX_PROF_BP.set_interval(0.001)


def current_interval() -> float:
    return float(OX_PROF_BP.launcher.profiler.stats()["interval"])


@contextlib.contextmanager
def live_thread(target, name="worker"):
    """Run ``target`` in a thread called ``name`` that stays alive (idle) until
    the block ends: thread names are read from the threads alive at snapshot time."""
    done, release = threading.Event(), threading.Event()

    def run():
        try:
            target()
        finally:
            done.set()
            release.wait(60)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    done.wait(60)
    try:
        yield thread
    finally:
        release.set()
        thread.join()


# -- the route matrix -------------------------------------------------------------------

ROUTES = [
    ("GET", "/", None),
    ("GET", "/index", None),
    ("GET", "/status", None),
    ("GET", "/status?re_filter=work&max_records=5", None),
    ("GET", "/status.json", None),
    ("GET", "/flame.json", None),
    ("GET", "/pause", None),
    ("POST", "/pause", {"csrf_token": CSRF}),
    ("GET", "/unpause", None),
    ("POST", "/unpause", {"csrf_token": CSRF}),
    ("POST", "/reset", {"csrf_token": CSRF}),
    ("GET", "/set_interval?interval=0.002", None),
    ("POST", "/set_interval", {"csrf_token": CSRF, "interval": "0.002"}),
    ("GET", "/show_req_times", None),
    ("GET", "/show_req_times?as_csv=1", None),
    ("GET", "/download/collapsed", None),
    ("GET", "/download/speedscope", None),
    ("GET", "/download/pprof", None),
    ("GET", "/download/html", None),
    ("GET", "/download/text", None),
    ("GET", "/static/flamegraph.js", None),
    ("GET", "/static/flamegraph.css", None),
]
ROUTE_IDS = ["%s %s" % (m, u) for m, u, _ in ROUTES]


def call(client, method, url, data):
    if method == "POST":
        return client.post(P + url, data=data)
    return client.get(P + url)


@pytest.mark.parametrize("method,url,data", ROUTES, ids=ROUTE_IDS)
def test_route_allowed_user(method, url, data):
    client = client_as(make_app(), "admin")
    response = call(client, method, url, data)
    assert response.status_code == (303 if method == "POST" else 200), response.get_data(as_text=True)
    if method == "POST":
        assert response.headers["Location"].endswith(P + "/status")
    if response.mimetype == "text/html" and "Content-Disposition" not in response.headers:
        assert "script-src 'nonce-" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("method,url,data", ROUTES, ids=ROUTE_IDS)
def test_route_anonymous_gets_login_redirect(method, url, data):
    response = call(client_as(make_app()), method, url, data)
    assert response.status_code == 302
    assert "/login?next=" in response.headers["Location"]


@pytest.mark.parametrize("method,url,data", ROUTES, ids=ROUTE_IDS)
def test_route_anonymous_without_login_view_gets_401(method, url, data):
    response = call(client_as(make_app(login_view=None)), method, url, data)
    assert response.status_code == 401


@pytest.mark.parametrize("method,url,data", ROUTES, ids=ROUTE_IDS)
def test_route_user_not_listed_gets_403_with_help(method, url, data):
    response = call(client_as(make_app(), "guest"), method, url, data)
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    assert "OX_PROF_USERS" in text and "administrator" in text


@pytest.mark.parametrize("method,url,data", ROUTES, ids=ROUTE_IDS)
def test_route_nobody_without_users_configured(method, url, data):
    for users in (None, set(), ()):
        response = call(client_as(make_app(users=users), "admin"), method, url, data)
        assert response.status_code == 403
        assert "OX_PROF_USERS" in response.get_data(as_text=True)


@pytest.mark.parametrize("method,url,data", ROUTES, ids=ROUTE_IDS)
def test_route_authorize_callable(method, url, data):
    def authorize():
        return request.headers.get("X-Admin") == "yes"

    app = make_app(users=None, login=False, authorize=authorize)
    client = client_as(app)
    denied = call(client, method, url, data)
    assert denied.status_code == 403
    client.environ_base["HTTP_X_ADMIN"] = "yes"
    allowed = call(client, method, url, data)
    assert allowed.status_code == (303 if method == "POST" else 200)


def test_json_routes_refuse_in_json(app):
    response = client_as(app, "guest").get(P + "/status.json")
    assert response.status_code == 403
    assert response.is_json and "OX_PROF_USERS" in response.json["help"]


def test_authorize_may_answer_with_a_response():
    app = make_app(users=None, login=False,
                   authorize=lambda: Response("go away", status=418))
    response = app.test_client().get(P + "/status")
    assert response.status_code == 418 and response.get_data(as_text=True) == "go away"


def test_no_login_manager_and_no_authorize_is_refused():
    app = make_app(login=False)
    response = app.test_client().get(P + "/status")
    assert response.status_code == 403
    assert "OX_PROF_AUTHORIZE" in response.get_data(as_text=True)


def test_username_field_and_string_users():
    app = make_app(users={"admin@example.org"}, OX_PROF_USERNAME_FIELD="email")
    assert client_as(app, "admin").get(P + "/status").status_code == 200
    assert client_as(app, "guest").get(P + "/status").status_code == 403
    # A lone string is one user name, not a set of substrings.
    app = make_app(users="admin")
    assert client_as(app, "admin").get(P + "/status").status_code == 200
    assert client_as(app, "adm").get(P + "/status").status_code == 403


def test_denied_actions_change_nothing(admin, app):
    assert admin.get(P + "/unpause").status_code == 200
    before = current_interval()
    for client in (client_as(app), client_as(app, "guest")):
        for method, url, data in ROUTES:
            call(client, method, url, data)
        assert not OX_PROF_BP.is_paused()
        assert current_interval() == before


# -- paused by default, cheap requests --------------------------------------------------


def test_starts_paused_and_no_sampler_until_unpause():
    code = textwrap.dedent("""
        import threading
        from flask import Flask
        from ox_profile.ui.flask.views import OX_PROF_BP
        app = Flask("fresh")
        app.register_blueprint(OX_PROF_BP)
        app.config["OX_PROF_USERS"] = {"admin"}
        app.add_url_rule("/fast", view_func=lambda: "ok")
        client = app.test_client()
        threads = set(threading.enumerate())
        for _ in range(200):
            assert client.get("/fast").status_code == 200
        assert OX_PROF_BP._launcher is None, "launcher created by plain requests"
        assert not OX_PROF_BP.started and OX_PROF_BP.is_paused()
        assert set(threading.enumerate()) == threads, "a thread was started"
        launcher = OX_PROF_BP.launcher          # what the status page does
        assert OX_PROF_BP.is_paused() and not OX_PROF_BP.started
        assert launcher.profiler.stats()["ticks"] == 0
        assert OX_PROF_BP.request_summaries() == []    # not timed while paused
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


def _per_call(func, n=20000):
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            func()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def test_request_bookkeeping_costs_a_few_microseconds():
    from ox_profile.ui.flask import _RequestObserver

    def start_response(status, headers, exc_info=None):
        return None

    def inner(environ, sr):
        OX_PROF_BP._request_started()
        sr("200 OK", [])
        return [b"x"]

    observer = _RequestObserver(inner, OX_PROF_BP)
    environ = {}
    bare = _per_call(lambda: inner(environ, start_response))
    paused = _per_call(lambda: observer(environ, start_response)) - bare
    OX_PROF_BP.always_time_requests = True
    try:
        observed = _per_call(lambda: observer(environ, start_response)) - bare
    finally:
        OX_PROF_BP.always_time_requests = False
    print("per request: paused %.2f us, observed %.2f us" % (paused * 1e6, observed * 1e6))
    assert paused < 2e-6
    assert observed < 20e-6
    assert [s.count for s in OX_PROF_BP.request_summaries()] == [5 * 20000]


def test_requests_are_timed_and_labelled_only_while_unpaused(app, admin):
    admin.get("/work_a")
    assert OX_PROF_BP.request_summaries() == []
    OX_PROF_BP.unpause()
    admin.get("/work_a")
    assert ox_profile.get_label() is None          # cleared after the request
    OX_PROF_BP.pause()
    admin.get("/work_a")
    assert [(s.endpoint, s.count) for s in OX_PROF_BP.request_summaries()] == [("work_a", 1)]
    OX_PROF_BP.always_time_requests = True
    try:
        admin.get("/work_b")
    finally:
        OX_PROF_BP.always_time_requests = False
    assert "work_b" in [s.endpoint for s in OX_PROF_BP.request_summaries()]
    assert app.extensions["ox_profile.observer"] is app.wsgi_app


# -- bad parameters -------------------------------------------------------------------

BAD_INTERVALS = ["abc", "-1", "nan", "inf", "-inf", "1e9", "", " ", "0", "0x10", "1e-9"]


@pytest.mark.parametrize("value", BAD_INTERVALS)
def test_bad_interval_is_400_and_changes_nothing(admin, value):
    before = current_interval()
    response = admin.get(P + "/set_interval", query_string={"interval": value})
    assert response.status_code == 400
    assert "interval" in response.get_data(as_text=True)
    response = admin.post(P + "/set_interval", data={"interval": value, "csrf_token": CSRF})
    assert response.status_code == 400
    assert current_interval() == before


def test_missing_interval_is_400(admin):
    before = current_interval()
    assert admin.get(P + "/set_interval").status_code == 400
    assert current_interval() == before


def test_good_interval_is_applied(admin):
    response = admin.get(P + "/set_interval?interval=0.004")
    assert response.status_code == 200 and "0.004" in response.get_data(as_text=True)
    assert current_interval() == pytest.approx(0.004)


BAD_MAX_RECORDS = ["-5", "0", "99999999999999999999", str(MAX_MAX_RECORDS + 1), "abc", "", "1.5", "1e3"]


@pytest.mark.parametrize("value", BAD_MAX_RECORDS)
@pytest.mark.parametrize("route", ["/status", "/status.json"])
def test_bad_max_records_is_400(admin, route, value):
    response = admin.get(P + route, query_string={"max_records": value})
    assert response.status_code == 400
    assert "max_records" in response.get_data(as_text=True)


@pytest.mark.parametrize("args,word", [
    ({"re_filter": "("}, "re_filter"),
    ({"re_filter": "x" * 201}, "re_filter"),
    ({"re_filter": r"(a)\1"}, "backreferences"),
    ({"re_filter": r"(?=a)"}, "lookahead"),
    ({"thread": "abc"}, "thread"),
    ({"thread": "-1"}, "thread"),
    ({"thread": "99999"}, "thread"),
    ({"endpoint": "e" * 201}, "endpoint"),
])
@pytest.mark.parametrize("route", ["/status", "/status.json", "/flame.json", "/download/collapsed"])
def test_bad_selection_is_400(admin, route, args, word):
    response = admin.get(P + route, query_string=args)
    assert response.status_code == 400
    assert word in response.get_data(as_text=True)


@pytest.mark.parametrize("value", ["2", "yes", "-1"])
def test_bad_as_csv_is_400(admin, value):
    assert admin.get(P + "/show_req_times", query_string={"as_csv": value}).status_code == 400


def test_unknown_download_format_is_400(admin):
    response = admin.get(P + "/download/exe")
    assert response.status_code == 400 and "collapsed" in response.get_data(as_text=True)


def test_unknown_static_file_is_404(admin):
    assert admin.get(P + "/static/report.html").status_code == 404
    assert admin.get(P + "/static/../__init__.py").status_code == 404


def test_reset_needs_post(admin):
    assert admin.get(P + "/reset").status_code == 405


# -- CSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize("url,data", [("/pause", {}), ("/unpause", {}), ("/reset", {}),
                                      ("/set_interval", {"interval": "0.003"})])
def test_post_without_valid_csrf_token_is_400(app, url, data):
    OX_PROF_BP.unpause()
    before = current_interval()
    OX_PROF_BP.timings.record("kept", 0.1)
    for token in (None, "", "wrong"):
        client = client_as(app, "admin")
        body = dict(data)
        if token is not None:
            body["csrf_token"] = token
        response = client.post(P + url, data=body)
        assert response.status_code == 400
        assert "CSRF" in response.get_data(as_text=True)
    client = client_as(app, "admin", csrf=False)  # a session that never had a token
    assert client.post(P + url, data=dict(data, csrf_token=CSRF)).status_code == 400
    assert not OX_PROF_BP.is_paused()
    assert current_interval() == before
    assert any(s.endpoint == "kept" for s in OX_PROF_BP.request_summaries())


def test_csrf_token_from_page_and_header(app):
    client = client_as(app, "admin", csrf=False)
    page = client.get(P + "/status").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.get(P + "/status.json").json["csrf_token"] == token
    assert client.post(P + "/unpause", data={"csrf_token": token}).status_code == 303
    assert not OX_PROF_BP.is_paused()
    assert client.post(P + "/pause", headers={"X-OxProf-CSRF": token}).status_code == 303
    assert OX_PROF_BP.is_paused()
    # The redirect's page shows what was done.
    page = client.get(P + "/status").get_data(as_text=True)
    assert re.search(r'id="oxp-flash">(<li>[^<]*</li>)*<li>paused</li></ul>', page), page


def test_seed_get_links_still_work(admin):
    response = admin.get(P + "/unpause")
    assert response.status_code == 200 and "unpaused" in response.get_data(as_text=True)
    assert not OX_PROF_BP.is_paused()
    response = admin.get(P + "/pause")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "<p>paused</p>" in page and "unpaused" not in page
    assert OX_PROF_BP.is_paused()


# -- escaping ---------------------------------------------------------------------------


def test_markup_from_the_program_is_escaped(app, admin):
    OX_PROF_BP.unpause()
    with live_thread(_markup_func, name=SCRIPT_THREAD):
        admin.get("/markup")
        OX_PROF_BP.pause()
        _check_escaping(admin)


def _check_escaping(admin):
    for url in (P + "/status", P + "/status?re_filter=img", P + "/status?endpoint=" + SCRIPT_THREAD):
        page = admin.get(url).get_data(as_text=True)
        assert SCRIPT_THREAD not in page
        assert "<img src=x" not in page and "<b>evil" not in page
    page = admin.get(P + "/status").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page          # thread select
    assert "&lt;img src=x onerror=alert(2)&gt;" in page             # top table
    assert "&lt;b&gt;evil&lt;/b&gt;.py" in page                     # file:line
    # The embedded flame data cannot end its <script> element.
    data = page.split('id="oxp-flame-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and "\\u003cscript\\u003e" in data
    status = admin.get(P + "/status.json").json
    assert SCRIPT_THREAD in [t["name"] for t in status["threads"]]
    rinfo = admin.get(P + "/show_req_times").get_data(as_text=True)
    assert "<i>ep</i>" not in rinfo and "&lt;i&gt;ep&lt;/i&gt;" in rinfo
    echo = admin.get(P + "/status", query_string={"re_filter": '"><script>x</script>'})
    assert "<script>x" not in echo.get_data(as_text=True)
    bad = admin.get(P + "/set_interval", query_string={"interval": "<script>x</script>"})
    assert bad.status_code == 400 and "<script>x" not in bad.get_data(as_text=True)


# -- re_filter ---------------------------------------------------------------------------


def test_pathological_re_filter_is_bounded(admin):
    OX_PROF_BP.unpause()
    with live_thread(_long_func, name="long-names"):
        pass
    OX_PROF_BP.pause()
    t0 = time.perf_counter()
    found = admin.get(P + "/status.json", query_string={"re_filter": "(a+)+$", "max_records": "1000"})
    missed = admin.get(P + "/status.json", query_string={"re_filter": "(a+)+b"})
    nested = admin.get(P + "/status", query_string={"re_filter": "((a*)*|(a|aa)+)+(x|y)$"})
    elapsed = time.perf_counter() - t0
    assert found.status_code == 200 and missed.status_code == 200 and nested.status_code == 200
    # (the engine may shorten very long names)
    assert any(row["qualname"].startswith("a" * 1000) for row in found.json["top"])
    assert missed.json["top"] == []
    assert elapsed < 5.0


def test_safe_filter_agrees_with_re():
    names = ["", "a", "ab", "fib", "ox_profile.web.flame_data", "Foo.Bar_baz", "x1 y2", "aaab",
             "views.index", "models.Query.all", "abc\n"]
    patterns = [r"fib", r"^ox_", r"data$", r"(?i)foo", r"a+b", r"\bindex\b", r"\Bdex", r"[^a-z]",
                r"(views|models)\.", r"a{2,3}b", r"\d\s\w", r".*", r"^$", r"x*?y?", r"[A-Z][a-z]+_",
                r"(?:a|ab)(?:c|bcd)?$", r"\Aa", r"b\Z", r"(?s)c."]
    for pattern in patterns:
        safe = SafeFilter(pattern)
        for name in names:
            assert safe.search(name) == (re.search(pattern, name) is not None), (pattern, name)


def test_safe_filter_limits():
    with pytest.raises(FilterError):
        SafeFilter("x" * 201)
    with pytest.raises(FilterError):
        SafeFilter("(a{1000}){1000}")
    with pytest.raises(FilterError):
        SafeFilter("(?>a)")
    tiny = SafeFilter("(a|b)*c", work_budget=50)
    with pytest.raises(FilterTooCostly):
        tiny.select(["ab" * 500], lambda s: s)
    t0 = time.perf_counter()
    assert SafeFilter("(a+)+$").search("a" * 20000 + "!") is False
    assert SafeFilter("(x+x+)+y").search("x" * 5000) is False
    assert time.perf_counter() - t0 < 2.0


# -- per-endpoint profiles ----------------------------------------------------------------


def _tree_names(flame: dict) -> set:
    functions = flame["functions"]
    names = set()
    stack = [flame["views"][0]["tree"]]
    while stack:
        node = stack.pop()
        if node[0] >= 0:
            names.add(functions[node[0]][0])
        stack.extend(node[3] if len(node) > 3 else ())
    return names


def _top_table(page: str) -> str:
    return page.split('<table id="oxp-top">', 1)[1].split("</table>", 1)[0]


def test_status_page_has_one_top_table_with_short_paths(admin):
    admin.post(P + "/unpause", data={"csrf_token": CSRF})
    admin.get("/work_a")
    admin.post(P + "/pause", data={"csrf_token": CSRF})
    page = admin.get(P + "/status").get_data(as_text=True)
    # One table of top functions: the flame graph is mounted without its own.
    # (The other table, when the profiles are shared, lists the server's processes.)
    assert page.count("<table") - page.count('<table id="oxp-process-list"') == 1
    assert page.count("Top functions") == 1
    assert "OxFlame.mount(host, data, {table: false, idle: false})" in page
    row = [r for r in _top_table(page).split("<tr>") if "func_alpha" in r]
    assert row, page
    m = re.search(r'<td class="oxp-loc" title="([^"]+):(\d+)">([^<]+)</td>', row[0])
    assert m and m.group(1) == os.path.abspath(__file__), row[0]
    # shown relative to the sys.path entry this module was imported from
    assert m.group(3) == "%s:%s" % (os.path.basename(__file__), m.group(2))


def test_per_endpoint_profiles(admin):
    assert admin.post(P + "/unpause", data={"csrf_token": CSRF}).status_code == 303
    for _ in range(2):
        assert admin.get("/work_a").status_code == 200
        assert admin.get("/work_b").status_code == 200
    with ox_profile.label("nightly-import"):
        nightly_import_work()
    admin.post(P + "/pause", data={"csrf_token": CSRF})

    status = admin.get(P + "/status.json").json
    assert {"work_a", "work_b", "nightly-import"} <= set(status["endpoints"])
    cases = [("work_a", "func_alpha", "func_beta"), ("work_b", "func_beta", "func_alpha"),
             ("nightly-import", "nightly_import_work", "func_alpha")]
    for endpoint, wanted, other in cases:
        data = admin.get(P + "/status.json", query_string={"endpoint": endpoint}).json
        names = [row["name"] for row in data["top"]]
        assert wanted in names and other not in names, (endpoint, names)
        table = _top_table(admin.get(P + "/status", query_string={"endpoint": endpoint}).get_data(as_text=True))
        assert wanted in table and other not in table
        tree = _tree_names(admin.get(P + "/flame.json", query_string={"endpoint": endpoint}).json)
        assert wanted in tree and other not in tree
        folded = admin.get(P + "/download/collapsed", query_string={"endpoint": endpoint}).get_data(as_text=True)
        assert wanted in folded and other not in folded
    # Outside requests the label is cleared again.
    func_alpha_outside = admin.get(P + "/status.json", query_string={"re_filter": "nightly"}).json
    assert func_alpha_outside["top"]


def test_thread_selection(admin):
    OX_PROF_BP.unpause()
    with live_thread(func_alpha, name="alpha-thread"):
        OX_PROF_BP.pause()
        status = admin.get(P + "/status.json").json
        index = [t["index"] for t in status["threads"] if t["name"] == "alpha-thread"][0]
        data = admin.get(P + "/status.json", query_string={"thread": index}).json
    assert "func_alpha" in [row["name"] for row in data["top"]]
    assert data["total_samples"] < status["total_samples"]
    assert data["selection"]["thread"] == index


def test_status_page_shows_sampler_statistics(admin):
    OX_PROF_BP.unpause()
    func_alpha()
    OX_PROF_BP.pause()
    page = admin.get(P + "/status").get_data(as_text=True)
    for word in ("achieved rate", "capture cost", "backend", "memory", "Unpause", "Reset",
                 "Set interval", "flamegraph.js", 'id="oxp-flame"', "func_alpha"):
        assert word in page, word
    status = admin.get(P + "/status.json").json
    for key in ("rate_hz", "capture_mean_us", "backend", "memory_bytes"):
        assert key in status["stats"]
    assert status["flame"]["views"][0]["key"] == "all"
    assert isinstance(status["flame"]["views"][0]["tree"], list)
    assert status["state"]["state"] == "paused"


def test_reset_forgets_samples_and_timings(admin):
    OX_PROF_BP.unpause()
    # (a loaded machine may run the sampler late: work until it has samples)
    for _ in range(40):
        admin.get("/work_a")
        if OX_PROF_BP.launcher.profiler.stats()["samples"] > 0:
            break
    OX_PROF_BP.pause()
    assert admin.get(P + "/status.json").json["total_samples"] > 0
    assert admin.post(P + "/reset", data={"csrf_token": CSRF}).status_code == 303
    assert admin.get(P + "/status.json").json["total_samples"] == 0
    assert {s.endpoint for s in OX_PROF_BP.request_summaries()} <= {"ox_profile.reset",
                                                                     "ox_profile.status_json"}


def test_downloads_have_the_right_types(admin):
    OX_PROF_BP.unpause()
    admin.get("/work_a")
    OX_PROF_BP.pause()
    speedscope = admin.get(P + "/download/speedscope")
    assert json.loads(speedscope.data)["$schema"].startswith("https://www.speedscope.app")
    pprof = admin.get(P + "/download/pprof")
    assert pprof.data[:2] == b"\x1f\x8b"
    html = admin.get(P + "/download/html")
    assert html.headers["Content-Disposition"].startswith("attachment")
    assert b"func_alpha" in html.data


# -- request timing ---------------------------------------------------------------------


def test_show_req_times_and_csv(app, admin):
    OX_PROF_BP.unpause()
    for _ in range(3):
        admin.get("/work_a")
    admin.get("/five_hundred")
    with pytest.raises(RuntimeError):
        admin.get("/boom")
    page = admin.get(P + "/show_req_times").get_data(as_text=True)
    assert "work_a" in page and "Download CSV" in page
    response = admin.get(P + "/show_req_times?as_csv=1")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = {r["endpoint"]: r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}
    work = rows["work_a"]
    assert int(work["count"]) == 3 and int(work["errors"]) == 0
    assert 0.14 < float(work["mean_s"]) < 1.0
    assert float(work["p50_s"]) <= float(work["p99_s"]) <= float(work["max_s"]) * 1.0001
    assert int(rows["five_hundred"]["errors"]) == 1
    assert int(rows["boom"]["errors"]) == 1


def test_timing_histogram_accuracy_and_bounds():
    timings = timing_mod.RequestTimings(max_endpoints=3)
    values = [0.001 * (i + 1) for i in range(1000)]  # 1 ms .. 1 s uniformly
    for v in values:
        timings.record("ep", v)
    timings.record("ep", 1e-9)
    timings.record("ep", 1e6, error=True)
    s = timings.summaries()[0]
    assert s.count == 1002 and s.errors == 1 and s.max == 1e6
    assert s.p50 == pytest.approx(0.5, rel=0.05)
    assert s.p95 == pytest.approx(0.95, rel=0.05)
    assert s.p99 == pytest.approx(0.99, rel=0.05)
    for name in ("a", "b", "c", "d"):
        timings.record(name, 0.01)
    names = {x.endpoint for x in timings.summaries()}
    assert names == {"ep", "a", "b", timing_mod.OTHER}
    assert [x.count for x in timings.summaries() if x.endpoint == timing_mod.OTHER] == [2]
    for i in range(100000):
        timings.record("ep", 1e-7 * 1.0003 ** i)
    assert len(timings._data["ep"].buckets) == timing_mod.NBUCKETS  # 0.1 µs .. 1e6 s: every bucket, no more
    timings.record(None, 0.5)
    assert timing_mod.NO_ENDPOINT not in {x.endpoint for x in timings.summaries()}  # full: <other>
    assert timing_mod.summaries_csv([x._replace(endpoint="=cmd()") for x in timings.summaries()[:1]]) \
        .splitlines()[1].startswith("'=cmd()")


def test_record_req_compatibility():
    import datetime
    now = datetime.datetime.utcnow()
    OX_PROF_BP.record_req("someone", "legacy", now, now + datetime.timedelta(seconds=0.25))
    s = [x for x in OX_PROF_BP.request_summaries() if x.endpoint == "legacy"][0]
    assert s.count == 1 and s.max == pytest.approx(0.25)


# -- setup forms --------------------------------------------------------------------------


def test_extension_form_for_app_factories():
    ext = OxProfile(users={"admin"})

    def create_app():
        app = make_app(users=None, register=False)
        ext.init_app(app)
        return app

    app = create_app()
    assert app.extensions["ox_profile"] is ext and "ox_profile" in app.blueprints
    assert app.config["OX_PROF_USERS"] == {"admin"}
    ext.init_app(app)  # twice is harmless
    assert client_as(app, "admin").get(P + "/status").status_code == 200
    assert client_as(app, "guest").get(P + "/status").status_code == 403
    assert ext.launcher is OX_PROF_BP.launcher
    app2 = make_app(users=None, register=False)
    OxProfile(app2, authorize=lambda: True)
    assert app2.test_client().get(P + "/status.json").status_code == 200


def test_seed_readme_snippet_verbatim():
    app = make_app(users=None, register=False)
    snippet = ("from ox_profile.ui.flask.views import OX_PROF_BP\n"
               "app.register_blueprint(OX_PROF_BP)\n"
               "app.config['OX_PROF_USERS'] = {'admin_user_1', 'admin_user_2'}\n")
    exec(snippet, {"app": app})
    client = client_as(app, "admin_user_2")
    assert client.get(P + "/status").status_code == 200
    response = client.get(P + "/unpause")
    assert response.status_code == 200 and "unpaused" in response.get_data(as_text=True)
    client.get("/work_a")
    client.get(P + "/pause")
    page = client.get(P + "/status").get_data(as_text=True)
    assert "func_alpha" in _top_table(page)
    assert client_as(app, "admin_user_3").get(P + "/status").status_code == 403
    from ox_profile.ui.flask import ReqRecord
    assert ReqRecord._fields == ("start_time", "end_time")


def test_imports_without_flask_login():
    code = textwrap.dedent("""
        import sys
        sys.modules["flask_login"] = None   # as if not installed
        from flask import Flask
        from ox_profile.ui.flask.views import OX_PROF_BP
        app = Flask("no_login")
        app.register_blueprint(OX_PROF_BP)
        app.config["OX_PROF_AUTHORIZE"] = lambda: True
        assert app.test_client().get("/ox_profile/status").status_code == 200
        app2 = Flask("no_login_no_authorize")
        app2.register_blueprint(OX_PROF_BP)
        response = app2.test_client().get("/ox_profile/status")
        assert response.status_code == 403 and b"Flask-Login" in response.data
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


def waiting_poller(stop: threading.Event) -> None:
    """A thread that waits most of the time (idle samples)."""
    while not stop.wait(0.05):
        pass


def _hits(doc: dict, name: str) -> int:
    return sum(r["total_hits"] for r in doc["top"] if r["name"] == name)


def test_the_top_table_counts_running_threads_unless_idle_is_asked(admin):
    OX_PROF_BP.reset()
    stop = threading.Event()
    poller = threading.Thread(target=waiting_poller, args=(stop,), name="poller", daemon=True)
    poller.start()
    try:
        admin.post(P + "/unpause", data={"csrf_token": CSRF})
        for _ in range(40):
            admin.get("/work_a")
            doc = admin.get(P + "/status.json", query_string={"idle": "1"}).json
            if _hits(doc, "waiting_poller") > 100 and _hits(doc, "func_alpha") > 0:
                break
        admin.post(P + "/pause", data={"csrf_token": CSRF})
    finally:
        stop.set()
        poller.join()
    doc = admin.get(P + "/status.json").json
    everything = admin.get(P + "/status.json", query_string={"idle": "1"}).json
    # By default the waiting thread's samples are left out (those after its
    # wake-ups, when it ran, stay), and the page says how many.
    assert _hits(doc, "func_alpha") > 0
    assert _hits(doc, "waiting_poller") < _hits(everything, "waiting_poller") / 2
    hidden = doc["idle_samples_left_out"]
    assert hidden > 0 and doc["top_samples"] + hidden == doc["total_samples"]
    assert doc["selection"]["idle"] is False
    page = admin.get(P + "/status").get_data(as_text=True)
    assert 'id="oxp-idle-note"' in page and "{:,} samples of waiting threads".format(hidden) in page
    assert "idle: false" in page and 'id="oxp-idle" checked' not in page

    # idle=1: every sample counts.
    assert everything["selection"]["idle"] is True
    assert everything["idle_samples_left_out"] == 0 and everything["top_samples"] == everything["total_samples"]
    page = admin.get(P + "/status", query_string={"idle": "1"}).get_data(as_text=True)
    assert 'id="oxp-idle-note"' not in page
    assert 'id="oxp-idle" checked' in page and "idle: true" in page
    # A bad value is a 400 that names the parameter.
    bad = admin.get(P + "/status", query_string={"idle": "maybe"})
    assert bad.status_code == 400 and "idle must be 0 or 1" in bad.get_data(as_text=True)
