"""Pages stay bounded when the profile database is full.

The blueprint's own database is filled to its 32 MiB cap with real captures
(bench/workloads/fulldb.py: 5,000 functions, 600 labels, random stacks 5-40
deep, plus 210 short-lived threads): every page, JSON answer and flame graph
must stay small and say what it left out, downloads must still hold every
sample, and concurrent builds must not multiply memory.  Times are measured
by bench/flask_pages.py, not here.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import threading
import tracemalloc

import pytest

import ox_profile
from ox_profile import _engine, web
from ox_profile.ui.flask import OX_PROF_BP, pagedata
from test_flask import P, client_as, make_app

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "workloads"))
import fulldb  # noqa: E402

MB = 1 << 20


@pytest.fixture(scope="module")
def full():
    """An app whose profiler database is full; its admin client."""
    OX_PROF_BP.pause()
    OX_PROF_BP.reset()
    database = OX_PROF_BP.launcher.profiler._database
    assert database.info()["memory_cap"] == 32 * MB
    release = threading.Event()
    idle = [threading.Thread(target=release.wait, name="idle-%03d" % i, daemon=True) for i in range(210)]
    for t in idle:
        t.start()
    try:
        database.capture_now()
    finally:
        release.set()
        for t in idle:
            t.join()
    info = fulldb.fill(database, fulldb.make_functions(), labels=600)
    assert info["overflow_samples"] > 0  # at the cap
    app = make_app()
    yield client_as(app, "admin")
    OX_PROF_BP.reset()


def _flame_data(page: str) -> dict:
    return json.loads(page.split('id="oxp-flame-data">', 1)[1].split("</script>", 1)[0])


def _count_nodes(tree) -> int:
    count, stack = 0, [tree]
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(node[3])
    return count


def test_status_page_and_json_answers_are_bounded(full):
    response = full.get(P + "/status")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert len(response.data) < 4 * MB, len(response.data)
    data = _flame_data(page)
    nodes = sum(_count_nodes(v["tree"]) for v in data["views"])
    assert nodes <= pagedata.PAGE_BUDGET.max_nodes
    assert len(data["views"]) <= pagedata.PAGE_BUDGET.max_views
    total = full.get(P + "/status.json").json["total_samples"]
    assert data["views"][0]["tree"][1] == total  # the root still counts every sample
    # The page says what was left out and how to see it.
    note = re.sub(r"\s+", " ", page.split('id="oxp-flame-cut">', 1)[1].split("</p>", 1)[0])
    assert "call-tree nodes" in note and "download" in note and "thread or an endpoint" in note
    assert data["meta"]["nodes"] > data["meta"]["nodes_shown"]
    for route in ("/status.json", "/flame.json", "/status.json?max_records=10000"):
        answer = full.get(P + route)
        assert answer.status_code == 200 and len(answer.data) < 4 * MB, (route, len(answer.data))


def test_thread_and_endpoint_lists_are_bounded(full):
    status = full.get(P + "/status.json").json
    assert len(status["threads"]) <= pagedata.MAX_LISTED_THREADS and status["threads_omitted"] > 0
    assert len(status["endpoints"]) <= pagedata.MAX_LISTED_ENDPOINTS and status["endpoints_omitted"] > 0
    page = full.get(P + "/status").get_data(as_text=True)
    assert page.count('<option value="') <= 2 + pagedata.MAX_LISTED_THREADS + pagedata.MAX_LISTED_ENDPOINTS
    note = page.split('id="oxp-lists-cut">', 1)[1].split("</p>", 1)[0]
    assert "threads with fewer samples" in note and "endpoints with fewer samples" in note
    # One not listed can still be chosen by name.
    listed = set(status["endpoints"])
    hidden = next("/api/v1/resource_%03d" % i for i in range(600)
                  if "/api/v1/resource_%03d" % i not in listed)
    one = full.get(P + "/status.json", query_string={"endpoint": hidden}).json
    assert one["total_samples"] > 0 and hidden in one["endpoints"]


def test_downloads_hold_every_sample(full):
    total = full.get(P + "/status.json").json["total_samples"]
    folded = full.get(P + "/download/collapsed").get_data(as_text=True)
    assert sum(int(line.rsplit(" ", 1)[1]) for line in folded.splitlines()) == total
    speedscope = json.loads(full.get(P + "/download/speedscope").data)
    assert sum(len(p["weights"]) and sum(p["weights"]) for p in speedscope["profiles"]) > 0
    samples = sum(sum(p["weights"]) for p in speedscope["profiles"])
    interval_ns = int(full.get(P + "/status.json").json["stats"]["interval"] * 1e9)
    assert samples == total * interval_ns


def test_concurrent_builds_do_not_multiply_memory(full):
    """Six requests at once (different selections, so six builds) peak at about
    what one build takes, not six times that (tracemalloc sees the engine's
    allocations too)."""
    def peak(urls):
        clients = [client_as(make_app(), "admin") for _ in urls]
        tracemalloc.start()
        try:
            threads = [threading.Thread(target=c.get, args=(u,)) for c, u in zip(clients, urls)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    one = peak([P + "/status?max_records=61"])
    six = peak([P + "/status?max_records=%d" % (70 + i) for i in range(6)])
    print("peak traced memory: one build %.0f MiB, six concurrent %.0f MiB" % (one / MB, six / MB))
    assert six < 1.6 * one, (one, six)


# -- the engine's bounded call tree -------------------------------------------------------


def _reference_tree(profile) -> dict:
    """path of function indexes (root first) -> [total, self], from the stacks."""
    nodes = collections.defaultdict(lambda: [0, 0])
    for sample in profile.stacks():
        path = ()
        for frame in sample.frames:
            path += (frame.function.index,)
            nodes[path][0] += sample.hits
        if path:
            nodes[path][1] += sample.hits
    return nodes


def _paths(tree, prefix=()):
    out = {}
    stack = [(tree, prefix)]
    while stack:
        node, path = stack.pop()
        for child in node[3]:
            child_path = path + (child[0],)
            assert child_path not in out, "a function twice under one parent"
            out[child_path] = [child[1], child[2]]
            stack.append((child, child_path))
    return out


@pytest.fixture(scope="module")
def random_profile():
    database = _engine.Database(2 * MB)
    fulldb.fill(database, fulldb.make_functions(300), labels=20, seed=7)
    prof = ox_profile.Profiler(database=database)
    return prof.snapshot()


def test_call_tree_matches_the_stacks(random_profile):
    reference = _reference_tree(random_profile)
    tree = json.loads(random_profile.flame_json())
    assert tree[1] == random_profile.total_samples
    assert _paths(tree) == {k: v for k, v in reference.items()}
    assert tree == random_profile.flame_tree()
    for lab in random_profile.labels[:3]:
        sub = random_profile.filter(labels=[lab])
        assert _paths(json.loads(sub.flame_json())) == dict(_reference_tree(sub))


@pytest.mark.parametrize("max_nodes", [1, 2, 50, 1000])
def test_bounded_call_tree_keeps_the_largest_nodes(random_profile, max_nodes):
    full_paths = _paths(json.loads(random_profile.flame_json()))
    text, nodes, kept, cut = random_profile.flame_json_bounded(max_nodes)
    tree = json.loads(text)
    shown = _paths(tree)
    assert nodes == len(full_paths) + 1 and kept == len(shown) + 1 == min(max_nodes, nodes)
    assert all(full_paths[p] == v for p, v in shown.items())  # exact counts, parents kept
    frontier = [p for p in full_paths if p not in shown and (len(p) == 1 or p[:-1] in shown)]
    assert cut == sum(full_paths[p][0] for p in frontier)
    if shown and frontier:
        assert min(v[0] for v in shown.values()) >= max(full_paths[p][0] for p in frontier)
    assert tree[1] == random_profile.total_samples


def test_page_budget_applies_to_web_flame_data(random_profile):
    budget = web.Budget(max_nodes=200, max_views=4, top_rows=5, used_functions_only=True)
    data = web.flame_data(random_profile, budget=budget)
    views = data["views"]
    assert len(views) <= 4 and all(len(v["top"]) <= 5 for v in views)
    assert sum(_count_nodes(json.loads(v["tree"])) for v in views) <= 200
    used = {i for i, f in enumerate(data["functions"]) if f is not None}
    shown = set()
    for v in views:
        shown.update(int(m) for m in re.findall(r"\[(\d+),", v["tree"]))
        shown.update(row[0] for row in v["top"])
    assert used == shown and len(data["functions"]) == len(random_profile.functions)
    assert data["meta"]["views_omitted"] > 0


from test_web import browser, needs_chromium, open_report  # noqa: E402,F401


@needs_chromium
def test_bounded_flame_data_draws_in_chromium(random_profile, open_report):  # noqa: F811
    data = web.flame_data(random_profile, budget=web.Budget(max_nodes=300, max_views=4, top_rows=50,
                                                            used_functions_only=True))
    assert any(f is None for f in data["functions"])
    report = open_report(data)
    drawn = report.rects().count()
    assert 0 < drawn <= 300
    assert report.width(report.rects("all")) == pytest.approx(report.svg_width(), abs=1.5)
    assert report.table_names()
