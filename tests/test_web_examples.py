"""The examples under their real servers: examples/fastapi_app.py under
uvicorn and examples/django_app under gunicorn, on 127.0.0.1.  A client is
refused, logs in, unpauses, loads three endpoints concurrently, and each
endpoint's CPU function is found under that endpoint's label (at least 95%
of its samples), with the requests timed per endpoint."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

from web_examples import DjangoServer, ExampleServer, FastAPIServer, load_concurrently

pytest.importorskip("uvicorn", reason="uvicorn is not installed")
pytest.importorskip("gunicorn", reason="gunicorn is not installed")

#: kind -> (server class, endpoint path -> (its label, its CPU function), anonymous status)
EXAMPLES = {
    "fastapi-uvicorn": (FastAPIServer, {"/numbers": ("/numbers", "crunch_numbers"),
                                        "/report": ("/report", "render_report"),
                                        "/search": ("/search", "search_index")}, 403),
    "django-gunicorn": (DjangoServer, {"/numbers": ("numbers", "crunch_numbers"),
                                       "/report": ("report", "render_report"),
                                       "/search": ("search", "search_index")}, 302),
}


@pytest.fixture(params=sorted(EXAMPLES))
def example(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple]:
    server_class, endpoints, anonymous = EXAMPLES[request.param]
    server = server_class(tmp_path).start()
    try:
        yield server, endpoints, anonymous
    finally:
        server.stop()


def _own_hits(server: ExampleServer, function: str, endpoint: str = "") -> int:
    query = {"re_filter": function, "max_records": "20"}
    if endpoint:
        query["endpoint"] = endpoint
    top = server.client.get("/ox_profile/status.json", params=query).json()["top"]
    return sum(row["total_hits"] for row in top if row["name"] == function)


def test_per_endpoint_split_under_the_real_server(example: tuple) -> None:
    server, endpoints, anonymous = example
    assert server.client.get("/ox_profile/status").status_code == anonymous
    server.login()
    status = server.client.get("/ox_profile/status.json").json()
    assert status["state"]["state"] == "not started"
    assert server.action("unpause").status_code in (302, 303)
    assert server.client.get("/ox_profile/status.json").json()["state"]["state"] == "running"

    paths = list(endpoints) * 30
    assert asyncio.run(load_concurrently(server.base, paths, concurrency=24)) == [200] * len(paths)
    assert server.action("pause").status_code in (302, 303)

    # Every endpoint's CPU function is found under its own endpoint's label.
    split: Dict[str, tuple] = {}
    for path, (label, function) in endpoints.items():
        everywhere = _own_hits(server, function)
        under_label = _own_hits(server, function, label)
        split[label] = (under_label, everywhere)
        assert everywhere >= 20, (label, everywhere, server.output())
        assert under_label >= 0.95 * everywhere, split
        for other_label, _ in (v for k, v in endpoints.items() if k != path):
            assert _own_hits(server, function, other_label) <= 0.05 * everywhere, (function, other_label)
    print("samples of each endpoint's function under its label / everywhere:", split)
    status = server.client.get("/ox_profile/status.json").json()
    assert {label for label, _ in endpoints.values()} <= set(status["endpoints"])

    # The request timing table has each endpoint with its 30 requests.
    rows = list(csv.DictReader(io.StringIO(server.client.get("/ox_profile/show_req_times?as_csv=1").text)))
    counts = {row["endpoint"]: int(row["count"]) for row in rows}
    for label, _ in endpoints.values():
        assert counts.get(label) == 30, counts
    page = server.client.get("/ox_profile/show_req_times").text
    assert all(label in page for label, _ in endpoints.values())


def test_django_workers_share_one_profile(tmp_path: Path) -> None:
    """Under gunicorn -w 2, one Unpause reaches both workers and any
    worker's page lists both processes, their samples merged."""
    server = DjangoServer(tmp_path)
    server.workers = 2
    server.start()
    try:
        server.login()
        assert server.action("unpause").status_code in (302, 303)
        deadline = time.monotonic() + 20
        while True:
            for _ in range(8):
                assert server.client.get("/numbers").status_code == 200
            status = server.client.get("/ox_profile/status.json").json()
            running = [p for p in status["processes"] if p["state"] == "running" and p["samples"] > 0]
            if len(running) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status["shared"]["enabled"], status["shared"]
        assert len(running) == 2, (status["processes"], server.output())
        assert "numbers" in status["endpoints"]
        assert server.action("pause").status_code in (302, 303)
    finally:
        server.stop()
