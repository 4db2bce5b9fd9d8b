"""The example apps' endpoint work: each endpoint burns CPU in a function of
its own, so that a profile shows which endpoint spent what."""

import time


def spin(seconds: float) -> int:
    """Busy for ``seconds`` of wall time; how many rounds it made."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def crunch_numbers(seconds: float) -> int:
    return spin(seconds)


def render_report(seconds: float) -> int:
    return spin(seconds)


def search_index(seconds: float) -> int:
    return spin(seconds)
