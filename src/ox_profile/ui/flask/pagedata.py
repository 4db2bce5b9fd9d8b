"""Bounded page builds: moved to :mod:`ox_profile.ui.core.pagedata` (shared
by every web integration); this name stays for existing imports."""

from ox_profile.ui.core.pagedata import (BUSY_TIMEOUT, MAX_LISTED_ENDPOINTS,  # noqa: F401
                                         MAX_LISTED_THREADS, PAGE_BUDGET, BuildGate, Busy,
                                         PageData, listed)

__all__ = ["PAGE_BUDGET", "MAX_LISTED_THREADS", "MAX_LISTED_ENDPOINTS", "BUSY_TIMEOUT",
           "Busy", "BuildGate", "PageData", "listed"]
