"""Tests of the offline flame graph component and the HTML report
(src/ox_profile/web): flame data built by hand, or from a real Profile over a
snapshot of plain tuples, and the page driven in Debian's headless Chromium
with Playwright."""

from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"


from ox_profile import web  # noqa: E402

# -- hand-built flame data ----------------------------------------------------

XSS_FUNC = "<script>alert(1)</script>"
XSS_MODULE = "</script><script>alert(2)</script>"
XSS_THREAD = "<img src=x onerror=alert(1)>"

FUNCS = [
    ["main", "app", "/srv/app/app.py", 1],                      # 0
    ["handle_request", "app.web", "/srv/app/web.py", 10],       # 1
    ["parse", "app.parser", "/srv/app/parser.py", 20],          # 2
    ["render", "app.web", "/srv/app/web.py", 40],               # 3
    ["db_query", "app.db", "/srv/app/db.py", 5],                # 4
    ["worker_loop", "app.worker", "/srv/app/worker.py", 7],     # 5
    [XSS_FUNC, XSS_MODULE, "/srv/</script>.py", 3],             # 6
]

#            fid total self children
ALL_TREE = [-1, 150, 0, [
    [0, 100, 0, [
        [1, 70, 5, [
            [2, 30, 10, [[2, 20, 20, []]]],      # parse -> parse (recursion)
            [3, 25, 25, []],
            [4, 10, 10, []],
        ]],
        [4, 30, 30, []],
    ]],
    [5, 40, 10, [[4, 30, 30, []]]],
    [6, 10, 10, []],
]]

MAIN_TREE = [-1, 100, 0, [ALL_TREE[3][0]]]
WORKER_TREE = [-1, 50, 0, [ALL_TREE[3][1], ALL_TREE[3][2]]]


def walk(tree: list):
    """(node, depth) for every node below the root, depth-first."""
    stack = [(child, 1) for child in reversed(tree[3])]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in reversed(node[3]))


def top_from_tree(tree: list) -> List[List[int]]:
    """[[fid, self, total, hot_line], ...] like Profile.top(): a function is
    counted once per sample even when it recurses."""
    self_hits: Dict[int, int] = {}
    total_hits: Dict[int, int] = {}
    on_path: Dict[int, int] = {}
    stack: List[Tuple[list, bool]] = [(child, True) for child in reversed(tree[3])]
    while stack:
        node, entering = stack.pop()
        fid = node[0]
        if not entering:
            on_path[fid] -= 1
            continue
        self_hits[fid] = self_hits.get(fid, 0) + node[2]
        if not on_path.get(fid):
            total_hits[fid] = total_hits.get(fid, 0) + node[1]
        on_path[fid] = on_path.get(fid, 0) + 1
        stack.append((node, False))
        stack.extend((child, True) for child in reversed(node[3]))
    rows = [[fid, self_hits.get(fid, 0), total, 0] for fid, total in total_hits.items()]
    rows.sort(key=lambda r: (-r[1], -r[2]))
    return rows


def matched_samples(tree: list, pred: Callable[[int], bool]) -> int:
    """Samples with at least one frame whose function satisfies ``pred``."""
    count = 0
    stack = list(tree[3])
    while stack:
        node = stack.pop()
        if pred(node[0]):
            count += node[1]
        else:
            stack.extend(node[3])
    return count


def with_hot_lines(top: List[List[int]], funcs: Sequence[Sequence[Any]]) -> List[List[int]]:
    return [[fid, s, t, funcs[fid][3] + (1 if s else 0)] for fid, s, t, _ in top]


def small_data() -> Dict[str, Any]:
    return {
        "meta": {"title": "Small <test> profile", "mode": "wall", "interval": 0.001,
                 "duration": 2.5, "total_samples": 150,
                 "stats": {"backend": "nogil", "rate_hz": 998.7, "samples": 150}},
        "functions": FUNCS,
        "views": [
            {"key": "all", "label": "All threads", "total": 150, "tree": ALL_TREE,
             "top": with_hot_lines(top_from_tree(ALL_TREE), FUNCS)},
            {"key": "thread:0", "label": "MainThread (140001)", "total": 100, "tree": MAIN_TREE,
             "top": with_hot_lines(top_from_tree(MAIN_TREE), FUNCS)},
            {"key": "thread:1", "label": "%s (140002)" % XSS_THREAD, "total": 50, "tree": WORKER_TREE,
             "top": with_hot_lines(top_from_tree(WORKER_TREE), FUNCS)},
        ],
    }


def random_data(n_nodes: int = 100_000, n_funcs: int = 3000, seed: int = 1234) -> Dict[str, Any]:
    """A random call tree with ``n_nodes`` nodes below the root."""
    rng = random.Random(seed)
    funcs = [["func_%d" % i, "pkg.mod%d" % (i % 97), "/srv/pkg/mod%d.py" % (i % 97), 1 + i % 500]
             for i in range(n_funcs)]
    nodes = [[-1, 0, 0, []]]
    parents = [-1]
    for i in range(1, n_nodes + 1):
        parent = i - 1 - rng.randrange(min(i, 8)) if rng.random() < 0.6 else rng.randrange(i)
        node = [rng.randrange(n_funcs), 0, 0, []]
        nodes[parent][3].append(node)
        nodes.append(node)
        parents.append(parent)
    for i in range(n_nodes, 0, -1):        # children have larger indexes
        node = nodes[i]
        node[2] = rng.randint(1, 5) if not node[3] else rng.randint(0, 2)
        node[1] += node[2]
        nodes[parents[i]][1] += node[1]
    tree = nodes[0]
    return {"meta": {"title": "random", "mode": "cpu", "interval": 0.001, "duration": 60.0,
                     "total_samples": tree[1]},
            "functions": funcs,
            "views": [{"key": "all", "label": "All threads", "total": tree[1], "tree": tree,
                       "top": top_from_tree(tree)}]}


def stacks_data(stacks: Sequence[Tuple[str, int]], title: str) -> Dict[str, Any]:
    """Flame data from ``"module:func;module:func;... count"`` stacks."""
    funcs: List[List[Any]] = []
    index: Dict[str, int] = {}
    tree = [-1, 0, 0, []]
    for stack, count in stacks:
        node = tree
        node[1] += count
        frames = stack.split(";")
        for depth, frame in enumerate(frames):
            module, _, name = frame.rpartition(":")
            if frame not in index:
                index[frame] = len(funcs)
                path = "/srv/%s.py" % module.replace(".", "/")
                funcs.append([name, module, path, 10 + 7 * len(funcs)])
            fid = index[frame]
            for child in node[3]:
                if child[0] == fid:
                    break
            else:
                child = [fid, 0, 0, []]
                node[3].append(child)
            child[1] += count
            if depth == len(frames) - 1:
                child[2] += count
            node = child
    total = tree[1]
    return {"meta": {"title": title, "mode": "wall", "interval": 0.001, "duration": total / 1000,
                     "total_samples": total,
                     "stats": {"backend": "nogil", "rate_hz": 997.3, "samples": total}},
            "functions": funcs,
            "views": [{"key": "all", "label": "All threads", "total": total, "tree": tree,
                       "top": with_hot_lines(top_from_tree(tree), funcs)}]}


DEMO_STACKS = [
    ("threading:_bootstrap;threading:run;socketserver:serve_forever;socketserver:_handle_request_noblock;"
     "werkzeug.serving:handle;flask.app:wsgi_app;flask.app:full_dispatch_request;flask.app:dispatch_request;"
     "shop.views:list_orders;shop.db:fetch_orders;sqlite3:execute", 420),
    ("threading:_bootstrap;threading:run;socketserver:serve_forever;socketserver:_handle_request_noblock;"
     "werkzeug.serving:handle;flask.app:wsgi_app;flask.app:full_dispatch_request;flask.app:dispatch_request;"
     "shop.views:list_orders;shop.render:render_template;jinja2.environment:render;jinja2.runtime:call", 260),
    ("threading:_bootstrap;threading:run;socketserver:serve_forever;socketserver:_handle_request_noblock;"
     "werkzeug.serving:handle;flask.app:wsgi_app;flask.app:full_dispatch_request;flask.app:dispatch_request;"
     "shop.views:list_orders;shop.render:render_template;json:dumps;json.encoder:iterencode", 90),
    ("threading:_bootstrap;threading:run;socketserver:serve_forever;socketserver:_handle_request_noblock;"
     "werkzeug.serving:handle;flask.app:wsgi_app;flask.app:full_dispatch_request;flask.app:dispatch_request;"
     "shop.views:checkout;shop.payment:charge_card;shop.payment:sign_request;hashlib:sha256", 180),
    ("threading:_bootstrap;threading:run;socketserver:serve_forever;socketserver:_handle_request_noblock;"
     "werkzeug.serving:handle;flask.app:wsgi_app;flask.app:full_dispatch_request;flask.app:dispatch_request;"
     "shop.views:checkout;shop.db:fetch_orders;sqlite3:execute", 140),
    ("threading:_bootstrap;threading:run;socketserver:serve_forever;socketserver:_handle_request_noblock;"
     "werkzeug.serving:handle;flask.app:wsgi_app;flask.app:full_dispatch_request;flask.app:preprocess_request;"
     "flask_login.utils:_get_user;shop.auth:load_user;shop.db:fetch_user;sqlite3:execute", 110),
    ("threading:_bootstrap;threading:run;socketserver:serve_forever;socketserver:_handle_request_noblock;"
     "werkzeug.serving:handle;werkzeug.serving:send_response;socket:sendall", 75),
    ("threading:_bootstrap;threading:run;socketserver:serve_forever;selectors:select", 240),
    ("threading:_bootstrap;threading:run;shop.jobs:worker;shop.jobs:resize_images;shop.images:thumbnail;"
     "PIL.Image:resize", 310),
    ("threading:_bootstrap;threading:run;shop.jobs:worker;shop.jobs:resize_images;shop.images:thumbnail;"
     "PIL.Image:save;zlib:compress", 150),
    ("threading:_bootstrap;threading:run;shop.jobs:worker;shop.jobs:send_emails;smtplib:sendmail;"
     "socket:sendall", 95),
    ("threading:_bootstrap;threading:run;shop.jobs:worker;queue:get;threading:wait", 160),
    ("__main__:<module>;shop.cli:main;shop.app:run;werkzeug.serving:run_simple;time:sleep", 120),
]


# -- tests without a browser ----------------------------------------------------


def test_assets_exist() -> None:
    for name in ("flamegraph.js", "flamegraph.css", "report.html"):
        assert len(web.asset(name)) > 100
    assert "window" in web.asset("flamegraph.js") and "OxFlame" in web.asset("flamegraph.js")
    for bad in ("../__init__.py", "/etc/passwd", "", "static/../x"):
        with pytest.raises((ValueError, OSError)):
            web.asset(bad)


def test_component_never_parses_data_as_markup() -> None:
    js = web.asset("flamegraph.js")
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                   "eval(", "new Function", "</script", "<!--"):
        assert banned not in js, banned
    assert "</style" not in web.asset("flamegraph.css")


def test_undecodable_names_still_render() -> None:
    data = small_data()
    data["functions"] = [list(f) for f in FUNCS] + [["bad\udcff", "m", "/tmp/\udcfe.py", 1]]
    data["meta"] = dict(data["meta"], title="t\udcff")
    out = web.render_report(data)
    out.encode("utf-8")
    assert extract_data(out)["functions"][-1][0] == "bad\udcff"


def extract_data(page_html: str) -> Any:
    m = re.search(r'<script type="application/json" id="oxp-data">(.*?)</script>', page_html, re.S)
    assert m, "no data script"
    return json.loads(m.group(1))


def test_report_self_contained_and_escaped() -> None:
    data = small_data()
    out = web.render_report(data)
    assert out.startswith("<!DOCTYPE html>")
    # Nothing loaded from elsewhere: no external scripts, styles, images or fonts.
    assert not re.search(r"<script[^>]+src=", out, re.I)
    assert not re.search(r"<link\b", out, re.I)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", out, re.I)
    assert not re.search(r"url\(", out, re.I)
    assert not re.search(r"@import", out, re.I)
    # The hostile names never appear as markup ...
    for bad in (XSS_FUNC, XSS_MODULE, XSS_THREAD, "<test>"):
        assert bad not in out
    # ... exactly our three script elements open and close.
    assert len(re.findall(r"<script\b", out, re.I)) == 3
    assert len(re.findall(r"</script", out, re.I)) == 3
    assert "\\u003cscript\\u003e" in out
    # The embedded JSON round-trips.
    assert extract_data(out) == json.loads(json.dumps(data))
    # Header: title (escaped) and the run's figures.
    assert "<title>Small &lt;test&gt; profile</title>" in out
    header = out.split('class="oxr-meta"', 1)[1].split("</header>", 1)[0]
    for text in ("wall", "1 ms", "2.50 s", "150", "998.7 Hz", "nogil"):
        assert text in header, (text, header)


def test_title_override_and_placeholders_not_reexpanded() -> None:
    data = small_data()
    out = web.render_report(data, title="{{DATA}} {{JS}} & <b>")
    assert "<title>{{DATA}} {{JS}} &amp; &lt;b&gt;</title>" in out
    assert extract_data(out)["meta"]["title"] == "{{DATA}} {{JS}} & <b>"
    assert data["meta"]["title"] == "Small <test> profile"       # input not modified


def test_dumps_handles_deep_trees_and_unsafe_chars() -> None:
    depth = 5000
    tree: list = [-1, 1, 0, []]
    node = tree
    for i in range(depth):
        child = [i % 7, 1, 1 if i == depth - 1 else 0, []]
        node[3].append(child)
        node = child
    text = web.dumps_for_script({"meta": {"title": "a\u2028b</script>"}, "functions": FUNCS,
                                 "views": [{"key": "all", "label": "x", "total": 1, "tree": tree,
                                            "top": []}]})
    assert "</script" not in text and "\u2028" not in text and "<" not in text
    assert text.count("[") == text.count("]")
    assert '"tree":[-1,1,0,[[0,1,0,[[1,1,0,' in text
    shallow = web.dumps_for_script(small_data())
    assert json.loads(shallow) == json.loads(json.dumps(small_data()))


# A stand-in for ox_profile.profile.Profile exposing its public interface.

def raw_profile(n_threads: int = 2, labels: Sequence[Optional[str]] = ("index", None)):
    """A real Profile over a snapshot built from plain tuples: per thread
    and label, one stack main -> handle_request -> (parse|render|db_query)."""
    from ox_profile import Profile, _engine
    functions = [(q.rpartition(".")[2], q, m, f, line) for q, m, f, line in FUNCS]
    threads = [(1000 + i, 2000 + i, "T<%d>" % i) for i in range(n_threads)]
    label_names = [lab for lab in labels if lab is not None]
    stacks: List[tuple] = []
    rows = []
    for t in range(n_threads):
        for j, lab in enumerate(labels):
            root_first = (0, 1, 2 + j % 3)
            stack = tuple((fid, FUNCS[fid][3]) for fid in reversed(root_first))  # leaf first
            if stack not in stacks:
                stacks.append(stack)
            label = -1 if lab is None else label_names.index(lab)
            rows.append((t, label, stacks.index(stack), 3 + t + j, 0, 0))
    snapshot = _engine.Snapshot.from_raw(functions, threads, label_names, stacks, rows)
    return Profile(snapshot, {"mode": "wall", "interval": 0.001, "duration": 1.5, "backend": "gil",
                              "rate_hz": 990.0, "dropped": {}})


def test_flame_data_from_profile_interface() -> None:
    prof = raw_profile(n_threads=2, labels=("index", "login", None))
    data = web.flame_data(prof, title="T")
    assert data["meta"]["title"] == "T"
    assert data["meta"]["mode"] == "wall"
    assert data["meta"]["total_samples"] == prof.total_samples
    assert data["meta"]["stats"]["backend"] == "gil"
    # the full path, and the file relative to where module app.parser was imported from
    assert data["functions"][2] == ["parse", "app.parser", "/srv/app/parser.py", 20, "app/parser.py"]
    keys = [v["key"] for v in data["views"]]
    assert keys == ["all", "thread:0", "thread:1", "label:index", "label:login"]
    labels = [v["label"] for v in data["views"]]
    assert labels[:3] == ["All threads", "T<0> (1000)", "T<1> (1001)"]
    assert labels[3:] == ["endpoint: index", "endpoint: login"]
    all_view = data["views"][0]
    tree = json.loads(all_view["tree"])  # built as JSON text by the engine
    assert all_view["total"] == prof.total_samples == tree[1]
    assert [c[0] for c in tree[3]] == [0] and [c[0] for c in tree[3][0][3]] == [1]
    assert sorted(c[0] for c in tree[3][0][3][0][3]) == [2, 3, 4]
    for fid, self_hits, total_hits, line in all_view["top"]:
        assert 0 <= fid < len(FUNCS) and self_hits <= total_hits and line == FUNCS[fid][3]
    assert data["views"][3]["total"] == sum(3 + t + 0 for t in range(2))
    # Also renders, and survives JSON.
    out = web.render_report(prof)
    assert extract_data(out)["views"][1]["label"] == "T<0> (1000)"
    assert "T<0>" not in out
    json.dumps(data, allow_nan=False)

    single = web.flame_data(prof, per_thread=False)
    assert [v["key"] for v in single["views"]] == ["all", "label:index", "label:login"]


def test_flame_data_caps_views() -> None:
    prof = raw_profile(n_threads=100, labels=["ep%02d" % i for i in range(100)])
    data = web.flame_data(prof)
    assert len(data["views"]) == web.MAX_VIEWS == 64
    assert data["views"][0]["key"] == "all"
    kinds = [v["key"].split(":")[0] for v in data["views"][1:]]
    assert 0 < kinds.count("thread") and 0 < kinds.count("label")
    assert kinds == sorted(kinds, key=lambda k: k != "thread")     # threads, then labels
    assert data["meta"]["views_omitted"] == 200 - 63
    few = web.flame_data(raw_profile(n_threads=100, labels=["a", "b"]))
    assert len(few["views"]) == 64 and [v["key"] for v in few["views"][-2:]] == ["label:a", "label:b"]


# -- browser tests ------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="Debian's chromium (%s) is not installed: "
                                           "apt-get install chromium" % CHROMIUM)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium (%s) is not installed" % CHROMIUM)
    from playwright.sync_api import sync_playwright  # the Makefile installs it
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


class Report:
    """A report page open in the browser, with its JS errors and dialogs."""

    def __init__(self, page, errors: List[str], dialogs: List[str]):
        self.page = page
        self.errors = errors
        self.dialogs = dialogs

    def rects(self, name: Optional[str] = None):
        sel = "#oxp-flame svg rect"
        if name is not None:
            sel += "[data-name=%s]" % json.dumps(name)
        return self.page.locator(sel)

    def svg_width(self) -> float:
        return float(self.page.locator("#oxp-flame svg").get_attribute("width"))

    def width(self, locator) -> float:
        return float(locator.get_attribute("width"))

    def table_names(self) -> List[str]:
        return self.page.locator("#oxp-flame tbody tr").evaluate_all(
            "rows => rows.map(r => r.getAttribute('data-name'))")


@pytest.fixture
def open_report(browser, tmp_path):
    pages = []

    def opener(data: Dict[str, Any], name: str = "report.html", width: int = 1280) -> Report:
        path = tmp_path / name
        path.write_text(web.render_report(data), encoding="utf-8")
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.set_default_timeout(30_000)
        errors: List[str] = []
        dialogs: List[str] = []
        page.on("pageerror", lambda exc: errors.append("pageerror: %s" % exc))
        page.on("console", lambda msg: errors.append("console %s: %s" % (msg.type, msg.text))
                if msg.type in ("error", "assert") else None)

        def on_dialog(dialog):
            dialogs.append("%s: %s" % (dialog.type, dialog.message))
            dialog.dismiss()
        page.on("dialog", on_dialog)
        page.goto(path.as_uri())
        page.wait_for_selector("#oxp-flame svg rect")
        report = Report(page, errors, dialogs)
        pages.append(report)
        return report

    yield opener
    for report in pages:
        try:
            assert report.dialogs == [], "a dialog opened: %r" % report.dialogs
            assert report.errors == [], "JS errors: %r" % report.errors
        finally:
            report.page.close()


@needs_chromium
def test_renders_function_rects(open_report) -> None:
    r = open_report(small_data())
    for name in ("all", "main", "handle_request", "parse", "render", "db_query", "worker_loop", XSS_FUNC):
        assert r.rects(name).count() >= 1, name
    assert r.rects("parse").count() == 2              # recursion: two nodes
    assert r.rects("db_query").count() == 3
    W = r.svg_width()
    assert r.width(r.rects("all")) == pytest.approx(W, abs=1.5)
    assert r.width(r.rects("main")) == pytest.approx(W * 100 / 150, abs=1.5)
    main = r.rects("main")
    assert main.get_attribute("data-total") == "100" and main.get_attribute("data-self") == "0"
    # Icicle: the root on top, children below.
    assert float(r.rects("all").get_attribute("y")) < float(main.get_attribute("y"))
    # Each module has one colour, different modules (usually) different ones.
    fills = {r.rects(n).first.get_attribute("fill") for n in ("handle_request", "render")}
    assert len(fills) == 1
    assert r.page.locator(".oxf-status").text_content().startswith("150 samples")


@needs_chromium
def test_click_zooms_and_reset_restores(open_report) -> None:
    r = open_report(small_data())
    W = r.svg_width()
    handle = r.rects("handle_request")
    assert r.width(handle) < W * 0.6
    assert r.page.locator('rect[data-name="db_query"][data-depth="2"]').count() == 2   # sibling, cousin
    assert r.page.locator(".oxf-reset").is_disabled()
    handle.click()
    assert r.width(r.rects("handle_request")) == pytest.approx(W, abs=1.5)
    assert r.width(r.rects("main")) == pytest.approx(W, abs=1.5)         # ancestor: full width
    assert r.page.locator('rect[data-name="db_query"][data-depth="2"]').count() == 0
    assert r.rects("worker_loop").count() == 0
    assert r.width(r.rects("render")) == pytest.approx(W * 25 / 70, abs=1.5)
    crumbs = r.page.locator(".oxf-crumbs .oxf-crumb").all_text_contents()
    assert crumbs == ["all", "main", "handle_request"]
    assert r.page.evaluate("oxpReport.state().zoom") == ["main", "handle_request"]
    # Zoom deeper, then up again with the breadcrumb.
    r.page.locator('rect[data-name="parse"][data-depth="3"]').click()
    assert r.width(r.page.locator('rect[data-name="parse"][data-depth="3"]')) == pytest.approx(W, abs=1.5)
    assert r.rects("render").count() == 0
    r.page.locator(".oxf-crumbs button.oxf-crumb", has_text="main").click()
    assert r.width(r.rects("main")) == pytest.approx(W, abs=1.5)
    assert r.rects("worker_loop").count() == 0
    # Reset zoom.
    r.page.locator(".oxf-reset").click()
    assert r.width(r.rects("handle_request")) == pytest.approx(W * 70 / 150, abs=1.5)
    assert r.rects("worker_loop").count() == 1
    assert r.page.locator(".oxf-crumbs .oxf-crumb").all_text_contents() == ["all"]
    # The controller API, and Escape.
    assert r.page.evaluate("oxpReport.zoom(['main', 'handle_request', 'parse', 'parse'])") is True
    assert r.width(r.page.locator('rect[data-name="parse"][data-depth="4"]')) == pytest.approx(W, abs=1.5)
    assert r.page.evaluate("oxpReport.zoom('main;nope')") is False
    r.page.keyboard.press("Escape")
    assert r.page.evaluate("oxpReport.state().zoomNode") == 0


def expected_pct(tree: list, pred: Callable[[int], bool]) -> str:
    return "%.1f" % (100.0 * matched_samples(tree, pred) / tree[1])


@needs_chromium
def test_search_highlights_and_counts_samples_once(open_report) -> None:
    r = open_report(small_data())
    box = r.page.locator(".oxf-search")
    box.fill("PARSE")                                    # case-insensitive substring
    r.page.wait_for_function("() => document.querySelectorAll('.oxf-match').length > 0")
    assert r.page.locator("g.oxf-match rect").evaluate_all(
        "rs => rs.map(r => r.getAttribute('data-name'))") == ["parse", "parse"]
    # The nested parse is counted once: 30 of 150 samples.
    pct = expected_pct(ALL_TREE, lambda f: f == 2)
    assert pct == "20.0"
    assert r.page.locator(".oxf-matched").text_content() == "matched: %s%% of samples" % pct
    fills = set(r.page.locator("g.oxf-match rect").evaluate_all("rs => rs.map(r => r.getAttribute('fill'))"))
    assert len(fills) == 1 and fills.isdisjoint(
        {r.rects(n).first.get_attribute("fill") for n in ("main", "render", "db_query")})

    # /regex/: render and both kinds of db_query: 25 + 10 + 30 + 30 of 150.
    box.fill("/^(render|db_)/")
    box.press("Enter")
    pct = expected_pct(ALL_TREE, lambda f: FUNCS[f][0] in ("render", "db_query"))
    assert pct == "63.3"
    assert r.page.locator(".oxf-matched").text_content() == "matched: %s%% of samples" % pct
    assert sorted(r.page.locator("g.oxf-match rect").evaluate_all(
        "rs => rs.map(r => r.getAttribute('data-name'))")) == ["db_query"] * 3 + ["render"]

    # Nested matches through different functions: main contains everything else.
    res = r.page.evaluate("oxpReport.search('/main|handle/')")
    assert res["matched"] == 100 and res["total"] == 150
    assert r.page.locator(".oxf-matched").text_content() == "matched: 66.7% of samples"
    # By module name.
    r.page.evaluate("oxpReport.search('app.worker')")
    assert r.page.locator(".oxf-matched").text_content() == "matched: 26.7% of samples"

    # An invalid regex is reported, not thrown.
    box.fill("/([/")
    box.press("Enter")
    assert r.page.locator(".oxf-matched").text_content() == "invalid regex"
    assert r.page.locator("g.oxf-match").count() == 0
    box.fill("")
    box.press("Enter")
    assert r.page.locator(".oxf-matched").text_content() == ""
    assert r.page.locator("g.oxf-match").count() == 0


@needs_chromium
def test_search_filters_table_and_survives_zoom(open_report) -> None:
    r = open_report(small_data())
    assert len(r.table_names()) == len(FUNCS)
    r.page.locator(".oxf-search").fill("db")
    r.page.locator(".oxf-search").press("Enter")
    assert r.table_names() == ["db_query"]
    r.rects("handle_request").click()
    assert r.page.locator("g.oxf-match").count() == 1       # only the db_query under handle_request
    r.page.locator(".oxf-search").fill("nothing-like-this")
    r.page.locator(".oxf-search").press("Enter")
    assert r.table_names() == []
    assert "No function matches" in r.page.locator(".oxf-table-note").text_content()
    assert r.page.locator(".oxf-matched").text_content() == "matched: 0.0% of samples"


@needs_chromium
def test_hover_tooltip(open_report) -> None:
    r = open_report(small_data())
    tip = r.page.locator(".oxf-tip")
    assert not tip.is_visible()
    r.page.locator('rect[data-name="parse"][data-depth="3"]').hover()
    assert tip.is_visible()
    text = tip.inner_text()
    assert "parse" in text
    assert "app.parser" in text
    assert "/srv/app/parser.py:20" in text
    assert "total: 30 samples (20.0%)" in text
    assert "self: 10 samples (6.7%)" in text
    r.rects("worker_loop").hover()
    assert "/srv/app/worker.py:7" in tip.inner_text()
    r.page.mouse.move(5, 5)
    assert not tip.is_visible()


@needs_chromium
def test_view_select_switches_tree(open_report) -> None:
    r = open_report(small_data())
    options = r.page.locator(".oxf-view option").all_text_contents()
    assert options[0].startswith("All threads")
    assert options[2].startswith(XSS_THREAD + " (140002)")
    assert r.rects("main").count() == 1
    r.page.locator(".oxf-view").select_option("thread:1")
    assert r.rects("main").count() == 0
    assert r.rects("worker_loop").count() == 1
    assert r.width(r.rects("worker_loop")) == pytest.approx(r.svg_width() * 40 / 50, abs=1.5)
    assert r.rects("all").get_attribute("data-total") == "50"
    assert set(r.table_names()) == {"db_query", "worker_loop", XSS_FUNC}
    assert r.page.evaluate("oxpReport.state().view") == "thread:1"
    # The search is kept and recomputed for the new view: db_query is 30 of 50.
    r.page.evaluate("oxpReport.search('db_query')")
    assert r.page.locator(".oxf-matched").text_content() == "matched: 60.0% of samples"
    r.page.evaluate("oxpReport.setView('thread:0')")
    assert r.page.locator(".oxf-matched").text_content() == "matched: 40.0% of samples"
    assert r.page.locator(".oxf-view").input_value() == "thread:0"
    assert r.page.evaluate("oxpReport.setView('no such view')") is False


@needs_chromium
def test_orientation_toggle(open_report) -> None:
    r = open_report(small_data())
    y_root = float(r.rects("all").get_attribute("y"))
    y_main = float(r.rects("main").get_attribute("y"))
    assert y_root < y_main
    r.page.locator(".oxf-orient").click()
    assert float(r.rects("all").get_attribute("y")) > float(r.rects("main").get_attribute("y"))
    assert r.page.evaluate("oxpReport.state().orientation") == "flame"
    r.page.locator(".oxf-orient").click()
    assert float(r.rects("all").get_attribute("y")) == y_root


@needs_chromium
def test_top_table_sorts(open_report) -> None:
    r = open_report(small_data())
    top = {FUNCS[f][0]: (s, t) for f, s, t, _ in top_from_tree(ALL_TREE)}
    names = r.table_names()
    assert [top[n][0] for n in names] == sorted((top[n][0] for n in names), reverse=True)
    assert names[0] == "db_query"
    first = r.page.locator("#oxp-flame tbody tr").first.locator("td")
    assert first.all_text_contents()[:2] == ["46.7", "46.7"]
    assert first.nth(3).text_content() == "/srv/app/db.py:6"     # file:hot_line
    assert r.page.locator("th[data-key=self]").get_attribute("aria-sort") == "descending"

    r.page.locator("th[data-key=total]").click()
    names = r.table_names()
    assert names[0] == "main"
    assert [top[n][1] for n in names] == sorted((top[n][1] for n in names), reverse=True)
    assert r.page.locator("th[data-key=total]").get_attribute("aria-sort") == "descending"
    assert r.page.locator("th[data-key=self]").get_attribute("aria-sort") is None
    r.page.locator("th[data-key=total]").click()
    names = r.table_names()
    assert [top[n][1] for n in names] == sorted(top[n][1] for n in names)
    assert r.page.locator("th[data-key=total]").get_attribute("aria-sort") == "ascending"

    r.page.locator("th[data-key=name]").click()
    assert r.table_names() == sorted(top)
    r.page.locator("th[data-key=name]").click()
    assert r.table_names() == sorted(top, reverse=True)
    r.page.locator("th[data-key=loc]").click()
    locs = r.page.locator("#oxp-flame tbody td.oxf-loc").all_text_contents()
    assert locs[0].startswith("/srv/</script>.py:") and locs[-1].startswith("/srv/app/worker.py:")


@needs_chromium
def test_hostile_names_are_text(open_report) -> None:
    r = open_report(small_data())
    # Shown literally, everywhere.
    assert XSS_FUNC in r.table_names()
    cell = r.page.locator('#oxp-flame tbody tr[data-fid="6"]')
    assert cell.locator(".oxf-fn-name").text_content() == XSS_FUNC
    assert cell.locator(".oxf-fn-module").text_content() == XSS_MODULE
    r.rects(XSS_FUNC).hover()
    assert XSS_FUNC in r.page.locator(".oxf-tip").inner_text()
    assert r.page.locator(".oxf-view option").nth(2).text_content().startswith(XSS_THREAD)
    r.page.locator(".oxf-view").select_option("thread:1")
    r.rects(XSS_FUNC).click()
    assert r.page.locator(".oxf-crumb-current").text_content() == XSS_FUNC
    assert r.page.locator("h1").text_content() == "Small <test> profile"
    # ... and never became elements.
    assert r.page.locator("img").count() == 0
    assert r.page.locator("script").count() == 3
    assert r.page.locator("b, test").count() == 0
    assert r.dialogs == []


def save_screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@needs_chromium
def test_screenshot_of_a_realistic_report(open_report) -> None:
    data = stacks_data(DEMO_STACKS, "shop.wsgi \u2014 wall-clock profile")
    r = open_report(data, width=1400)
    r.page.locator(".oxf-search").fill("/fetch_|sqlite3/")
    r.page.locator(".oxf-search").press("Enter")
    total = data["views"][0]["total"]
    assert r.page.locator(".oxf-matched").text_content() == (
        "matched: %.1f%% of samples" % (100.0 * (420 + 140 + 110) / total))
    r.page.locator('rect[data-name="fetch_orders"]').first.hover()
    assert r.page.locator(".oxf-tip").is_visible()
    path = save_screenshot(r.page, "flamegraph.png")
    assert path.stat().st_size > 10_000


@needs_chromium
def test_large_tree_stays_responsive(open_report) -> None:
    data = random_data(100_000)
    total = data["views"][0]["total"]
    t0 = time.monotonic()
    r = open_report(data, name="large.html")
    load_s = time.monotonic() - t0
    assert load_s < 30, "100k-node report took %.1f s to show" % load_s
    n_rects = r.rects().count()
    assert 100 < n_rects < 60_000                         # tiny nodes are not drawn
    status = r.page.locator(".oxf-status").text_content()
    assert "100,000 nodes" in status and "hidden" in status
    # Timed operations inside the page.
    timings = r.page.evaluate("""() => {
        const t = {};
        let s = performance.now();
        const res = oxpReport.search('func_1');
        t.search = performance.now() - s;
        s = performance.now();
        oxpReport.search('/^func_(12|345)$/');
        t.regex = performance.now() - s;
        s = performance.now();
        oxpReport.setOrientation('flame');
        oxpReport.setOrientation('icicle');
        t.rerender = (performance.now() - s) / 2;
        s = performance.now();
        oxpReport.search('');
        oxpReport.reset();
        t.reset = performance.now() - s;
        t.matched = res.matched;
        return t;
    }""")
    for key in ("search", "regex", "rerender", "reset"):
        assert timings[key] < 5000, "%s took %.0f ms" % (key, timings[key])
    funcs = data["functions"]
    assert timings["matched"] == matched_samples(data["views"][0]["tree"],
                                                 lambda f: "func_1" in funcs[f][0])
    # Click a wide node below the root: it fills the width.
    rect = r.page.locator('#oxp-flame rect[data-depth="2"]').first
    name = rect.get_attribute("data-name")
    t1 = time.monotonic()
    rect.click()
    assert time.monotonic() - t1 < 10
    zoomed = r.page.locator('#oxp-flame rect[data-depth="2"]')
    assert zoomed.count() == 1 and zoomed.get_attribute("data-name") == name
    assert r.width(zoomed) == pytest.approx(r.svg_width(), abs=1.5)
    assert r.page.evaluate("oxpReport.state().total") == total


@needs_chromium
def test_very_deep_tree(open_report) -> None:
    depth = 3000
    tree: list = [-1, 10, 0, []]
    node = tree
    for i in range(depth):
        child = [i % len(FUNCS[:6]), 10, 10 if i == depth - 1 else 0, []]
        node[3].append(child)
        node = child
    data = {"meta": {"title": "deep"}, "functions": FUNCS,
            "views": [{"key": "all", "label": "All threads", "total": 10, "tree": tree,
                       "top": top_from_tree(tree)}]}
    r = open_report(data, name="deep.html")
    assert r.page.locator('#oxp-flame rect[data-depth="%d"]' % depth).count() == 1
    r.page.evaluate("oxpReport.search('parse')")
    assert r.page.locator(".oxf-matched").text_content() == "matched: 100.0% of samples"


@needs_chromium
def test_empty_view(open_report) -> None:
    data = {"meta": {"title": "empty"}, "functions": [],
            "views": [{"key": "all", "label": "All threads", "total": 0,
                       "tree": [-1, 0, 0, []], "top": []}]}
    r = open_report(data, name="empty.html")
    assert r.rects().count() == 1
    assert r.page.locator(".oxf-table-note").text_content() == "No samples."
