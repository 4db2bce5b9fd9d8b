"""One table of access cases, bad parameters and escaping cases, run against
the pages behind each front door: the Flask blueprint, the Django URL
patterns and the ASGI app (real apps, each framework's own test client)."""

from __future__ import annotations

import os
import threading
from urllib.parse import quote
from typing import Any, Dict, Iterator

import pytest

import ox_profile
from conftest import spin
from frontdoors import DOORS, NOT_SET, P, Door
from test_flask import BAD_INTERVALS, BAD_MAX_RECORDS

_doors: Dict[str, Door] = {}


@pytest.fixture(params=sorted(DOORS))
def door(request: pytest.FixtureRequest) -> Iterator[Door]:
    if request.param not in _doors:
        _doors[request.param] = DOORS[request.param]()
    d = _doors[request.param]
    d.configure(users={"admin"}, user="admin")
    yield d
    d.control.pause()
    close = getattr(d, "close", None)
    if close is not None:
        close()


# -- access -------------------------------------------------------------------------

#: name -> (configure arguments, expected status of a page, or a dict door -> status)
ACCESS = {
    "listed user": (dict(users={"admin"}, user="admin"), 200),
    "nobody listed": (dict(users=(), user="admin"), 403),
    "other user": (dict(users={"admin"}, user="eve"), 403),
    "anonymous": (dict(users={"admin"}, user=None), "anonymous"),
    "authorize True": (dict(users=(), user=None, verdict=True), 200),
    "authorize False": (dict(users={"admin"}, user="admin", verdict=False), 403),
    "authorize None": (dict(users={"admin"}, user="admin", verdict=None), 403),
    "authorize odd value": (dict(users={"admin"}, user="admin", verdict="yes"), 403),
}

PAGES = ["/status", "/status.json", "/flame.json", "/show_req_times", "/show_req_times?as_csv=1",
         "/download/text", "/static/flamegraph.js", "/"]


@pytest.mark.parametrize("case", list(ACCESS))
def test_access(door: Door, case: str) -> None:
    kwargs, expected = ACCESS[case]
    if expected == "anonymous":
        expected = door.anonymous_status
    door.configure(**kwargs)
    for page in PAGES:
        r = door.get(P + page)
        if page.endswith(".json") and expected == 302 and door.name == "django":
            assert r.status_code == 401, (page, r.status_code)  # JSON clients get a 401, not a login page
            continue
        assert r.status_code == expected, (door.name, case, page, r.status_code, r.text[:300])
        if expected == 403:
            if page.endswith(".json"):
                assert r.json()["error"]
            else:
                assert 'id="oxp-error"' in r.text and "ox_profile" in r.text
                assert r.headers["x-frame-options"] == "DENY"
        if expected == 302:
            assert "login" in r.headers["location"]
    # Refused visitors cannot act either, with or without a token.
    assert door.control.is_paused()
    r = door.post(P + "/unpause", {door.csrf_field: "forged"})
    if expected != 200:
        assert r.status_code == expected
        assert door.control.is_paused()
    else:
        assert r.status_code == 400  # the forged token
        assert door.control.is_paused()


def test_actions_need_the_token_and_work_with_it(door: Door) -> None:
    assert door.post(P + "/unpause", {}).status_code == 400
    assert door.post(P + "/unpause", {door.csrf_field: "not-the-token"}).status_code == 400
    assert door.control.is_paused()
    r = door.post_with_token(P + "/unpause")
    assert r.status_code in (302, 303) and r.headers["location"].endswith(P + "/status")
    assert not door.control.is_paused()
    assert "running" in door.get(P + "/status").text
    r = door.post_with_token(P + "/set_interval", {"interval": "0.002"})
    assert r.status_code in (302, 303)
    assert door.get(P + "/status.json").json()["state"]["interval"] == pytest.approx(0.002)
    door.post_with_token(P + "/set_interval", {"interval": "0.001"})
    assert door.post_with_token(P + "/pause").status_code in (302, 303)
    assert door.control.is_paused()


def test_original_get_links_unless_another_site_asked(door: Door) -> None:
    r = door.get(P + "/unpause", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "another site" in r.text
    assert door.control.is_paused()
    r = door.get(P + "/unpause", headers={"Referer": "https://evil.example/page"})
    assert r.status_code == 403 and door.control.is_paused()
    r = door.get(P + "/unpause", headers={"Sec-Fetch-Site": "none"})
    assert r.status_code == 200 and "unpaused" in r.text
    assert not door.control.is_paused()
    r = door.get(P + "/pause")
    assert r.status_code == 200 and door.control.is_paused()
    # HEAD never acts; reset is POST only.
    assert door.head(P + "/unpause").status_code == 405
    assert door.control.is_paused()
    assert door.get(P + "/reset").status_code == 405


# -- bad parameters -------------------------------------------------------------------

#: (method, path, form, a fragment of the message)
BAD = [
    ("GET", "/status?max_records=abc", None, "max_records must be a whole number"),
    ("GET", "/status?max_records=0", None, "max_records must be a whole number"),
    ("GET", "/status?max_records=10001", None, "max_records must be a whole number"),
    ("GET", "/status.json?max_records=-1", None, "max_records must be a whole number"),
    ("GET", "/status?re_filter=(", None, "re_filter"),
    ("GET", "/status?re_filter=" + "a" * 300, None, "re_filter must be at most"),
    ("GET", "/status?re_filter=(a)%5C1", None, "re_filter"),
    ("GET", "/status?thread=x", None, "thread must be a thread number"),
    ("GET", "/status?thread=999999", None, "is not one of the"),
    ("GET", "/status.json?thread=1:2", None, "is not one of the threads"),
    ("GET", "/flame.json?thread=abc", None, "thread must be"),
    ("GET", "/status?endpoint=" + "e" * 201, None, "endpoint must be at most"),
    ("GET", "/status?idle=yes", None, "idle must be 0 or 1"),
    ("GET", "/status.json?idle=2", None, "idle must be 0 or 1"),
    ("GET", "/status?process=abc", None, "process must be a process id"),
    ("GET", "/status?process=1", None, "is not one of the"),
    ("GET", "/show_req_times?as_csv=2", None, "as_csv must be 0 or 1"),
    ("GET", "/show_req_times?process=x", None, "process must be a process id"),
    ("GET", "/download/exe", None, "unknown download format"),
    ("GET", "/download/text?max_records=zz", None, "max_records"),
    ("GET", "/set_interval", None, "interval is required"),
    ("GET", "/set_interval?interval=abc", None, "interval must be a number"),
    ("GET", "/set_interval?interval=0", None, "interval must be between"),
    ("GET", "/set_interval?interval=nan", None, "interval must be between"),
    ("POST", "/set_interval", {"interval": "100"}, "interval must be between"),
    ("POST", "/set_interval", {}, "interval is required"),
    ("GET", "/status?re_filter=%28%3F%3Da%29", None, "re_filter"),
    ("GET", "/status?thread=-1", None, "thread"),
    ("GET", "/download/collapsed?thread=x", None, "thread must be"),
    ("GET", "/download/collapsed?endpoint=" + "e" * 201, None, "endpoint must be at most"),
    ("GET", "/download/collapsed?process=x", None, "process must be a process id"),
]
# Every value the Flask suite refuses, through every front door.
BAD += [("POST", "/set_interval", {"interval": value}, "interval") for value in BAD_INTERVALS]
BAD += [("GET", "/status?max_records=" + quote(value, safe=""), None, "max_records")
        for value in BAD_MAX_RECORDS if value]


@pytest.mark.parametrize("method,path,form,fragment", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_parameters_get_a_400(door: Door, method: str, path: str, form: Any, fragment: str) -> None:
    interval = door.get(P + "/status.json").json()["state"]["interval"]
    r = door.get(P + path) if method == "GET" else door.post_with_token(P + path, form)
    assert r.status_code == 400, (door.name, path, r.status_code, r.text[:300])
    if path.split("?")[0].endswith(".json"):
        assert fragment in r.json()["error"]
    else:
        assert fragment in r.text.replace("&#39;", "'").replace("&#x27;", "'")
        assert 'id="oxp-error"' in r.text
    # Nothing changed.
    assert door.get(P + "/status.json").json()["state"]["interval"] == interval
    assert door.control.is_paused()


# -- escaping ---------------------------------------------------------------------------

MARKUP_LABEL = "<script>alert('label')</script>"
MARKUP_THREAD = "<img src=x onerror=alert('thread')>"
MARKUP_FUNC = "<svg onload=alert('func')>"


def _markup_work() -> None:
    spin(0.3)


_markup_work.__code__ = _markup_work.__code__.replace(co_name=MARKUP_FUNC, co_qualname=MARKUP_FUNC)


def _sampled_markup(door: Door, finish: threading.Event) -> threading.Thread:
    """A thread with a markup name runs a function with a markup name under a
    markup label, then waits for ``finish`` (alive, its name stays its own)."""
    door.control.reset()
    door.control.unpause()
    worked = threading.Event()

    def run() -> None:
        with ox_profile.label(MARKUP_LABEL):
            _markup_work()
        worked.set()
        finish.wait(30)

    t = threading.Thread(target=run, name=MARKUP_THREAD)
    t.start()
    worked.wait(30)
    door.control.pause()
    door.control.timings.record(MARKUP_LABEL, 0.01)
    door.control.timings.record("=HYPERLINK(\"http://evil\")", 0.01)
    return t


def test_what_the_program_names_is_escaped(door: Door) -> None:
    finish = threading.Event()
    thread = _sampled_markup(door, finish)
    try:
        _check_escaped(door)
    finally:
        finish.set()
        thread.join()


def _check_escaped(door: Door) -> None:
    status = door.get(P + "/status")
    assert status.status_code == 200
    data = door.get(P + "/status.json").json()
    assert MARKUP_LABEL in data["endpoints"]
    assert MARKUP_THREAD in [t["name"] for t in data["threads"]]
    assert MARKUP_FUNC in [t["function"].split(".")[-1] for t in data["top"]] or \
        any(MARKUP_FUNC in t["function"] for t in data["top"])
    pages = {"status": status.text,
             "endpoint": door.get(P + "/status?endpoint=" + ox_quote(MARKUP_LABEL)).text,
             "times": door.get(P + "/show_req_times").text,
             "bad thread": door.get(P + "/status?thread=" + ox_quote(MARKUP_THREAD)).text,
             "bad format": door.get(P + "/download/" + ox_quote("<b>x")).text}
    for name, text in pages.items():
        for raw in (MARKUP_LABEL, MARKUP_THREAD, MARKUP_FUNC, "<b>x"):
            assert raw not in text, (door.name, name, raw)
    assert "&lt;script&gt;alert(" in pages["status"] and "&lt;img src=x" in pages["status"]
    assert "&lt;svg onload" in pages["status"] or "\\u003csvg" in pages["status"]
    assert "&lt;script&gt;" in pages["times"]
    assert "&lt;img src=x" in pages["bad thread"]
    # The selected endpoint's page shows that endpoint's samples only: not
    # those of the main thread, which waited unlabelled while the work ran.
    narrowed = door.get(P + "/status.json?endpoint=" + ox_quote(MARKUP_LABEL)).json()
    assert 0 < narrowed["total_samples"] < data["total_samples"]
    assert MARKUP_FUNC in " ".join(t["function"] for t in narrowed["top"])
    # CSV cells that spreadsheets would run as formulas are defused.
    csv_text = door.get(P + "/show_req_times?as_csv=1").text
    assert "'=HYPERLINK" in csv_text and "\n=HYPERLINK" not in csv_text
    # The pages' script runs only with its nonce: the CSP says so.
    assert "script-src 'nonce-" in door.get(P + "/status").headers["content-security-policy"]
    door.control.reset()


def ox_quote(text: str) -> str:
    from urllib.parse import quote
    return quote(text, safe="")


def test_samples_are_labelled_by_endpoint_and_timed(door: Door) -> None:
    """Requests to the door's own app while unpaused are timed (and the pages
    list them)."""
    door.control.reset()
    door.post_with_token(P + "/unpause")
    for _ in range(3):
        door.get(P + "/status.json")
    door.control.pause()
    rows = door.get(P + "/show_req_times?as_csv=1").text.splitlines()
    assert rows[0].startswith("endpoint,count,mean_s,p50_s,p95_s,p99_s")
    counts = {row.split(",")[0]: int(row.split(",")[1]) for row in rows[1:]}
    # The three status.json requests under the name the door gives its pages
    # (Flask's endpoint, Django's view name, the ASGI mount's path).
    assert any("ox_profile" in name and n >= 3 for name, n in counts.items()), counts
    door.control.reset()


def test_a_request_while_paused_looks_for_a_fork(door: Door, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that forks its workers in C (uWSGI) runs no at-fork hooks: the
    first request a worker serves, paused or not, re-arms ox_profile there
    (here with no hooks registered, so that nothing of the test process re-arms)."""
    from ox_profile import _forks
    door.control.pause()
    monkeypatch.setattr(_forks, "_hooks", [])
    monkeypatch.setattr(_forks, "_pid", -1)  # as if this process were a child forked in C
    door.get(P + "/status.json")
    assert _forks._pid == os.getpid()


def test_no_authorize_means_nobody(door: Door) -> None:
    """Deny by default: with no list and no callable, a logged-in user (or,
    for ASGI, any visitor) gets a 403."""
    door.configure(users=(), user="admin", verdict=NOT_SET)
    assert door.get(P + "/status").status_code == 403
