"""The Flask blueprint under real pre-fork servers (gunicorn gthread with and
without --preload, uWSGI with 2 processes) on 127.0.0.1: one login, one
unpause, and every worker's answers show every worker, running, their samples
adding up; pause, interval and reset reach all; recycling (--max-requests)
loses nothing; a SIGKILL loses at most one publishing interval; corrupt
shared files are skipped and counted."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import stat
import time

import pytest

from servers import UWSGI, Client, DemoServer, whole_view_total

from ox_profile.shared.process import start_time

LOAD = ["/fast", "/slow_cpu?n=17", "/fast", "/slow_io"]


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.stop()


def _wait(predicate, timeout=10.0, period=0.1):
    """Poll ``predicate`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(period)


def _processes(doc):
    return {p["pid"]: p for p in doc["processes"]}


def _check_merged(doc, workers, state):
    """One status.json answer: every worker listed in ``state``, the merged
    count their sum, the answering worker among them and said to be."""
    procs = _processes(doc)
    assert set(workers) <= set(procs), (workers, procs)
    assert all(procs[pid]["state"] == state for pid in workers), [(p, procs[p]["state"]) for p in procs]
    assert doc["total_samples"] == sum(p["samples"] for p in doc["processes"])
    assert doc["answered_by"] in workers
    assert [p["pid"] for p in doc["processes"] if p["current"]] == [doc["answered_by"]]
    assert doc["shared"]["enabled"] and doc["shared"]["skipped"] == []


def _csv_counts(client, process=None):
    query = "?as_csv=1" + ("&process=%d" % process if process else "")
    rows = csv.DictReader(io.StringIO(client.get("/ox_profile/show_req_times" + query).decode()))
    return {row["endpoint"]: int(row["count"]) for row in rows}


def _one_profile_of_all_workers(server, expect_extra=0):
    client = server.client()
    workers = server.worker_pids()
    assert len(workers) == server.workers
    assert client.status("/ox_profile/unpause") == 200  # once, to one worker
    # Every worker follows within a poll interval (requests are timed from then on).
    assert _wait(lambda: all(_processes(d).get(p, {}).get("state") == "running" for d in
                             [client.json("/ox_profile/status.json?max_records=1")] for p in workers))
    sent = server.load(LOAD, 120)
    assert sent == 120
    time.sleep(1.5)  # every worker has published since
    answers = [client.json("/ox_profile/status.json?max_records=5") for _ in range(12)]
    for doc in answers:
        _check_merged(doc, workers, "running")
        assert len(doc["processes"]) == len(workers) + expect_extra
        assert all(p["samples"] > 0 for p in doc["processes"] if p["pid"] in workers)
        assert doc["state"]["state"] == "running"
    assert len({doc["answered_by"] for doc in answers}) >= 2, "one worker answered every time"
    # Narrowed to one process: its samples only.
    for pid in workers:
        doc = client.json("/ox_profile/status.json?max_records=5&process=%d" % pid)
        assert doc["selection"]["process"] == pid
        assert doc["total_samples"] == _processes(doc)[pid]["samples"] > 0
    assert client.status("/ox_profile/status.json?process=1") == 400
    # The endpoints served by every worker, counted once each.
    counts = _csv_counts(client)
    assert counts["fast"] == 60 and counts["slow_cpu"] == 30 and counts["slow_io"] == 30, counts
    # Per process they add up to the same.
    per_process = [_csv_counts(client, pid) for pid in workers]
    assert sum(c.get("fast", 0) for c in per_process) == 60
    return client, workers


def _controls_reach_every_worker(server, client, workers):
    client.post("/ox_profile/pause")
    paused = _wait(lambda: all(_processes(d)[p]["state"] == "paused" for d in
                               [client.json("/ox_profile/status.json?max_records=1")] for p in workers))
    assert paused, "pause did not reach every worker"
    for _ in range(6):
        doc = client.json("/ox_profile/status.json?max_records=1")
        _check_merged(doc, workers, "paused")
        assert doc["state"]["state"] == "paused"
    # Paused: the data stands still, so a download of any worker holds all of it.
    doc = client.json("/ox_profile/status.json?max_records=1")
    folded = client.get("/ox_profile/download/collapsed").decode()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in folded.splitlines() if line) == doc["total_samples"]
    flame = client.json("/ox_profile/flame.json")
    assert whole_view_total(flame) == doc["total_samples"]
    # The interval.
    client.post("/ox_profile/set_interval", {"interval": "0.002"})
    assert _wait(lambda: all(p["interval"] == 0.002 for p in
                             client.json("/ox_profile/status.json?max_records=1")["processes"]
                             if p["pid"] in workers and p["interval"] is not None))
    # Reset: every worker forgets its samples and timings.
    client.post("/ox_profile/reset")
    assert _wait(lambda: client.json("/ox_profile/status.json?max_records=1")["total_samples"] == 0)
    for _ in range(4):
        doc = client.json("/ox_profile/status.json?max_records=1")
        assert doc["total_samples"] == 0 and len(doc["processes"]) >= len(workers)
        assert "fast" not in _csv_counts(client)
    # Unpause again, from any worker: all of them sample.
    client.post("/ox_profile/unpause")
    assert _wait(lambda: all(_processes(d)[p]["state"] == "running" and _processes(d)[p]["samples"] > 0
                             for d in [client.json("/ox_profile/status.json?max_records=1")] for p in workers))


def test_gunicorn_gthread_workers_are_one_profile(tmp_path, servers):
    """Three gthread workers, the shared directory chosen automatically."""
    server = DemoServer("gunicorn", 3, tmp_path, shared_dir=None)
    servers.append(server)
    client, workers = _one_profile_of_all_workers(server)
    # The directory: private, named after the master, files private.
    doc = client.json("/ox_profile/status.json?max_records=1")
    directory = doc["shared"]["directory"]
    master = server.proc.pid
    assert os.path.basename(directory) == "%d-%d" % (master, start_time(master))
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    for name in os.listdir(directory):
        assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600, name
    assert {"p%d-%d.oxp" % (p, start_time(p)) for p in workers} <= set(os.listdir(directory))
    # The page says who answered and lists every worker.
    page = client.get("/ox_profile/status").decode()
    answered = re.search(r'id="oxp-answered">answered by pid (\d+)<', page)
    assert answered and int(answered.group(1)) in workers
    listed = {int(pid) for pid in re.findall(r'<tr class="oxp-process[^"]*" data-pid="(\d+)"', page)}
    assert listed == set(workers)
    _controls_reach_every_worker(server, client, workers)


@pytest.mark.parametrize("unpaused_in_master", [False, True])
def test_gunicorn_preload(tmp_path, servers, unpaused_in_master):
    """--preload: the app (and the blueprint) are created in the master
    before it forks; with the profiler unpaused there, the workers sample
    from the start, and unpausing again answers 200."""
    env = {"OX_DEMO_UNPAUSE": "1"} if unpaused_in_master else {}
    server = DemoServer("gunicorn", 3, tmp_path, preload=True, env=env)
    servers.append(server)
    if unpaused_in_master:
        client = server.client()
        workers = server.worker_pids()
        doc = _wait(lambda: (lambda d: d if all(p in _processes(d) and _processes(d)[p]["samples"] > 0
                                                 for p in workers) else None)(
            client.json("/ox_profile/status.json?max_records=1")))
        assert doc, "the workers did not start sampling by themselves"
        _check_merged(doc, workers, "running")
    # The master has the blueprint too: it is listed, and follows the controls.
    client, workers = _one_profile_of_all_workers(server, expect_extra=1)
    doc = client.json("/ox_profile/status.json?max_records=1")
    assert server.proc.pid in _processes(doc)
    _controls_reach_every_worker(server, client, workers)


@pytest.mark.skipif(not UWSGI.exists(), reason="uwsgi is not installed in the venv (make test installs it)")
def test_uwsgi_two_processes(tmp_path, servers):
    server = DemoServer("uwsgi", 2, tmp_path)
    servers.append(server)
    client, workers = _one_profile_of_all_workers(server)
    doc = client.json("/ox_profile/status.json?max_records=1")
    # uWSGI forks in C: the worker it forked still lists the first one's
    # threads, which it does not have; they are skipped, not sampled.
    assert not any("(pid %d)" % workers[1] in t["name"] and "alert" in t["name"] for t in doc["threads"])
    _controls_reach_every_worker(server, client, workers)


def test_recycled_workers_lose_nothing(tmp_path, servers):
    """--max-requests 50: every worker that is recycled publishes its last
    samples and timings as it exits; none of it is lost."""
    server = DemoServer("gunicorn", 2, tmp_path, threads=2, max_requests=50)
    servers.append(server)
    client = server.client()
    client.get("/ox_profile/unpause")
    first = set(server.worker_pids())
    assert _wait(lambda: all(_processes(d).get(p, {}).get("state") == "running" for d in
                             [client.json("/ox_profile/status.json?max_records=1")] for p in first))
    sent = server.load(["/fast", "/slow_cpu?n=15"], 240, concurrency=2)
    assert sent == 240
    time.sleep(2.0)
    doc = client.json("/ox_profile/status.json?max_records=1")
    exited = [p for p in doc["processes"] if p["state"] == "exited"]
    assert len(exited) >= 3 and {p["pid"] for p in exited} >= first - set(server.worker_pids())
    assert not [p for p in doc["processes"] if p["state"] == "lost"]
    for p in exited:
        # Everything its sampler took is in the merged profile.
        assert p["samples"] == p["stats_samples"] > 0, p
    assert doc["total_samples"] == sum(p["samples"] for p in doc["processes"])
    counts = _csv_counts(client)
    assert counts["fast"] == 120 and counts["slow_cpu"] == 120, counts
    assert sum(_csv_counts(client, p["pid"]).get("fast", 0) for p in doc["processes"]) == 120


def test_a_worker_killed_with_sigkill_loses_at_most_one_interval(tmp_path, servers):
    server = DemoServer("gunicorn", 2, tmp_path)
    servers.append(server)
    client = server.client()
    client.get("/ox_profile/unpause")
    server.load(LOAD, 40)
    victim = server.worker_pids()[0]
    time.sleep(1.3 + (os.getpid() % 10) / 10)  # some moment between two publications
    conn, doc = server.answered_by(victim, client, "/ox_profile/status.json?max_records=1")
    live = _processes(doc)[victim]
    assert live["current"] and live["state"] == "running"
    live_at = time.time()
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    conn.close()
    assert _wait(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2, 30)
    doc = _wait(lambda: (lambda d: d if _processes(d).get(victim, {}).get("state") == "lost" else None)(
        client.json("/ox_profile/status.json?max_records=1")), 30)
    assert doc, "the killed worker is not listed as lost"
    lost = _processes(doc)[victim]
    # Its data is what it published last: at most one interval (1 s) old.
    assert killed_at - lost["updated"] <= 1.0 + 0.5, killed_at - lost["updated"]
    stats = client.json("/ox_profile/status.json?max_records=1&process=%d" % victim)["stats"]
    rate = stats["samples"] / max(stats["duration"], 0.1)  # its samples per second
    assert lost["samples"] >= live["samples"] - rate * (killed_at - lost["updated"] + 0.5) - 10
    assert lost["samples"] <= live["samples"] + rate * (killed_at - live_at + 0.2) + 10
    assert doc["total_samples"] == sum(p["samples"] for p in doc["processes"])
    # Reset forgets it.
    client.post("/ox_profile/reset")
    assert _wait(lambda: victim not in _processes(client.json("/ox_profile/status.json?max_records=1")))


def test_corrupt_shared_files_are_skipped_and_counted(tmp_path, servers):
    server = DemoServer("gunicorn", 2, tmp_path)
    servers.append(server)
    client = server.client()
    client.get("/ox_profile/unpause")
    server.load(LOAD, 20)
    time.sleep(1.2)
    workers = server.worker_pids()
    real = [n for n in os.listdir(server.shared_dir) if n.startswith("p%d-" % workers[0])][0]
    data = (server.shared_dir / real).read_bytes()
    (server.shared_dir / "p999991-1.oxp").write_bytes(b"garbage" * 50)
    (server.shared_dir / "p999992-1.oxp").write_bytes(data[:len(data) // 2])
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 1
    (server.shared_dir / "p999993-1.oxp").write_bytes(bytes(bad))
    for _ in range(6):
        doc = client.json("/ox_profile/status.json?max_records=1")
        skipped = dict(doc["shared"]["skipped"])
        assert skipped == {"p999991-1.oxp": "not an ox_profile shared file", "p999992-1.oxp": "truncated",
                           "p999993-1.oxp": "checksum mismatch"}, skipped
        assert doc["stats"]["shared_skipped"] == 3
        assert set(_processes(doc)) == set(workers)
        assert doc["total_samples"] == sum(p["samples"] for p in doc["processes"])
    page = client.get("/ox_profile/status").decode()
    assert "3 shared files could not be merged" in page and "p999992-1.oxp" in page
