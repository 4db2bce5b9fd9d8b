"""What the blueprint's pages show, built within bounds and one at a time.

A full database (the 32 MiB default cap: ~100,000 distinct stacks) makes a
call tree of millions of nodes; drawn whole it was a 70 MB page that took
seconds, and each concurrent request built its own.  So:

* every page, JSON answer and flame graph is cut to :data:`PAGE_BUDGET`
  (call-tree nodes, views, table rows, functions named) and to at most
  :data:`MAX_LISTED_THREADS` threads and :data:`MAX_LISTED_ENDPOINTS`
  endpoints in its lists, and says what it left out (:class:`PageData`);
* builds go through a :class:`BuildGate`: one at a time, so concurrent
  requests queue instead of multiplying the memory a build takes; the last
  few results are reused while the data has not changed, and a request that
  queued behind a build of the same page takes its result even if samples
  came in meanwhile, so six requests at once make one build.  A request that
  waits longer than :data:`BUSY_TIMEOUT` gets a 503 (:class:`Busy`).

Downloads are not cut (they hold every sample) but go through their own gate.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple, TypeVar

from ox_profile import web

__all__ = ["PAGE_BUDGET", "MAX_LISTED_THREADS", "MAX_LISTED_ENDPOINTS", "BUSY_TIMEOUT",
           "Busy", "BuildGate", "PageData", "listed"]

#: The flame data of a page: about 1 MB of JSON at most, whatever the database.
PAGE_BUDGET = web.Budget(max_nodes=30_000, max_views=16, max_row_scans=250_000, top_rows=500,
                         used_functions_only=True)
#: Threads and endpoints listed in a page's selection form and in status.json.
MAX_LISTED_THREADS = 200
MAX_LISTED_ENDPOINTS = 500
#: Seconds a request waits for the build before it gets a 503.
BUSY_TIMEOUT = 30.0

T = TypeVar("T")


class Busy(Exception):
    """The builds queued before this request took longer than :data:`BUSY_TIMEOUT`."""


@dataclasses.dataclass
class PageData:
    """Everything the status page, status.json and flame.json show of one selection."""

    stats: Dict[str, Any]
    top: List[Any]                 # FunctionStat rows of the selection, max_records at most
    matched: int                   # functions matching re_filter
    total_functions: int
    total_samples: int
    threads: List[Any]             # ThreadInfo, by index; the most sampled first were kept
    threads_omitted: int
    endpoints: List[str]           # by name; the most sampled were kept
    endpoints_omitted: int
    flame_text: str                # flame data, JSON safe inside <script>
    flame_meta: Dict[str, Any]     # its "meta": what the flame graph left out
    # Several processes (a pre-fork server's workers) merged:
    processes: List[Any] = dataclasses.field(default_factory=list)  # ProcessInfo
    thread_values: Dict[int, str] = dataclasses.field(default_factory=dict)  # index -> "pid:native id"
    selected_thread: Optional[int] = None
    skipped: List[Any] = dataclasses.field(default_factory=list)  # [file, why] not merged
    # The top table: samples it counts (running threads only unless the
    # selection asks for idle ones) and the idle samples it left out.
    shown_samples: int = 0
    idle_hidden: int = 0


@dataclasses.dataclass
class _Entry:
    version: Tuple[Any, ...]
    built_at: float  # time.monotonic() when the build ended
    value: Any


class BuildGate:
    """One build at a time, and the last ``entries`` results.

    A result is reused for the same key when the data ``version`` is the same,
    or when only its last element (a sample count) grew and the result was
    built while the request waited for it.
    """

    def __init__(self, entries: int = 4, timeout: float = BUSY_TIMEOUT) -> None:
        self._lock = threading.Lock()  # held for the whole of a build
        self._entries: "collections.OrderedDict[Hashable, _Entry]" = collections.OrderedDict()  # under _lock
        self._max_entries = entries
        self.timeout = timeout

    @staticmethod
    def _fresh(entry: _Entry, version: Tuple[Any, ...], arrived: float) -> bool:
        if entry.version == version:
            return True
        grew = entry.version[:-1] == version[:-1] and version[-1] >= entry.version[-1]
        return grew and entry.built_at >= arrived

    def get(self, key: Hashable, version: Tuple[Any, ...], build: Callable[[], T]) -> T:
        """The result of ``build()`` for ``key`` at ``version``, built or reused."""
        arrived = time.monotonic()
        if not self._lock.acquire(timeout=self.timeout):
            raise Busy("ox_profile is still building other pages; try again in a moment.")
        try:
            entry = self._entries.get(key)
            if entry is not None and self._fresh(entry, version, arrived):
                self._entries.move_to_end(key)
                return entry.value
            value = build()
            if self._max_entries:
                self._entries[key] = _Entry(version, time.monotonic(), value)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
            return value
        finally:
            self._lock.release()

    def run(self, build: Callable[[], T]) -> T:
        """``build()``, alone (nothing kept)."""
        if not self._lock.acquire(timeout=self.timeout):
            raise Busy("ox_profile is still preparing other downloads; try again in a moment.")
        try:
            return build()
        finally:
            self._lock.release()

    def clear(self) -> None:
        """Forget the results kept."""
        with self._lock:
            self._entries.clear()


def listed(items: List[T], hits: Callable[[T], int], limit: int, keep: Optional[T] = None) -> Tuple[List[T], int]:
    """The ``limit`` items with most hits (and ``keep``), in their order; how many were left out."""
    if len(items) <= limit:
        return list(items), 0
    ranked = sorted(range(len(items)), key=lambda i: -hits(items[i]))[:limit]
    chosen = set(ranked)
    if keep is not None and keep in items:
        chosen.add(items.index(keep))
    return [items[i] for i in sorted(chosen)], len(items) - len(chosen)
