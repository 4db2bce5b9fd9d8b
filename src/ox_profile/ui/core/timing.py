"""Request timing per endpoint in bounded memory.

Each endpoint keeps a count, a sum, a maximum, an error count and a
log-scale histogram with fixed buckets (1 µs to 100 s, each bucket 5% wider
than the previous one), so memory does not grow with the number of requests,
and percentiles are read from the histogram (within about 2.5%).  The number
of distinct endpoints is capped too: past the cap, new ones are counted under
:data:`OTHER`.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

__all__ = ["RequestTimings", "EndpointSummary", "TimingEntry", "OTHER", "NO_ENDPOINT", "CSV_FIELDS", "summaries_csv",
           "MIN_SECONDS", "MAX_SECONDS", "RATIO", "NBUCKETS"]

#: Lower edge of the first bucket; shorter durations go to bucket 0.
MIN_SECONDS = 1e-6
#: Upper edge of the last bucket; longer durations go to the last bucket.
MAX_SECONDS = 100.0
#: Width ratio of consecutive buckets (~5% resolution).
RATIO = 1.05
_LOG_RATIO = math.log(RATIO)
_INV_LOG_RATIO = 1.0 / _LOG_RATIO
_INV_MIN = 1.0 / MIN_SECONDS
_log = math.log
#: Number of buckets covering MIN_SECONDS..MAX_SECONDS.
NBUCKETS = int(math.ceil(math.log(MAX_SECONDS / MIN_SECONDS) / _LOG_RATIO))

#: Name under which endpoints beyond the cap are counted.
OTHER = "<other>"
#: Name for requests that matched no route (404s, 405s).
NO_ENDPOINT = "<no endpoint>"


class EndpointSummary(NamedTuple):
    """Timing summary of one endpoint (all durations in seconds)."""

    endpoint: str
    count: int
    total: float
    mean: float
    p50: float
    p95: float
    p99: float
    max: float
    errors: int


class _Histogram:
    """Count, sum, max, errors and bucket counts of one endpoint."""

    __slots__ = ("count", "total", "max", "errors", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.errors = 0
        self.buckets: Dict[int, int] = {}  # sparse: at most NBUCKETS keys

    def percentile(self, q: float) -> float:
        """The q-quantile (0 < q <= 1): geometric middle of the bucket that
        holds it, never above the maximum seen."""
        if not self.count:
            return 0.0
        rank = max(1, int(math.ceil(q * self.count)))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                middle = MIN_SECONDS * RATIO ** (index + 0.5)
                return min(middle, self.max)
        return self.max

    def summary(self, endpoint: str) -> EndpointSummary:
        mean = self.total / self.count if self.count else 0.0
        return EndpointSummary(endpoint, self.count, self.total, mean,
                               self.percentile(0.50), self.percentile(0.95),
                               self.percentile(0.99), self.max, self.errors)


#: One endpoint's histogram as plain values (RequestTimings.export).
TimingEntry = Tuple[str, int, float, float, int, List[Tuple[int, int]]]


class RequestTimings:
    """Thread-safe request durations per endpoint, bounded in memory.

    ``max_endpoints`` distinct names are kept; requests of further endpoints
    are counted under :data:`OTHER`.
    """

    def __init__(self, max_endpoints: int = 1000) -> None:
        if max_endpoints < 1:
            raise ValueError("max_endpoints must be >= 1")
        self.max_endpoints = max_endpoints
        self._lock = threading.Lock()
        self._data: Dict[str, _Histogram] = {}

    def record(self, endpoint: Optional[str], seconds: float, error: bool = False) -> None:
        """Count one request of ``endpoint`` that took ``seconds``.  (On every
        request's path: kept to one call, one lock and one logarithm.)"""
        if seconds > MIN_SECONDS:
            index = int(_log(seconds * _INV_MIN) * _INV_LOG_RATIO)
            if index >= NBUCKETS:
                index = NBUCKETS - 1
        else:
            index = 0
        with self._lock:
            hist = self._data.get(NO_ENDPOINT if endpoint is None else endpoint)
            if hist is None:
                hist = self._histogram_unlocked(endpoint)
            buckets = hist.buckets
            buckets[index] = buckets.get(index, 0) + 1
            hist.count += 1
            hist.total += seconds
            if seconds > hist.max:
                hist.max = seconds
            if error:
                hist.errors += 1

    def _histogram_unlocked(self, endpoint: Optional[str]) -> _Histogram:
        """The histogram for a name not in the table yet (caller holds the lock)."""
        name = NO_ENDPOINT if endpoint is None else endpoint
        hist = self._data.get(name)
        if hist is None:
            if len(self._data) >= self.max_endpoints:
                name = OTHER
                hist = self._data.get(name)
            if hist is None:
                hist = self._data[name] = _Histogram()
        return hist

    def clear(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            self._data.clear()

    def summaries(self) -> List[EndpointSummary]:
        """One summary per endpoint, slowest total time first."""
        with self._lock:
            result = [hist.summary(name) for name, hist in self._data.items()]
        result.sort(key=lambda s: (-s.total, s.endpoint))
        return result

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def count(self) -> int:
        """Requests recorded, every endpoint together."""
        with self._lock:
            return sum(hist.count for hist in self._data.values())

    def export(self) -> List[TimingEntry]:
        """Every endpoint's histogram as plain values, to publish for other
        processes: ``(endpoint, count, total, max, errors, [(bucket, n)...])``."""
        with self._lock:
            return [(name, h.count, h.total, h.max, h.errors, sorted(h.buckets.items()))
                    for name, h in self._data.items()]

    def add(self, entries: Iterable[TimingEntry]) -> None:
        """Add histograms exported by :meth:`export` (another process's) to
        these: counts and buckets add up, maxima combine.  Malformed entries
        and bucket indexes out of range are ignored."""
        with self._lock:
            for entry in entries:
                try:
                    name, count, total, top, errors, buckets = entry
                    name, count, errors = str(name), int(count), int(errors)
                    total, top = float(total), float(top)
                except (TypeError, ValueError):
                    continue
                hist = self._histogram_unlocked(name)
                hist.count += max(0, count)
                hist.total += total if math.isfinite(total) and total > 0 else 0.0
                if math.isfinite(top) and top > hist.max:
                    hist.max = top
                hist.errors += max(0, errors)
                for index, n in buckets:
                    if 0 <= int(index) < NBUCKETS and int(n) > 0:
                        hist.buckets[int(index)] = hist.buckets.get(int(index), 0) + int(n)


CSV_FIELDS = ("endpoint", "count", "mean_s", "p50_s", "p95_s", "p99_s", "max_s",
              "errors", "total_s")

_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: str) -> str:
    """A text cell that spreadsheets will not evaluate as a formula."""
    return "'" + value if value.startswith(_CSV_FORMULA_START) else value


def summaries_csv(summaries: Iterable[EndpointSummary]) -> str:
    """The summaries as CSV text (durations in seconds)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for s in summaries:
        writer.writerow([_csv_text(s.endpoint), s.count, "%.6f" % s.mean, "%.6f" % s.p50,
                         "%.6f" % s.p95, "%.6f" % s.p99, "%.6f" % s.max, s.errors,
                         "%.6f" % s.total])
    return out.getvalue()
