"""A plain-text table of the functions with most samples ("top"), with a header
summarising the run (samples, duration, mode, achieved sampling rate, backend).
Control characters in function and file names are written as visible escapes
(``\\x1b``), so the table is safe to print on a terminal."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Union

from ox_profile import _validate
from ox_profile._text import visible

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.profile import Profile

extension = ".txt"
binary = False

# ANSI SGR sequences, used only with color=True.
_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_CYAN = "\x1b[36m"

#: Widest function column before names just overflow into the location column.
_MAX_NAME_WIDTH = 60


def _paint(text: str, code: str, color: bool) -> str:
    return code + text + _RESET if color and code else text


def _fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return "%.0f ms" % (seconds * 1e3)
    if seconds < 120:
        return "%.2f s" % seconds
    return "%dm%02ds" % divmod(int(round(seconds)), 60)


def header_lines(profile: "Profile", color: bool = False) -> List[str]:
    """The summary lines printed above the table."""
    stats: Mapping[str, Any] = profile.stats
    parts = ["%d samples" % profile.total_samples]
    duration = stats.get("duration", profile.duration)
    if duration:
        parts.append("in %s" % _fmt_duration(float(duration)))
    parts.append("%s mode" % (stats.get("mode") or profile.mode))
    interval = float(stats.get("interval") or profile.interval or 0)
    rate = stats.get("rate_hz")
    if rate:
        req = " of %.0f Hz requested" % (1.0 / interval) if interval > 0 else ""
        parts.append("%.1f Hz achieved%s" % (float(rate), req))
    elif interval > 0:
        parts.append("interval %g ms" % (interval * 1e3))
    if stats.get("backend"):
        parts.append("backend %s" % stats["backend"])
    nthreads = sum(1 for t in profile.threads if t.hits)
    parts.append("%d thread%s" % (nthreads, "" if nthreads == 1 else "s"))
    lines = [_paint("ox_profile: " + ", ".join(parts), _BOLD, color)]
    if stats.get("warning"):
        lines.append(_paint("warning: %s" % stats["warning"], _YELLOW, color))
    if profile.idle_hidden:
        lines.append(_paint("%d samples of waiting threads (idle: sleeping, blocked on a lock or I/O) left out; "
                            "--idle (idle=True) counts them" % profile.idle_hidden, _DIM, color))

    dropped = stats.get("dropped") or {}
    lost = sum(int(v) for v in dropped.values()) if isinstance(dropped, Mapping) else 0
    if lost:
        why = ", ".join("%s %d" % (k, v) for k, v in sorted(dropped.items()) if v)
        lines.append(_paint("warning: %d samples dropped (%s)" % (lost, why), _YELLOW, color))
    overflow = int(stats.get("overflow_samples") or 0)
    if overflow:
        lines.append(_paint("warning: %d samples over the memory cap were counted without "
                            "their stacks" % overflow, _YELLOW, color))
    lines.extend(process_lines(profile, color))
    return lines


#: Processes listed in the header of a merged profile.
MAX_PROCESS_LINES = 12


def process_lines(profile: "Profile", color: bool = False) -> List[str]:
    """For a profile merged from several processes: one line per process
    (pid, samples, state, command line), the most sampled first."""
    procs = list(getattr(profile, "processes", ()) or ())
    if len(procs) < 2:
        return []
    lines = [_paint("%d processes (thread names end with their pid):" % len(procs), _BOLD, color)]
    procs.sort(key=lambda p: (not p.current, -p.samples, p.pid))
    for proc in procs[:MAX_PROCESS_LINES]:
        lines.append("  pid %-7d %9d samples  %-8s %s" % (proc.pid, proc.samples, proc.state,
                                                           visible(proc.command)[:120]))
    if len(procs) > MAX_PROCESS_LINES:
        lines.append(_paint("  ... %d more processes" % (len(procs) - MAX_PROCESS_LINES), _DIM, color))
    return lines


def render(profile: "Profile", limit: Optional[int] = 50, sort: str = "self",
           color: bool = False, re_filter: Optional[str] = None,
           exclude: Union[str, "re.Pattern[str]", None] = None, idle: bool = False) -> str:
    """The top table of ``profile``: self %, total %, self hits, total hits, function
    and the ``file:line`` of its hottest line (the file relative to the
    ``sys.path`` entry it was imported from), most self (or ``sort="total"``) first.

    ``limit`` rows at most (``None``: every function); ``re_filter`` keeps
    functions whose name or file matches the regular expression, ``exclude``
    drops those that match this one (a string, or a compiled pattern); ``color`` adds ANSI colors (for terminals).
    Samples of waiting threads (idle) are left out, and their number said,
    unless ``idle``; shares are of the samples shown.
    """
    _validate.limit(limit)
    drop = _validate.regex(exclude, "exclude")
    profile = profile.filter(include_idle=bool(idle))
    lines = header_lines(profile, color)
    if profile.total_samples == 0:
        if profile.idle_hidden:
            lines.append("every sample is of a waiting thread: --idle (idle=True) shows them")
        else:
            lines.append("no samples were collected (did the program run long enough?)")
        return "\n".join(lines) + "\n"
    everything = profile.top(sort=sort, re_filter=re_filter)
    if drop is not None:
        everything = [s for s in everything if not s.function.matches(drop)]
    rows = everything if limit is None else everything[:limit]
    # Names come from the program: escape sequences in them are shown, not sent.
    names = [visible(s.function.display_name) for s in rows]
    width = min(max([len(n) for n in names] + [len("function")]), _MAX_NAME_WIDTH)
    head = "%7s %7s %8s %8s  %-*s  %s" % ("self%", "total%", "self", "total", width,
                                            "function", "file:line")
    lines.append(_paint(head, _BOLD, color))
    for stat, name in zip(rows, names):
        share = stat.self_share * 100
        self_pct = _paint("%6.1f%%" % share,
                          _RED if share >= 10 else _YELLOW if share >= 2 else "", color)
        location = "%s:%d" % (visible(stat.function.short_filename or stat.function.filename),
                              stat.hot_line)
        lines.append("%s %6.1f%% %8d %8d  %s  %s" % (
            self_pct, stat.total_share * 100, stat.self_hits, stat.total_hits,
            _paint(name.ljust(width), _CYAN, color), _paint(location, _DIM, color)))
    if len(everything) > len(rows):
        lines.append(_paint("... %d more functions" % (len(everything) - len(rows)), _DIM, color))
    return "\n".join(lines) + "\n"
