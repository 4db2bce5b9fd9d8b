"""Request timing per endpoint: moved to :mod:`ox_profile.ui.core.timing`
(shared by every web integration); this name stays for existing imports."""

from ox_profile.ui.core.timing import (CSV_FIELDS, MAX_SECONDS, MIN_SECONDS, NBUCKETS,  # noqa: F401
                                       NO_ENDPOINT, OTHER, RATIO, EndpointSummary, RequestTimings,
                                       TimingEntry, summaries_csv)

__all__ = ["RequestTimings", "EndpointSummary", "TimingEntry", "OTHER", "NO_ENDPOINT",
           "MIN_SECONDS", "MAX_SECONDS", "RATIO", "NBUCKETS", "CSV_FIELDS", "summaries_csv"]
