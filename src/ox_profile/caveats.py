"""What a profile cannot show, said in one sentence to the people reading it."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ox_profile import _engine

# Ticks a run needs before its achieved rate says anything.
_MIN_TICKS = 20

GIL_BLIND_SPOT = ("time inside C calls that hold the GIL (sorting a big list, a C extension's work) is charged "
                  "to whatever Python code runs next, and samples are taken only where the GIL changes hands")


def _how_to_get_nogil() -> str:
    info = _engine.BUILD_INFO
    if info.get("nogil_available"):
        return ("the GIL-free capture is available here: leave the backend on automatic (no backend='gil', "
                "no --backend gil, no OX_PROFILE_BACKEND=gil)")
    note = str(info.get("nogil_note") or "no GIL-free capture in this build")
    return ("the GIL-free capture is not available here (%s); it needs CPython 3.11, 3.12 or 3.13, the default "
            "build with its internal headers, and ox_profile built for it" % note)


def sampling_caveat(stats: Mapping[str, Any]) -> Optional[str]:
    """One sentence on what this run's samples miss, or None when nothing.

    Said when the GIL-holding backend took the samples, or when the sampler
    achieved under half the requested rate."""
    interval = float(stats.get("interval") or 0)
    rate = float(stats.get("rate_hz") or 0)
    requested = 1.0 / interval if interval > 0 else 0.0
    slow = requested > 0 and int(stats.get("ticks") or 0) >= _MIN_TICKS and 0 < rate < requested / 2
    achieved = "only %.0f Hz of the %.0f Hz requested were achieved" % (rate, requested)
    if stats.get("backend") == "gil":
        return "Sampled with the GIL-holding backend%s: %s; %s." % (
            " (%s)" % achieved if slow else "", GIL_BLIND_SPOT, _how_to_get_nogil())
    if slow:
        return ("%s%s: the sampler thread did not get enough CPU, so shares are noisier (not biased); "
                "ask for a longer interval, or give the process more CPU." % (achieved[0].upper(), achieved[1:]))
    return None
