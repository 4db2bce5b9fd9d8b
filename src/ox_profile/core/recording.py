"""The original ox_profile's recorder and records, backed by the C database.

``query`` and ``show`` name functions ``function(module)`` as the original
did.  One difference, on purpose: a function that appears several times in
one stack (recursion) counts once per sample, not once per frame.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Dict, List, Optional, Tuple

from ox_profile import _engine, _validate
from ox_profile.profile import Profile

RE_FILTER_ALL_CHARACTERS = ".*"


class ProfileRecord:
    """How many samples had a function (or a stack path) on the stack."""

    def __init__(self, name: str, hits: int) -> None:
        self.name = name
        self.hits = hits

    def to_str(self) -> str:
        """``ProfileRecord(name=..., hits=...)``."""
        return "%s(%s=%s, %s=%s)" % (self.__class__.__name__, "name", self.name, "hits", self.hits)

    def __repr__(self) -> str:
        return self.to_str()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProfileRecord) and (self.name, self.hits) == (other.name, other.hits)

    __hash__ = None  # type: ignore[assignment]


class CountingRecorder:
    """Counts how often each function is on a sampled stack.

    Its data live in a C database (bounded by ``max_memory`` bytes) that the
    native sampler writes without the GIL.
    """

    def __init__(self, max_memory: Optional[int] = None) -> None:
        self._database = _engine.Database(max_memory)
        # Measurements given to record() by hand (the original API); the
        # sampler never uses this.
        self._manual: Dict[str, int] = collections.defaultdict(int)
        self.db_lock = threading.Lock()

    @property
    def database(self) -> "_engine.Database":
        """The C database behind this recorder."""
        return self._database

    def record(self, measurement: Any) -> None:
        """Count one measurement (anything with a ``name`` of ``;``-joined frames)."""
        name = getattr(measurement, "name", None)
        if not isinstance(name, str):
            raise TypeError("record() needs a measurement with a str name, not %r" % (measurement,))
        with self.db_lock:
            self._manual[name] += 1

    def capture_now(self, include_self: bool = True) -> None:
        """Record every thread's stack now (what ``Sampler.run()`` does)."""
        self._database.capture_now(include_self)

    def snapshot(self, stats: Optional[Dict[str, Any]] = None) -> Profile:
        """A :class:`~ox_profile.Profile` of what was recorded."""
        from ox_profile.profiler import name_threads
        name_threads(self._database)
        merged = dict(self._database.info())
        merged.update(stats or {})
        return Profile(self._database.snapshot(), merged)

    def clear(self) -> None:
        """Forget everything recorded."""
        self._database.clear()
        with self.db_lock:
            self._manual.clear()

    def query(self, re_filter: Optional[str] = RE_FILTER_ALL_CHARACTERS,
              max_records: Optional[int] = 10) -> Tuple[List[ProfileRecord], int]:
        """(records, count): functions named ``function(module)`` whose name
        matches ``re_filter``, most hits first, at most ``max_records`` (None:
        all); ``count`` is the number of distinct stacks recorded."""
        regexp = _validate.regex(re_filter)
        limit = _validate.max_records(max_records)
        profile = self.snapshot()
        group_of: Dict[str, int] = {}
        names: List[str] = []
        groups = []
        for func in profile.functions:
            name = func.seed_name
            if name not in group_of:
                group_of[name] = len(names)
                names.append(name)
            groups.append(group_of[name])
        hits: Dict[str, int] = collections.Counter()
        for group, _self, total in profile.grouped(groups):
            hits[names[group]] += total
        with self.db_lock:
            manual = dict(self._manual)
        for path, count in manual.items():
            for name in set(path.split(";")):
                hits[name] += count
        rows = [(name, n) for name, n in hits.items() if regexp is None or regexp.search(name)]
        rows.sort(key=lambda item: (-item[1], item[0]))
        if limit is not None:
            rows = rows[:limit]
        return [ProfileRecord(name, n) for name, n in rows], profile.distinct_stacks + len(manual)

    def show(self, limit: Optional[int] = 10, query: Optional[List[ProfileRecord]] = None,
             sep: str = "-", col: str = "|") -> str:
        """The original ox_profile's text table of ``query()``."""
        if query is None:
            query, num_records = self.query(max_records=100)
        else:
            num_records = len(query)
        total_hits = float(sum(item.hits for item in query)) or 1.0
        if limit:
            note = " (top %i/%i results)" % (min(limit, num_records), num_records)
            query = query[:limit]
        else:
            note = ""
        width = 40
        fmt = "%s {:%i} %s {:>8} %s {:>5} %s" % (col, width, col, col, col)
        header = fmt.format("Function", "Hits", "%")
        line_sep = ("\n  " + (sep * len(header)) + "\n  ") if sep else "\n"
        body = line_sep.join(fmt.format(i.name[:width], i.hits, "%.1f" % (100 * (i.hits / total_hits)))
                             for i in query)
        return ("Profiling results:%s\n%s" % (note, line_sep)) + header + line_sep + body + line_sep
