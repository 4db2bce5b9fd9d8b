"""The status page of a server with three worker processes, in Chromium.

The demo runs under gunicorn -w 3 (gthread) on 127.0.0.1; Debian's Chromium,
driven by Playwright, logs in once, unpauses once, and after load: the page
lists the three workers running, says which one answered, draws one flame
graph of all three (fib from every worker that served /slow_cpu), and
narrows to one worker with its "only this one" link.  The screenshot is kept
in test-artifacts/flask_workers.png.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from servers import ROOT, Client, DemoServer, whole_view_total

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(str(ROOT), "test-artifacts")

if not os.path.exists(CHROMIUM):
    pytest.skip("Debian's chromium is not installed at %s (apt-get install chromium)" % CHROMIUM,
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
pytest.importorskip("gunicorn", reason="gunicorn is not installed")


def _flame_total(page) -> int:
    """Samples of the page's flame graph, waiting threads included, as the
    process list counts them."""
    return whole_view_total(json.loads(page.locator("#oxp-flame-data").text_content()))


def test_three_workers_in_one_page(tmp_path):
    os.makedirs(ARTIFACTS, exist_ok=True)
    server = DemoServer("gunicorn", 3, tmp_path)
    try:
        workers = server.worker_pids()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(server.base + "/ox_profile/status")
                page.fill("#username", "admin")
                page.fill("#password", "admin")
                page.click("#login")
                assert page.url.endswith("/ox_profile/status"), "the login did not hold across workers"
                page.click("#oxp-unpause")
                assert page.inner_text("#oxp-state") == "running"
                # Every worker follows; then load them all.
                client = Client(server.base).login()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    doc = client.json("/ox_profile/status.json?max_records=1")
                    if all(p["state"] == "running" for p in doc["processes"]) and len(doc["processes"]) == 3:
                        break
                    time.sleep(0.1)
                assert server.load(["/slow_cpu?n=20", "/fast", "/slow_io"], 90) == 90
                time.sleep(1.3)

                for _ in range(5):  # whichever worker answers, the page shows all three
                    page.goto(server.base + "/ox_profile/status")
                    answered = int(re.search(r"pid (\d+)", page.inner_text("#oxp-answered")).group(1))
                    assert answered in workers
                    rows = page.locator("#oxp-process-list tr.oxp-process")
                    assert rows.count() == 3
                    listed = {int(rows.nth(i).get_attribute("data-pid")): rows.nth(i).get_attribute("data-state")
                              for i in range(3)}
                    assert listed == {pid: "running" for pid in workers}
                    current = page.locator("#oxp-process-list tr.oxp-current")
                    assert current.count() == 1 and int(current.get_attribute("data-pid")) == answered
                    assert "3 of 3 live processes are sampling" in page.inner_text("#oxp-running-count")
                # One flame graph of all three: fib, and threads named after their worker.
                assert page.locator('#oxp-flame svg rect[data-name="fib"]').count() > 0
                for pid in workers:
                    assert page.locator("#oxp-thread option", has_text="(pid %d)" % pid).count() >= 1
                whole = _flame_total(page)
                page.screenshot(path=os.path.join(ARTIFACTS, "flask_workers.png"), full_page=True)
                page.screenshot(path=os.path.join(ARTIFACTS, "flask_workers_top.png"))

                # Narrow to one worker.
                victim = workers[1]
                page.click('#oxp-process-list tr[data-pid="%d"] a.oxp-only' % victim)
                assert "process=%d" % victim in page.url
                assert "pid %d" % victim in page.inner_text("#oxp-processes")
                assert page.locator("#oxp-process").input_value() == str(victim)
                alone = _flame_total(page)
                samples = int(page.locator('#oxp-process-list tr[data-pid="%d"] td.num' % victim)
                              .nth(1).inner_text().replace(",", ""))
                assert 0 < alone == samples < whole
                page.screenshot(path=os.path.join(ARTIFACTS, "flask_workers_one.png"), full_page=True)
                # The per-worker selection is kept by the downloads.
                assert all("process=%d" % victim in a.get_attribute("href")
                           for a in page.locator("a.oxp-download").all())
            finally:
                browser.close()
    finally:
        server.stop()
