"""The bounded-time re_filter: moved to :mod:`ox_profile.ui.core.refilter`
(shared by every web integration); this name stays for existing imports."""

from ox_profile.ui.core.refilter import (DEFAULT_TIME_BUDGET, DEFAULT_WORK_BUDGET,  # noqa: F401
                                         MAX_DFA_STATES, MAX_PATTERN_LENGTH, MAX_STATES,
                                         FilterError, FilterTooCostly, SafeFilter)

__all__ = ["SafeFilter", "FilterError", "FilterTooCostly", "MAX_PATTERN_LENGTH"]
