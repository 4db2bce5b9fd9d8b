"""Chromium against the FastAPI example under uvicorn: refused before
logging in, logs in, unpauses, loads three endpoints concurrently, finds
each endpoint's function in the flame graph and in its own endpoint's
selection, reads the request times and pauses.  The screenshot is kept in
test-artifacts/asgi_status.png."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from pathlib import Path

import pytest

from web_examples import TOKEN, FastAPIServer, load_concurrently

CHROMIUM = "/usr/bin/chromium"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "test-artifacts")

if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed at %s (apt-get install chromium)" % CHROMIUM,
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
pytest.importorskip("uvicorn", reason="uvicorn is not installed")


def test_fastapi_status_page_in_chromium(tmp_path: Path) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    server = FastAPIServer(tmp_path).start()
    base = server.base
    dialogs, console_errors = [], []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

                # Not logged in: the app's authorize refuses, and the page says so.
                response = page.goto(base + "/ox_profile/status")
                assert response.status == 403
                assert "not allowed" in page.inner_text("#oxp-error")

                page.goto(base + "/login")
                page.fill("#token", TOKEN)
                page.click("#login")
                assert page.url.endswith("/ox_profile/status")
                assert page.inner_text("#oxp-state") == "not started"

                page.click("#oxp-unpause")
                assert page.inner_text("#oxp-state") == "running"
                assert "unpaused" in page.inner_text("#oxp-flash")
                page.reload()
                assert page.locator("#oxp-flash").count() == 0  # shown once

                paths = ["/numbers", "/report", "/search"] * 20
                with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
                    statuses = pool.submit(asyncio.run, load_concurrently(base, paths, concurrency=12)).result()
                assert statuses == [200] * len(paths)

                page.goto(base + "/ox_profile/status")
                for name in ("crunch_numbers", "render_report", "search_index"):
                    assert page.locator('#oxp-flame svg rect[data-name="%s"]' % name).count() > 0, name
                # One endpoint, chosen in the selection form: only its own work.
                page.select_option("#oxp-endpoint", "/report")
                page.click("#oxp-filter button[type=submit]")
                assert "endpoint=%2Freport" in page.url
                top = page.inner_text("#oxp-top")
                assert "render_report" in top and "crunch_numbers" not in top and "search_index" not in top
                page.screenshot(path=os.path.join(ARTIFACTS, "asgi_status.png"), full_page=True)

                page.goto(base + "/ox_profile/show_req_times")
                table = page.inner_text("#oxp-rinfo")
                assert "/numbers" in table and "/report" in table and "/search" in table
                page.click("#oxp-rinfo a >> nth=0")  # each row links to its endpoint's profile
                assert "endpoint=" in page.url and page.locator("#oxp-top").count() == 1

                page.goto(base + "/ox_profile/status")
                page.click("#oxp-pause")
                assert page.inner_text("#oxp-state") == "paused"
            finally:
                browser.close()
    finally:
        server.stop()
    assert dialogs == [], "a script from the page's data ran: %r" % dialogs
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
