"""The blueprint fails closed: what OX_PROF_AUTHORIZE and Flask-Login's
unauthorized handler may answer, state changes by GET from other sites, HEAD,
the CSRF token across a login, another registration name, and what the 403
page tells (Flask's test client; the browser's side is in
test_flask_crosssite_browser.py)."""

from __future__ import annotations

import logging
import re

import pytest
import werkzeug.utils
from flask import Flask, Response
from flask_login import LoginManager, login_user
from werkzeug.exceptions import Forbidden

from ox_profile.ui.flask import OX_PROF_BP
from test_flask import (CSRF, P, ROUTES, ROUTE_IDS, User, _paused_and_empty, admin, app, call,  # noqa: F401
                        client_as, current_interval, make_app)

ACTIONS = [("/pause", {}), ("/unpause", {}), ("/set_interval", {"interval": "0.00005"})]


def _unchanged(before: float) -> None:
    assert OX_PROF_BP.is_paused(), "the profiler was unpaused"
    assert current_interval() == before, "the interval changed"


# -- 1. OX_PROF_AUTHORIZE allows only True ----------------------------------------------

REFUSING_VERDICTS = [
    ("tuple", lambda: ("Forbidden", 403)),
    ("str", lambda: "no"),
    ("dict", lambda: {"allowed": False}),
    ("int", lambda: 1),
    ("list", lambda: ["admin"]),
    ("NoneType", lambda: None),
    ("bool", lambda: False),
]


@pytest.mark.parametrize("type_name,authorize", REFUSING_VERDICTS, ids=[t for t, _ in REFUSING_VERDICTS])
def test_authorize_verdict_other_than_true_is_refused(type_name, authorize, caplog):
    app = make_app(users=None, login=False, authorize=authorize)
    client = client_as(app)
    before = current_interval()
    caplog.set_level(logging.INFO, logger="ox_profile")
    for method, url, data in ROUTES:
        response = call(client, method, url, data)
        assert response.status_code == 403, (method, url, response.status_code)
    _unchanged(before)
    assert client.get(P + "/status.json").status_code == 403
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("ox_profile")]
    assert any("OX_PROF_AUTHORIZE" in m and type_name in m for m in logged), logged


@pytest.mark.parametrize("make_response,status", [
    (lambda: werkzeug.utils.redirect("/login"), 302),
    (lambda: Forbidden("go away").get_response(), 403),
    (lambda: Response("teapot", status=418), 418),
], ids=["werkzeug redirect", "HTTPException.get_response", "flask Response"])
def test_authorize_response_is_sent_as_the_answer(make_response, status):
    app = make_app(users=None, login=False, authorize=make_response)
    client = client_as(app)
    before = current_interval()
    for method, url, data in ROUTES:
        assert call(client, method, url, data).status_code == status, (method, url)
    _unchanged(before)


def test_authorize_true_allows():
    app = make_app(users=None, login=False, authorize=lambda: True)
    assert client_as(app).get(P + "/status.json").status_code == 200


# -- 2. Flask-Login's unauthorized handler cannot open the door --------------------------


@pytest.mark.parametrize("answer", [None, "please log in", ("log in", 200)],
                         ids=["None", "str", "tuple"])
def test_anonymous_refused_whatever_unauthorized_handler_returns(answer):
    app = make_app()
    app.login_manager.unauthorized_handler(lambda: answer)
    client = client_as(app)  # anonymous, with a CSRF token in its session
    before = current_interval()
    for method, url, data in ROUTES:
        response = call(client, method, url, data)
        assert response.status_code in (200, 401), (method, url, response.status_code)
        body = response.get_data(as_text=True)
        assert "Ox Profile Status" not in body and "csrf_token" not in body
        assert "flamegraph" not in body and not response.is_json or "error" in response.json
    _unchanged(before)
    if answer is None:
        assert client.get(P + "/unpause").status_code == 401


# -- 8. the 403 page says how to get access, and nothing about the list -----------------


def _error_text(response) -> str:
    page = response.get_data(as_text=True)
    return re.sub(r"<[^>]+>", " ", page.split('id="oxp-error">', 1)[1].split("</div>", 1)[0])


def test_403_page_reveals_neither_user_count_nor_compared_attribute():
    users = {"admin@example.org", "ops@example.org", "root@example.org"}
    app = make_app(users=users, OX_PROF_USERNAME_FIELD="email")
    denied = client_as(app, "guest").get(P + "/status")
    assert denied.status_code == 403
    text = _error_text(denied)
    assert "administrator" in text and "OX_PROF_USERS" in text
    assert "email" not in text and "guest@example.org" not in text
    assert "OX_PROF_USERNAME_FIELD" not in text and "current_user" not in text
    assert not re.search(r"\b3\b", text), text
    # Nobody allowed at all reads the same: the page does not tell the list is empty.
    empty = client_as(make_app(users=set(), OX_PROF_USERNAME_FIELD="email"), "guest").get(P + "/status")
    assert empty.status_code == 403 and _error_text(empty) == text
    data = client_as(app, "guest").get(P + "/status.json").json
    assert "email" not in data["error"] + data["help"] and "3" not in data["error"] + data["help"]


# -- 3. state changes by GET: never from another site, never by HEAD -------------------


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("url,query", ACTIONS, ids=[u for u, _ in ACTIONS])
def test_get_action_requested_by_another_site_is_refused(admin, site, url, query):
    before = current_interval()
    response = admin.get(P + url, query_string=query, headers={"Sec-Fetch-Site": site})
    assert response.status_code == 403
    assert "another site" in response.get_data(as_text=True)
    _unchanged(before)


def test_get_action_with_a_foreign_referer_and_no_fetch_metadata_is_refused(admin):
    before = current_interval()
    response = admin.get(P + "/unpause", headers={"Referer": "http://evil.example/page"})
    assert response.status_code == 403
    _unchanged(before)
    # A link from our own pages still works.
    assert admin.get(P + "/unpause", headers={"Referer": "http://localhost/ox_profile/"}).status_code == 200
    assert not OX_PROF_BP.is_paused()


@pytest.mark.parametrize("site", ["none", "same-origin", None], ids=["typed", "own page", "no header"])
def test_typed_bookmarked_or_own_get_links_still_work(admin, site):
    headers = {"Sec-Fetch-Site": site} if site else {}
    response = admin.get(P + "/set_interval?interval=0.004", headers=headers)
    assert response.status_code == 200
    assert current_interval() == pytest.approx(0.004)
    assert admin.get(P + "/unpause", headers=headers).status_code == 200
    assert not OX_PROF_BP.is_paused()


@pytest.mark.parametrize("url,query", ACTIONS + [("/reset", {})], ids=[u for u, _ in ACTIONS] + ["/reset"])
def test_head_and_options_never_change_state(admin, url, query):
    OX_PROF_BP.timings.record("kept", 0.1)
    before = current_interval()
    head = admin.head(P + url, query_string=query)
    assert head.status_code == 405
    options = admin.options(P + url, query_string=query)
    assert options.status_code in (200, 405)
    _unchanged(before)
    assert any(s.endpoint == "kept" for s in OX_PROF_BP.request_summaries())


def test_head_of_pages_still_answers(admin):
    assert admin.head(P + "/status").status_code == 200


def test_csrf_token_rotates_at_login():
    app = make_app(users={"admin", "alice"})
    # A token planted in the session before its owner logs in.
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_ox_prof_csrf"] = "planted-token"
    assert client.get("/test_login/admin").status_code == 200
    assert client.post(P + "/unpause", data={"csrf_token": "planted-token"}).status_code == 400
    assert OX_PROF_BP.is_paused()
    # A real token from before a (re-)login is not accepted after it either.
    token = client.get(P + "/status.json").json["csrf_token"]
    assert token != "planted-token"
    assert client.get("/test_login/alice").status_code == 200
    assert client.post(P + "/unpause", headers={"X-OxProf-CSRF": token}).status_code == 400
    assert OX_PROF_BP.is_paused()
    fresh = client.get(P + "/status.json").json["csrf_token"]
    assert fresh != token
    assert client.post(P + "/unpause", data={"csrf_token": fresh}).status_code == 303
    assert not OX_PROF_BP.is_paused()


def test_blueprint_registered_under_another_name():
    app = make_app(register=False)
    app.register_blueprint(OX_PROF_BP, name="prof", url_prefix="/prof")
    client = client_as(app, "admin")
    for method, url, data in ROUTES:
        if method == "POST":
            response = client.post("/prof" + url, data=data)
            assert response.status_code == 303, (url, response.get_data(as_text=True)[:300])
            assert response.headers["Location"].endswith("/prof/status")
        else:
            response = client.get("/prof" + url)
            assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])
    page = client.get("/prof/status").get_data(as_text=True)
    assert 'src="/prof/static/flamegraph.js"' in page and 'action="/prof/reset"' in page
    assert not re.search(r'(href|action|src)="/ox_profile/', page)
    assert client.get(P + "/status").status_code == 404
    # Anonymous users are sent to the login page, not a 500.
    assert app.test_client().get("/prof/status").status_code == 302
