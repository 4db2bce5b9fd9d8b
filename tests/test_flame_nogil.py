"""A flame tree of a full database is built without the GIL: a server's other
threads go on while a page of the profiler is being built; builds in several
threads, and in a process forked during one, share no state."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest

import ox_profile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "workloads"))
import fulldb  # noqa: E402


@pytest.fixture(scope="module")
def prof() -> ox_profile.Profile:
    """A profile of a database filled to its cap."""
    profiler = ox_profile.Profiler()
    fulldb.fill(profiler._database, fulldb.make_functions(), labels=600)
    return profiler.snapshot()


def test_other_threads_run_while_a_flame_tree_is_built(prof: ox_profile.Profile) -> None:
    expected = prof.flame_json_bounded(5000)
    progress = [0]
    stop = threading.Event()

    def spin() -> None:
        # Each round needs the GIL once, then sleeps without it: the rounds
        # made during a build are the build's moments without the GIL.
        while not stop.is_set():
            progress[0] += 1
            time.sleep(0.0005)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        during = []
        for _ in range(3):
            before = progress[0]
            got = prof.flame_json_bounded(5000)  # in C from here on
            during.append(progress[0] - before)
            assert got == expected
    finally:
        stop.set()
        spinner.join()
    # With the GIL held for the whole build (about 0.1-0.3 s here), the
    # spinner got one or two rounds in; without it, a round every 0.5 ms.
    assert max(during) > 10, during


def test_concurrent_builds_agree(prof: ox_profile.Profile) -> None:
    expected = json.loads(prof.flame_json())
    results: list = []

    def build() -> None:
        results.append(json.loads(prof.flame_json()))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == expected for r in results)
    assert prof.flame_tree()[1] == prof.total_samples


def test_a_process_forked_during_a_build_builds_too(prof: ox_profile.Profile) -> None:
    """A worker forked while another thread builds a tree (a pre-fork server
    whose master serves a page) can build trees of its own."""
    expected = prof.flame_json_bounded(2000)
    stop = threading.Event()

    def build() -> None:
        while not stop.is_set():
            prof.flame_json_bounded(2000)

    builder = threading.Thread(target=build, daemon=True)
    builder.start()
    try:
        for _ in range(5):
            time.sleep(0.03)  # somewhere inside a build
            pid = os.fork()
            if pid == 0:
                signal.alarm(20)  # a child stuck on a lock dies of SIGALRM
                os._exit(0 if prof.flame_json_bounded(2000) == expected else 3)
            _, status = os.waitpid(pid, 0)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        stop.set()
        builder.join()
