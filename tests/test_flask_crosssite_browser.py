"""Another site cannot drive the profiler through a logged-in admin's browser.

The demo app runs under gunicorn on 127.0.0.1 (as in test_flask_browser.py);
a second server on another port plays the other site: its page sends the
browser (Debian's Chromium, driven by Playwright) to the original's GET
actions.  Served as ``localhost`` it is cross-site, as ``127.0.0.1`` with
another port same-site: both must leave the profiler as it was, while the
same links typed into the address bar still work.
"""

from __future__ import annotations

import http.server
import json
import re
import threading

import pytest

from test_flask_browser import CHROMIUM, _free_port, server, sync_api  # noqa: F401

ATTACKS = ["/ox_profile/set_interval?interval=0.00005", "/ox_profile/unpause"]


class _OtherSite(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        page = ('<!doctype html><html><body><p>Win a prize!</p><script>'
                'location.href = %s;</script></body></html>' % json.dumps(self.target + self.path))
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def other_site(server):  # noqa: F811 - the fixture imported above
    port = _free_port()
    handler = type("Handler", (_OtherSite,), {"target": server})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        httpd.shutdown()
        httpd.server_close()


def _state(page, base: str) -> dict:
    page.goto(base + "/ox_profile/status.json")
    data = json.loads(page.inner_text("body"))
    return {"state": data["state"]["state"], "interval": data["state"]["interval"]}


def test_other_sites_cannot_change_the_profiler(server, other_site):  # noqa: F811
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(server + "/ox_profile/status")
            page.fill("#username", "admin")
            page.fill("#password", "admin")
            page.click("#login")
            assert page.url.endswith("/ox_profile/status")
            before = _state(page, server)
            assert before["state"] != "running"

            for host, site in (("localhost", "cross-site"), ("127.0.0.1", "same-site")):
                for attack in ATTACKS:
                    with page.expect_response(re.compile(re.escape(server + attack.split("?")[0]))) as answer:
                        page.goto("http://%s:%d%s" % (host, other_site, attack))
                    response = answer.value
                    assert response.request.all_headers().get("sec-fetch-site") == site
                    assert response.status == 403, (host, attack, response.status)
                    assert "another site" in page.inner_text("#oxp-error")
                    assert _state(page, server) == before, (host, attack)

            # The same link typed into the address bar is the user's own wish.
            response = page.goto(server + "/ox_profile/set_interval?interval=0.004")
            assert response.status == 200
            assert _state(page, server)["interval"] == pytest.approx(0.004)
            page.goto(server + "/ox_profile/set_interval?interval=%g" % before["interval"])
        finally:
            browser.close()
