"""Labels follow asyncio tasks: many requests of three endpoints interleave
on one event loop thread, and each endpoint's samples carry its own label."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ox_profile
from conftest import BACKENDS, spin


def _burn(seconds: float) -> None:
    spin(seconds)


async def endpoint_alpha() -> None:
    for _ in range(6):
        _alpha_work()
        await asyncio.sleep(0)


async def endpoint_beta() -> None:
    for _ in range(6):
        _beta_work()
        await asyncio.sleep(0)


async def endpoint_gamma() -> None:
    for _ in range(6):
        _gamma_work()
        await asyncio.sleep(0.0005)


def _alpha_work() -> None:
    _burn(0.002)


def _beta_work() -> None:
    _burn(0.002)


def _gamma_work() -> None:
    _burn(0.002)


HANDLERS = {"alpha": endpoint_alpha, "beta": endpoint_beta, "gamma": endpoint_gamma}
OWN_WORK = {"alpha": "_alpha_work", "beta": "_beta_work", "gamma": "_gamma_work"}


async def handle(name: str) -> None:
    with ox_profile.label(name):
        await HANDLERS[name]()


async def serve(requests: int) -> None:
    names = list(HANDLERS)
    await asyncio.gather(*(handle(names[i % 3]) for i in range(requests)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_endpoints_work_carries_its_own_label(backend: str) -> None:
    with ox_profile.Profiler(interval=0.0005, backend=backend) as prof:
        asyncio.run(serve(100))
    profile = prof.snapshot().filter(threads=[threading.get_ident()])
    checked = 0
    for name, work in OWN_WORK.items():
        own = [s for s in profile.stacks() if work in [f.function.name for f in s.frames]]
        hits = sum(s.hits for s in own)
        right = sum(s.hits for s in own if s.label == name)
        if backend == "nogil":
            assert hits >= 50, (name, hits)
        if hits:
            assert right >= 0.95 * hits, (name, right, hits, {s.label for s in own})
            checked += 1
    assert checked >= (3 if backend == "nogil" else 1)
    # No label leaks out of the tasks onto the thread.
    assert ox_profile.get_label() is None


def test_a_task_label_is_the_tasks_and_a_thread_label_the_threads() -> None:
    seen = {}

    async def one(name: str, other_done: asyncio.Event, mine_set: asyncio.Event) -> None:
        with ox_profile.label(name):
            mine_set.set()
            await (other_done.wait() if name == "first" else asyncio.sleep(0))
            seen[name] = ox_profile.get_label()

    async def main() -> None:
        a_set, b_set, b_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(one("first", b_done, a_set))
        await a_set.wait()
        await one("second", asyncio.Event(), b_set)
        seen["between"] = ox_profile.get_label()  # the main task: no label
        b_done.set()
        await first

    ox_profile.set_label("thread-label")
    try:
        asyncio.run(main())
        assert ox_profile.get_label() == "thread-label"
    finally:
        ox_profile.set_label(None)
    assert seen == {"first": "first", "second": "second", "between": None}


def test_label_decorates_coroutine_functions() -> None:
    @ox_profile.label("decorated")
    async def work() -> str:
        await asyncio.sleep(0)
        return ox_profile.get_label()

    async def main() -> list:
        return await asyncio.gather(work(), work())

    assert asyncio.run(main()) == ["decorated", "decorated"]
    assert ox_profile.get_label() is None
