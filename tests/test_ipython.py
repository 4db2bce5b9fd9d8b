"""``%load_ext ox_profile`` and the ``%ox_profile`` / ``%%ox_profile`` magics in
a real IPython shell (in process, and the ``ipython`` terminal in a
subprocess), in a real Jupyter kernel executing a notebook (nbclient +
ipykernel), and the notebook's inline flame graph in headless Chromium with
every network request refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest

IPython = pytest.importorskip("IPython")

import ox_profile  # noqa: E402
from conftest import ipython_shell  # noqa: E402
from ox_profile import Profile  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

HOT = textwrap.dedent("""
    import threading, time

    def oxi_hot(seconds=0.3):
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n

    def oxi_side():
        end = time.perf_counter() + 0.2
        while time.perf_counter() < end:
            sum(range(50))
""")


@pytest.fixture(scope="module")
def shell() -> Any:
    ip = ipython_shell()
    assert ip.run_cell("%load_ext ox_profile").success
    assert ip.run_cell(HOT).success
    return ip


class Published:
    """What the shell displays (display_pub.publish), while in use."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.items: List[Dict[str, str]] = []

    def __enter__(self) -> "Published":
        self._orig = self.shell.display_pub.publish
        self.shell.display_pub.publish = lambda data, metadata=None, **kw: self.items.append(data)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shell.display_pub.publish = self._orig


def _table_rows(text: str) -> List[str]:
    return [line for line in text.splitlines() if re.match(r"^\s+\d+\.\d%", line)]


def test_load_ext_registers_the_magics(shell) -> None:
    magics = shell.magics_manager.magics
    assert "ox_profile" in magics["line"] and "ox_profile" in magics["cell"]


def test_cell_magic_shows_flame_graph_and_table(shell) -> None:
    # A thread that was there before the cell (as IPython's history thread
    # is): left out, as are the frames of IPython that ran the cell.
    assert shell.run_cell("oxi_stop = threading.Event()\n"
                          "oxi_idle = threading.Thread(target=oxi_stop.wait, name='oxi-idle')\n"
                          "oxi_idle.start()").success
    try:
        with Published(shell) as pub:
            result = shell.run_cell("%%ox_profile --top 4\n"
                                    "t = threading.Thread(target=oxi_side, name='oxi-side')\n"
                                    "t.start()\n"
                                    "oxi_hot()\n"
                                    "t.join()\n")
        assert result.success, result.error_in_exec
        assert len(pub.items) == 1
        text, page = pub.items[0]["text/plain"], pub.items[0]["text/html"]
        rows = _table_rows(text)
        assert len(rows) == 4, text
        assert rows[0].split()[4] == "__main__.oxi_hot", text
        assert "2 threads" in text.splitlines()[0], text  # the cell's and the one it started
        assert page.startswith('<iframe class="ox-profile-report"') and 'srcdoc="&lt;!DOCTYPE html&gt;' in page
        assert "oxi_hot" in page and "oxi-side" in page and "oxi-idle" not in page

        with Published(shell) as pub:
            assert shell.run_cell("%%ox_profile --all-threads\noxi_hot(0.2)\n").success
        assert "oxi-idle" in pub.items[0]["text/html"]
    finally:
        shell.run_cell("oxi_stop.set(); oxi_idle.join()")


def test_line_magic_returns_the_profile_with_r(shell) -> None:
    with Published(shell) as pub:
        assert shell.run_cell("oxi_p = %ox_profile -r --interval 0.0005 oxi_hot(0.25)").success
    assert pub.items == []  # returned, not shown
    profile = shell.user_ns["oxi_p"]
    assert isinstance(profile, Profile) and profile.interval == 0.0005
    # Only the statement's own frames: every stack starts at its <module>
    # (but for a sample or two that may land in the microseconds between
    # resuming the sampler and running the code, or back: the magic's own).
    roots: Dict[str, int] = {}
    for stack in profile.stacks():
        name = stack.frames[0].function.display_name
        roots[name] = roots.get(name, 0) + stack.hits
    assert roots.pop("__main__.<module>") > 100, roots
    assert all(name.startswith(("ox_profile.profiler.", "ox_profile.ipython.")) for name in roots), roots
    assert sum(roots.values()) <= 2, roots
    names = {s.function.qualname for s in profile.top()}
    assert "oxi_hot" in names and not [n for n in names if "run_cell" in n or "run_code" in n]
    # Shown as the Out value: HTML where the front end takes it (a kernel
    # enables the HTML formatter; a terminal does not), the top table as text.
    html_formatter = shell.display_formatter.formatters["text/html"]
    enabled, html_formatter.enabled = html_formatter.enabled, True
    try:
        data, _ = shell.display_formatter.format(profile)
    finally:
        html_formatter.enabled = enabled
    assert data["text/html"].startswith('<iframe class="ox-profile-report"')
    assert _table_rows(data["text/plain"])[0].split()[4] == "__main__.oxi_hot"
    # (the same document but for its per-render CSP nonce)
    def same(page: str) -> str:
        return re.sub(r"nonce(-|=&quot;)[\w-]+", "nonce", page)
    assert same(profile._repr_html_()) == same(data["text/html"])


def test_line_magic_displays_by_default_and_writes_output(shell, tmp_path: Path) -> None:
    out = tmp_path / "line.pb.gz"
    with Published(shell) as pub:
        assert shell.run_cell("%%ox_profile -o " + str(out) + "\noxi_hot(0.1)").success
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    assert len(pub.items) == 1
    with Published(shell) as pub:
        result = shell.run_cell("%ox_profile oxi_hot(0.1)")
    assert result.success and result.result is None and len(pub.items) == 1


def test_exception_in_the_cell_still_shows_the_profile(shell) -> None:
    with Published(shell) as pub:
        result = shell.run_cell("%%ox_profile\noxi_hot(0.15)\nraise ValueError('oxi boom')\n")
    assert isinstance(result.error_in_exec, ValueError) and str(result.error_in_exec) == "oxi boom"
    assert len(pub.items) == 1 and "oxi_hot" in pub.items[0]["text/plain"]


@pytest.mark.parametrize("line, message", [
    ("%ox_profile --interval 99 oxi_hot()", "--interval must be"),
    ("%ox_profile --top 0 oxi_hot()", "--top must be at least 1"),
    ("%ox_profile --mode fast oxi_hot()", "invalid choice: 'fast'"),
    ("%ox_profile --bogus oxi_hot()", "unknown option --bogus"),
    ("%ox_profile -o out.unknown oxi_hot()", "cannot tell the profile format"),
    ("%ox_profile", "nothing to profile"),
    ("%%ox_profile oxi_hot()\noxi_hot()", "options only on the %%ox_profile line"),
])
def test_bad_usage_is_one_clear_error(shell, capsys, line: str, message: str) -> None:
    result = shell.run_cell(line)
    assert not result.success
    err = capsys.readouterr()
    assert message in err.out + err.err, (err.out, err.err)
    assert "Traceback" not in err.out + err.err


def test_parse_line_keeps_the_statement_verbatim() -> None:
    from ox_profile.ipython import parse_line
    opts, stmt = parse_line("--interval=0.002 -t 3 -r  f(-1,  'a  -b')")
    assert (opts.interval, opts.top, opts.return_profile) == (0.002, 3, True)
    assert stmt == "f(-1,  'a  -b')"
    opts, stmt = parse_line("x = -y")
    assert stmt == "x = -y" and opts.interval == 0.001


def test_terminal_ipython_shows_the_table(tmp_path: Path) -> None:
    script = "\n".join(["%load_ext ox_profile", HOT.replace("\n\n", "\n"), "",
                        "%ox_profile --top 1 oxi_hot(0.3)", "exit", ""])
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"), TERM="dumb")
    proc = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
                           "--simple-prompt", "--HistoryManager.enabled=False"],
                          input=script, capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"ox_profile: \d+ samples, in \d+ ms, wall mode", proc.stdout), proc.stdout
    rows = _table_rows(proc.stdout)
    assert len(rows) == 1 and rows[0].split()[4] == "__main__.oxi_hot", proc.stdout
    assert "<iframe" not in proc.stdout


NOTEBOOK_CELLS = [
    "%load_ext ox_profile",
    HOT,
    "%%ox_profile --top 1\noxi_hot(0.4)",
    "oxi_p = %ox_profile -r oxi_hot(0.2)\noxi_p",
]


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A notebook executed by a real Jupyter kernel (ipykernel, through nbclient)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    workdir = tmp_path_factory.mktemp("nb")
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    nbformat.write(nb, str(workdir / "executed.ipynb"))
    return nb


def test_jupyter_kernel_runs_the_magics(notebook) -> None:
    cell = notebook.cells[2]
    shown = [o for o in cell.outputs if o.output_type == "display_data"]
    assert len(shown) == 1, cell.outputs
    text, page = shown[0].data["text/plain"], shown[0].data["text/html"]
    rows = _table_rows(text)
    assert len(rows) == 1 and rows[0].split()[4] == "__main__.oxi_hot", text
    assert "... 1 more functions" in text  # its <module>
    # The kernel's own threads (heartbeat, iopub, history, control) are left out.
    assert "1 thread," in text.splitlines()[0] or text.splitlines()[0].endswith("1 thread"), text
    assert page.startswith('<iframe class="ox-profile-report"')
    result = [o for o in notebook.cells[3].outputs if o.output_type == "execute_result"]
    assert len(result) == 1
    assert result[0].data["text/html"].startswith('<iframe class="ox-profile-report"')
    assert "__main__.oxi_hot" in result[0].data["text/plain"]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_notebook_flame_graph_in_chromium(notebook) -> None:
    page_html = [o for o in notebook.cells[2].outputs if o.output_type == "display_data"][0].data["text/html"]
    from playwright.sync_api import sync_playwright
    requests: List[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: List[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            def refuse(route: Any) -> None:
                requests.append(route.request.url)
                route.abort()
            page.route("**/*", refuse)
            # As a notebook front end puts it: inside a page of its own.
            page.set_content("<!DOCTYPE html><html><body><h1>notebook</h1><div class='output'>%s</div>"
                             "</body></html>" % page_html)
            frame = page.frame_locator("iframe.ox-profile-report")
            frame.locator('#oxp-flame svg rect[data-name="oxi_hot"]').first.wait_for()
            assert frame.locator('#oxp-flame svg rect[data-name="oxi_hot"]').count() >= 1
            assert "oxi_hot" in frame.locator("#oxp-flame tbody").inner_text()
            # Zoom works inside the frame; the page around it is untouched.
            frame.locator('#oxp-flame svg rect[data-name="oxi_hot"]').first.click()
            assert frame.locator(".oxf-crumb-current").inner_text() == "oxi_hot"
            assert page.locator("h1").inner_text() == "notebook"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "notebook_inline.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    assert requests == [], requests  # self-contained: nothing fetched
