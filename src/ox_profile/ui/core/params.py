"""The parameters of the ox_profile pages, parsed and checked: anything
wrong raises :class:`BadParameter`, whose message the 400 answer shows."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Mapping, Optional, Tuple

from ox_profile import _validate
from ox_profile.ui.core.refilter import MAX_PATTERN_LENGTH, FilterError, SafeFilter

__all__ = ["BadParameter", "Selection", "parse_selection", "parse_interval", "parse_max_records",
           "parse_flag", "parse_process", "echo", "DEFAULT_MAX_RECORDS", "MAX_MAX_RECORDS",
           "MIN_INTERVAL", "MAX_INTERVAL", "MAX_ENDPOINT_LENGTH", "DOWNLOADS", "STATIC_FILES"]

#: Rows of the top-functions table when max_records is not given.
DEFAULT_MAX_RECORDS = 50
#: Largest max_records accepted.
MAX_MAX_RECORDS = 10000
#: Sampling interval bounds, in seconds: the engine's.
MIN_INTERVAL = _validate.MIN_INTERVAL
MAX_INTERVAL = _validate.MAX_INTERVAL
#: Longest endpoint name accepted as a selection.
MAX_ENDPOINT_LENGTH = 200

#: Download formats: name -> (exporter format, mimetype, file name).
DOWNLOADS: Dict[str, Tuple[str, str, str]] = {
    "collapsed": ("collapsed", "text/plain; charset=utf-8", "ox_profile.collapsed"),
    "speedscope": ("speedscope", "application/json", "ox_profile.speedscope.json"),
    "pprof": ("pprof", "application/octet-stream", "ox_profile.pb.gz"),
    "html": ("html", "text/html; charset=utf-8", "ox_profile.html"),
    "text": ("text", "text/plain; charset=utf-8", "ox_profile.txt"),
}

#: Static files served from ox_profile/web/static.
STATIC_FILES = frozenset({"flamegraph.js", "flamegraph.css"})

_INT_RE = re.compile(r"\s*[0-9]{1,9}\s*\Z")
_THREAD_KEY_RE = re.compile(r"\s*([0-9]{1,10}):([0-9]{1,20})\s*\Z")


class BadParameter(Exception):
    """A request parameter is invalid: answered with a 400 and its message."""


def echo(raw: str, limit: int = 40) -> str:
    """``raw`` quoted for an error message, cut to ``limit`` characters."""
    return repr(raw if len(raw) <= limit else raw[:limit] + "...")


def parse_interval(raw: Optional[str]) -> float:
    """A sampling interval in seconds from a request parameter."""
    if raw is None or not raw.strip():
        raise BadParameter("interval is required: the sampling interval in seconds, from %g to "
                           "%g (e.g. interval=0.001 samples at 1 kHz)." % (MIN_INTERVAL, MAX_INTERVAL))
    try:
        value = float(raw)
    except ValueError:
        raise BadParameter("interval must be a number of seconds, not %s." % echo(raw)) from None
    try:
        return _validate.interval(value)
    except ValueError:
        raise BadParameter("interval must be between %g and %g seconds, not %s."
                           % (MIN_INTERVAL, MAX_INTERVAL, echo(raw))) from None


def parse_max_records(raw: Optional[str]) -> int:
    """The number of top functions to show."""
    if raw is None:
        return DEFAULT_MAX_RECORDS
    if not _INT_RE.match(raw) or not 1 <= int(raw) <= MAX_MAX_RECORDS:
        raise BadParameter("max_records must be a whole number from 1 to %d, not %s."
                           % (MAX_MAX_RECORDS, echo(raw)))
    return int(raw)


def parse_flag(name: str, raw: Optional[str]) -> bool:
    """A 0/1 switch."""
    if raw is None or raw == "0" or raw == "":
        return False
    if raw == "1":
        return True
    raise BadParameter("%s must be 0 or 1, not %s." % (name, echo(raw)))


def parse_process(raw: Optional[str]) -> Optional[int]:
    """A process id (pid) from the list, or None when not given."""
    if not raw:
        return None
    if not _INT_RE.match(raw):
        raise BadParameter("process must be a process id (pid) from the list, not %s." % echo(raw))
    return int(raw)


@dataclasses.dataclass
class Selection:
    """What part of the profile a page shows.  ``thread`` is a number from
    the page's list or, stable across the workers of a server whose pages
    merge several processes, ``"<pid>:<native thread id>"``; ``process`` a
    pid of the server's list."""

    re_filter: str = ""
    max_records: int = DEFAULT_MAX_RECORDS
    thread: Optional[int] = None
    endpoint: Optional[str] = None
    matcher: Optional[SafeFilter] = None
    thread_key: Optional[Tuple[int, int]] = None
    process: Optional[int] = None
    idle: bool = False  # the top table counts samples of waiting threads too

    @property
    def thread_param(self) -> Optional[str]:
        """The ``thread`` argument as given."""
        if self.thread_key is not None:
            return "%d:%d" % self.thread_key
        return None if self.thread is None else str(self.thread)

    def query(self, **extra: Any) -> Dict[str, Any]:
        """The query arguments that reproduce this selection."""
        args: Dict[str, Any] = {}
        if self.re_filter:
            args["re_filter"] = self.re_filter
        if self.max_records != DEFAULT_MAX_RECORDS:
            args["max_records"] = self.max_records
        if self.thread_param is not None:
            args["thread"] = self.thread_param
        if self.endpoint is not None:
            args["endpoint"] = self.endpoint
        if self.process is not None:
            args["process"] = self.process
        if self.idle:
            args["idle"] = 1
        args.update(extra)
        return args

    def cache_key(self) -> Tuple[Any, ...]:
        """What distinguishes the pages of two selections."""
        return (self.re_filter, self.max_records, self.thread, self.thread_key, self.endpoint, self.process,
                self.idle)


def parse_selection(args: Mapping[str, str]) -> Selection:
    """The selection from query arguments (first value of each name)."""
    sel = Selection(max_records=parse_max_records(args.get("max_records")))
    re_filter = args.get("re_filter", "")
    if re_filter and re_filter != ".*":
        if len(re_filter) > MAX_PATTERN_LENGTH:
            raise BadParameter("re_filter must be at most %d characters long." % MAX_PATTERN_LENGTH)
        try:
            sel.matcher = SafeFilter(re_filter)
        except FilterError as exc:
            raise BadParameter(str(exc)) from None
        sel.re_filter = re_filter
    thread = args.get("thread", "")
    if thread:
        key = _THREAD_KEY_RE.match(thread)
        if key is not None:
            sel.thread_key = (int(key.group(1)), int(key.group(2)))
        elif _INT_RE.match(thread):
            sel.thread = int(thread)
        else:
            raise BadParameter("thread must be a thread number from the list (or PID:THREAD_ID), not %s."
                               % echo(thread))
    endpoint = args.get("endpoint", "")
    if endpoint:
        if len(endpoint) > MAX_ENDPOINT_LENGTH:
            raise BadParameter("endpoint must be at most %d characters long." % MAX_ENDPOINT_LENGTH)
        sel.endpoint = endpoint
    sel.process = parse_process(args.get("process", ""))
    sel.idle = parse_flag("idle", args.get("idle"))
    return sel
