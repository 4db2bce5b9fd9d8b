"""A real browser against the demo app under a real WSGI server.

Debian's Chromium, driven by Playwright, uses examples/flask_app.py served by
gunicorn (one process, four threads) on 127.0.0.1: it logs in, unpauses the
profiler, exercises the endpoints, finds ``fib`` in the flame graph, zooms
into it, searches, hovers, and checks that the thread named
``<script>alert(1)</script>`` shows as text.  The screenshot is kept in
test-artifacts/flask_status.png.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
THREAD_NAME = "<script>alert(1)</script>"

if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed at %s (apt-get install chromium)" % CHROMIUM,
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
pytest.importorskip("gunicorn", reason="gunicorn is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 30.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    os.makedirs(ARTIFACTS, exist_ok=True)
    log = open(os.path.join(ARTIFACTS, "flask_gunicorn.log"), "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "-b", "127.0.0.1:%d" % port,
         "--graceful-timeout", "2", "examples.flask_app:app"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 30
    while True:
        try:
            if _get(base + "/fast", timeout=2) == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the demo app did not start under gunicorn")
        time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_status_page_in_chromium(server):
    os.makedirs(ARTIFACTS, exist_ok=True)
    dialogs, console_errors = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

            # Not logged in: Flask-Login sends us to the login page.
            page.goto(server + "/ox_profile/status")
            assert "/login" in page.url
            page.fill("#username", "guest")
            page.fill("#password", "guest")
            page.click("#login")
            # Logged in but not allowed: the 403 page says how to get access.
            assert "OX_PROF_USERS" in page.inner_text("#oxp-error")
            page.goto(server + "/logout")

            page.goto(server + "/ox_profile/status")
            page.fill("#username", "admin")
            page.fill("#password", "admin")
            page.click("#login")
            assert page.url.endswith("/ox_profile/status")
            assert page.inner_text("#oxp-state") == "not started"

            page.click("#oxp-unpause")
            assert page.inner_text("#oxp-state") == "running"
            assert "unpaused" in page.inner_text("#oxp-flash")

            for _ in range(12):
                assert _get(server + "/slow_cpu") == 200
                assert _get(server + "/fast") == 200
            for _ in range(4):
                assert _get(server + "/slow_io") == 200

            # The whole profile: fib is in the flame graph, the thread name is text.
            page.goto(server + "/ox_profile/status")
            assert page.locator('#oxp-flame svg rect[data-name="fib"]').count() > 0
            option = page.locator("#oxp-thread option", has_text=THREAD_NAME)
            assert option.count() == 1
            assert THREAD_NAME in option.inner_text()
            assert page.locator("#oxp-flame select.oxf-view option", has_text=THREAD_NAME).count() == 1
            assert page.locator("script", has_text="alert(1)").count() == 0

            # One endpoint: choose it in the selection form.
            page.select_option("#oxp-endpoint", "slow_cpu")
            page.click("#oxp-filter button[type=submit]")
            assert "endpoint=slow_cpu" in page.url
            top = page.inner_text("#oxp-top")
            assert "fib" in top and "wait_for_io" not in top
            # the page's one top table: the flame graph has none of its own here
            # (besides the list of the server's processes, shown when profiles are shared)
            assert page.locator("table:not(#oxp-process-list)").count() == 1
            assert page.locator(".oxf-top").count() == 0

            # Hover shows details, click zooms, search highlights.
            fib = page.locator('#oxp-flame svg rect[data-name="fib"]').first
            fib.hover()
            assert "fib" in page.inner_text(".oxf-tip-name")
            fib.click()
            state = page.evaluate("window.oxpFlame.state()")
            assert state["zoom"] and state["zoom"][-1] == "fib"
            assert page.inner_text(".oxf-crumb-current") == "fib"
            page.fill("input.oxf-search", "wait_for_io")
            page.press("input.oxf-search", "Enter")
            assert page.evaluate("window.oxpFlame.state()")["matched"] == 0
            page.fill("input.oxf-search", "fib")
            page.press("input.oxf-search", "Enter")
            assert page.evaluate("window.oxpFlame.state()")["matched"] > 0
            assert page.locator("#oxp-flame svg g.oxf-match").count() > 0
            page.screenshot(path=os.path.join(ARTIFACTS, "flask_status.png"), full_page=True)

            # Request timing page.
            page.goto(server + "/ox_profile/show_req_times")
            table = page.inner_text("#oxp-rinfo")
            assert "slow_cpu" in table and "slow_io" in table and "fast" in table

            page.goto(server + "/ox_profile/status")
            page.click("#oxp-pause")
            assert page.inner_text("#oxp-state") == "paused"
        finally:
            browser.close()
    assert dialogs == [], "a script from the page's data ran: %r" % dialogs
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
