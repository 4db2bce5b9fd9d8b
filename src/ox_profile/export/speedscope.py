"""speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json):
one "sampled" profile per thread, frames shared between them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from ox_profile._text import encodable

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.profile import Profile, ThreadInfo

extension = ".speedscope.json"
binary = False

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
UNITS = ("none", "nanoseconds")


def _scale(profile: "Profile", unit: str) -> int:
    if unit not in UNITS:
        raise ValueError("unit must be one of %s, not %r" % (", ".join(UNITS), unit))
    return max(int(round(profile.interval * 1e9)), 1) if unit == "nanoseconds" else 1


def _frames(profile: "Profile") -> List[Dict[str, Any]]:
    """One speedscope frame per function (frame index = function index), then
    the ``[idle]`` frame that idle samples end in."""
    return [{"name": f.display_name, "file": f.filename, "line": f.firstlineno}
            for f in profile.functions] + [{"name": "[idle]"}]


def _thread_stacks(profile: "Profile") -> Iterator[Tuple["ThreadInfo", List[str], List[int]]]:
    """(thread, stacks, hits) per thread with samples, each stack the root-first
    function indexes joined by ``;`` (lines within a function merge)."""
    index_names = [str(i) for i in range(len(profile.functions))]
    with_hits = [t for t in profile.threads if t.hits]
    # Folded stacks of each thread's profile, with function indexes as frame names.
    per_thread = [(with_hits[0], profile)] if len(with_hits) == 1 else profile.thread_profiles()
    for thread, sub in per_thread:
        paths: List[str] = []
        hits: List[int] = []
        for line in sub.folded(index_names, idle_frame=str(len(index_names))).splitlines():
            path, _, count = line.rpartition(" ")
            if path:
                paths.append(path)
                hits.append(int(count))
        if paths:
            yield thread, paths, hits


def _thread_name(thread: "ThreadInfo") -> str:
    return "%s (thread %d)" % (thread.name, thread.native_id)


def _default_name(profile: "Profile") -> str:
    return "ox_profile: %d samples, %s mode" % (profile.total_samples, profile.mode)


def to_dict(profile: "Profile", unit: str = "nanoseconds", name: Optional[str] = None) -> Dict[str, Any]:
    """The speedscope document of ``profile`` as a dict.

    ``unit="nanoseconds"`` weighs each stack by hits * sampling interval (wall
    time estimate); ``unit="none"`` by its hit count.  Frames are functions
    (``name``, ``file``, first ``line``); each sample lists frame indexes root
    first.  Threads without samples in the selection are left out.
    """
    scale = _scale(profile, unit)
    profiles = []
    for thread, paths, hits in _thread_stacks(profile):
        weights = [h * scale for h in hits]
        profiles.append({
            "type": "sampled",
            "name": _thread_name(thread),
            "unit": unit,
            "startValue": 0,
            "endValue": sum(weights),
            "samples": [[int(i) for i in path.split(";")] for path in paths],
            "weights": weights,
        })
    return {
        "$schema": SCHEMA_URL,
        "name": _default_name(profile) if name is None else encodable(name),
        "exporter": "ox_profile",
        "activeProfileIndex": 0,
        "shared": {"frames": _frames(profile)},
        "profiles": profiles,
    }


def render(profile: "Profile", unit: str = "nanoseconds", name: Optional[str] = None) -> str:
    """The speedscope JSON document of ``profile`` (the same document as
    :func:`to_dict`, serialised without building the sample lists in Python)."""
    scale = _scale(profile, unit)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    parts = []
    for thread, paths, hits in _thread_stacks(profile):
        weights = [h * scale for h in hits]
        parts.append(
            '{"type":"sampled","name":%s,"unit":%s,"startValue":0,"endValue":%d,'
            '"samples":[[%s]],"weights":[%s]}' % (
                dumps(_thread_name(thread)), dumps(unit), sum(weights),
                "],[".join(paths).replace(";", ","), ",".join(map(str, weights))))
    head = {
        "$schema": SCHEMA_URL,
        "name": _default_name(profile) if name is None else encodable(name),
        "exporter": "ox_profile",
        "activeProfileIndex": 0,
        "shared": {"frames": _frames(profile)},
    }
    return dumps(head)[:-1] + ',"profiles":[' + ",".join(parts) + "]}"
