"""The HTML export of a real run (CLI, real engine) in headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

PROGRAM = textwrap.dedent("""
    import threading, time

    def hot_function():
        end = time.perf_counter() + 0.4
        while time.perf_counter() < end:
            pass

    def side_worker():
        end = time.perf_counter() + 0.4
        while time.perf_counter() < end:
            sum(range(100))

    t = threading.Thread(target=side_worker, name="<b>bold-thread</b>")
    t.start()
    hot_function()
    t.join()
""")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_cli_html_flame_graph_in_chromium(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    out = tmp_path / "prog.html"
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "-o", str(out), str(script)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors, dialogs = [], []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(out.as_uri())
            page.wait_for_selector("#oxp-flame svg rect")
            hot = page.locator('#oxp-flame svg rect[data-name="hot_function"]')
            assert hot.count() == 1
            full = float(page.locator("#oxp-flame svg").get_attribute("width"))
            before = float(hot.get_attribute("width"))
            assert 0 < before < full
            hot.click()
            page.wait_for_function("() => document.querySelector('#oxp-flame svg rect[data-name=\"hot_function\"]')"
                                   " && parseFloat(document.querySelector('#oxp-flame svg rect[data-name=\"hot_function\"]')"
                                   ".getAttribute('width')) > %f" % (before + 1))
            # The thread's markup-like name is shown as text in the view list.
            options = page.locator("select option").all_text_contents()
            assert any("<b>bold-thread</b>" in o for o in options), options
            assert page.locator("b").count() == 0
            # The table lists the function with its file: relative to the
            # script's directory (the program's sys.path[0]), the full path in
            # the cell's tooltip and in the flame graph's.
            assert "hot_function" in page.locator("#oxp-flame tbody").inner_text()
            cell = page.locator('#oxp-flame tbody tr[data-name="hot_function"] td.oxf-loc')
            line = cell.inner_text().rpartition(":")[2]
            assert cell.inner_text() == "prog.py:" + line and int(line) > 0
            assert cell.get_attribute("title") == "%s:%s" % (script, line)
            page.locator('#oxp-flame svg rect[data-name="hot_function"]').hover()
            assert page.inner_text(".oxf-tip-loc") == "%s:4" % script
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "cli_html_export.png"))
            assert errors == [] and dialogs == []
        finally:
            browser.close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_cli_html_report_runs_only_its_own_scripts(tmp_path: Path) -> None:
    """The report's Content-Security-Policy allows its own script and style
    elements by a per-report nonce, not 'unsafe-inline': markup injected into
    the file (by anything that could) does not run."""
    import re
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    out = tmp_path / "prog.html"
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "-o", str(out), str(script)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "unsafe-inline" not in csp
    nonce = re.search(r"script-src 'nonce-([A-Za-z0-9_-]{16,})'", csp).group(1)
    assert "style-src 'nonce-%s'" % nonce in csp
    assert html.count('nonce="%s"' % nonce) == 3  # the style sheet and the two scripts
    from ox_profile import web
    assert web.render_report(web.flame_data(_tiny_profile())).count(nonce) == 0  # one per report
    injected = tmp_path / "injected.html"
    injected.write_text(html.replace("</body>", '<script>document.title = "pwned";</script>'
                                                 '<style>.oxr-title { font-size: 77px; }</style></body>'))
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors, console = [], []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.goto(injected.as_uri())
            page.wait_for_selector("#oxp-flame svg rect")
            assert page.title() != "pwned"
            assert page.evaluate("getComputedStyle(document.querySelector('.oxr-title')).fontSize") == "20px"
            assert page.locator('#oxp-flame svg rect[data-name="hot_function"]').count() == 1
            refused = [m for m in console if "Content Security Policy" in m]
            assert len(refused) == 2, console  # the injected script and style, nothing of ours
            assert errors == []
        finally:
            browser.close()


def _tiny_profile():
    import ox_profile
    from ox_profile import _engine
    snap = _engine.Snapshot.from_raw([("f", "f", "m", "m.py", 1)], [(1, 1, "t")], [], [((0, 1),)],
                                     [(0, -1, 0, 3, 0, 0)])
    return ox_profile.Profile(snap, {})


IDLE_PROGRAM = textwrap.dedent("""
    import threading, time

    def hot_function():
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            pass

    def waiting_poller(stop):
        while not stop.is_set():
            time.sleep(0.01)

    stop = threading.Event()
    t = threading.Thread(target=waiting_poller, args=(stop,), name="poller")
    t.start()
    hot_function()
    stop.set()
    t.join()
""")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_idle_samples_switch_in_chromium(tmp_path: Path) -> None:
    """The report shows running threads by default; the "Idle samples" switch
    brings the waiting poller back, in every view, and takes it away again."""
    script = tmp_path / "idle.py"
    script.write_text(IDLE_PROGRAM)
    out = tmp_path / "idle.html"
    proc = subprocess.run([sys.executable, "-m", "ox_profile", "run", "-o", str(out), str(script)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "samples of waiting threads" in proc.stderr  # the table said what it left out
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(out.as_uri())
            page.wait_for_selector("#oxp-flame svg rect")
            import re

            def poller_samples() -> int:
                # "poller (ident) — N samples" in the view list (absent: none shown).
                texts = page.locator("select.oxf-view option").all_inner_texts()
                found = [int(re.search(r"([\d,]+) samples", t).group(1).replace(",", ""))
                         for t in texts if t.startswith("poller")]
                return found[0] if found else 0

            state = page.evaluate("window.oxpReport.state()")
            assert state["view"] == "all" and state["idle"] is False
            texts = page.locator("select.oxf-view option").all_inner_texts()
            assert not any("idle included" in t for t in texts)
            waking = poller_samples()  # its ticks with a wake-up only
            assert "idle samples" in page.locator("body").inner_text()

            page.locator("input.oxf-idle-box").check()
            state = page.evaluate("window.oxpReport.state()")
            assert state["view"] == "all+idle" and state["idle"] is True
            texts = page.locator("select.oxf-view option").all_inner_texts()
            assert any(t.startswith("poller") and "idle included" in t for t in texts), texts
            assert poller_samples() > 3 * waking + 20  # mostly waiting

            page.locator("input.oxf-idle-box").uncheck()
            assert page.evaluate("window.oxpReport.state()")["view"] == "all"
            assert poller_samples() == waking
            assert errors == []
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "html-report-idle-switch.png"))
        finally:
            browser.close()
