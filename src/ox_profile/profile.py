"""The one profile object: what every exporter, the CLI and the web UI read.

A :class:`Profile` wraps an immutable engine snapshot (tables of functions,
threads, labels, stacks and hit counts copied out of the C database) plus the
sampler's statistics, and can be narrowed to some threads or labels with
:meth:`Profile.filter`.  Heavy work (aggregation, folding, flame trees, pprof
encoding) runs in C on the snapshot.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ox_profile import _engine, _validate
from ox_profile.paths import PathShortener

PathLike = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class Function:
    """A Python function (a code object), identified by all of its fields."""

    index: int
    name: str
    qualname: str
    module: str
    filename: str
    firstlineno: int
    #: ``filename`` relative to the ``sys.path`` entry the module came from
    #: (see :mod:`ox_profile.paths`); tables and pages show it.
    short_filename: str = dataclasses.field(default="", compare=False, repr=False)

    @property
    def seed_name(self) -> str:
        """The original ox_profile's name for it: ``function(module)``."""
        return "%s(%s)" % (self.name, self.module)

    @property
    def location(self) -> str:
        """``file:firstline``."""
        return "%s:%d" % (self.filename, self.firstlineno)

    @property
    def short_location(self) -> str:
        """``short_file:firstline``, with the readable file name."""
        return "%s:%d" % (self.short_filename or self.filename, self.firstlineno)

    @property
    def display_name(self) -> str:
        """``module.qualname``, or the qualname alone when there is no module."""
        if self.module and self.module not in ("?", ""):
            return "%s.%s" % (self.module, self.qualname)
        return self.qualname

    def matches(self, regexp: "re.Pattern[str]") -> bool:
        """Whether ``regexp`` finds a match in the display name or the file."""
        return bool(regexp.search(self.display_name) or regexp.search(self.filename))


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame of a stack: a function and the line executing in it."""

    function: Function
    line: int


@dataclasses.dataclass(frozen=True)
class ThreadInfo:
    """A thread seen by the sampler (``process``: the index of its process
    in :attr:`Profile.processes`, -1 in a profile of one process)."""

    index: int
    ident: int
    native_id: int
    name: str
    hits: int
    process: int = -1


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """One process of a profile merged from several (a server's workers,
    the children of a program run by the command line).

    ``state``: running, paused, not started (alive, its sampler never
    started), exited (ended and published its last data) or lost (ended
    without that: killed; its data is what it published last).
    ``samples``: its samples in the merged profile; ``stats``: the
    statistics it published (Profiler.stats()); ``updated``: when it last
    published (epoch seconds); ``current``: the process that built the
    merged profile."""

    index: int
    pid: int
    start: int
    command: str
    state: str
    samples: int
    stats: Mapping[str, Any]
    updated: float
    current: bool = False

    @property
    def label(self) -> str:
        """``pid N: command line``."""
        return "pid %d: %s" % (self.pid, self.command) if self.command else "pid %d" % self.pid

    @property
    def alive(self) -> bool:
        """Whether the process was running when the profile was merged."""
        return self.state not in ("exited", "lost")


@dataclasses.dataclass(frozen=True)
class StackSample:
    """A distinct (thread, label, stack, idle) with its counts; frames root first.

    ``idle``: the thread had not run since the previous tick (wall mode) in
    these samples: it was waiting (a lock, I/O, sleep), not computing."""

    thread: ThreadInfo
    label: Optional[str]
    frames: Tuple[Frame, ...]
    hits: int
    gil_hits: int
    cpu_ns: int
    idle: bool = False


@dataclasses.dataclass(frozen=True)
class FunctionStat:
    """Hits of one function: self (it was the leaf) and total (it was on the
    stack, counted once per sample even when it recursed)."""

    function: Function
    self_hits: int
    total_hits: int
    self_share: float
    total_share: float
    hot_line: int

    @property
    def location(self) -> str:
        """``file:line`` of the line with most self hits (else the first line)."""
        return "%s:%d" % (self.function.filename, self.hot_line)

    @property
    def short_location(self) -> str:
        """:attr:`location` with the readable file name."""
        return "%s:%d" % (self.function.short_filename or self.function.filename, self.hot_line)


class Profile:
    """Samples collected by a profiler, with the statistics of the sampler.

    Build one with :meth:`ox_profile.Profiler.snapshot` (or the launcher's
    ``snapshot()``); never from the engine directly.  ``path_roots`` are the
    directories file names are shown relative to (default: ``sys.path`` and
    the working directory when the profile is made).
    """

    def __init__(
        self,
        snapshot: "_engine.Snapshot",
        stats: Optional[Mapping[str, Any]] = None,
        *,
        threads: Optional[Iterable[int]] = None,
        labels: Optional[Iterable[Optional[str]]] = None,
        include_idle: bool = True,
        processes: Optional[Sequence[ProcessInfo]] = None,
        path_roots: Optional[Sequence[str]] = None,
        _parent: Optional["Profile"] = None,
    ) -> None:
        self._snap = snapshot
        self.stats: Dict[str, Any] = dict(stats or {})
        self.mode: str = self.stats.get("mode", "wall")
        self.interval: float = float(self.stats.get("interval", 0.001))
        self.started_at: float = float(self.stats.get("started_at", time.time()))
        self.duration: float = float(self.stats.get("duration", 0.0))
        self._thread_filter = None if threads is None else frozenset(threads)
        self._label_filter = None if labels is None else frozenset(labels)
        #: Whether samples of idle threads (waiting, not running) are included.
        self.include_idle: bool = bool(include_idle)
        # top() of every function by sort order, once computed (a profile
        # never changes; the status page asks for it twice).
        self._top_all: Dict[str, List[FunctionStat]] = {}
        if _parent is not None:
            # A filtered view shares the parent's tables.
            self.functions: List[Function] = _parent.functions
            self.labels_table: List[str] = _parent.labels_table
            self._rows = _parent._rows
            self._raw_threads = _parent._raw_threads
            self._thread_process: List[int] = _parent._thread_process
            self.processes: List[ProcessInfo] = _parent.processes
            self.path_roots: Tuple[str, ...] = _parent.path_roots
        else:
            shorten = PathShortener(path_roots)
            self.path_roots = shorten.roots
            self.functions = [Function(i, f[0], f[1], f[2], f[3], f[4], short_filename=shorten(f[3], f[2]))
                              for i, f in enumerate(snapshot.functions)]
            self.labels_table = list(snapshot.labels)
            self._rows = None  # built on demand: a Python list of every row
            self._raw_threads = snapshot.threads
            #: The processes of a merged profile (empty for one process).
            self.processes = list(processes or ())
            self._thread_process = snapshot.thread_processes if self.processes else []
        thread_flags = label_flags = None
        if self._thread_filter is not None:
            thread_flags = bytes(1 if i in self._thread_filter else 0 for i in range(len(self._raw_threads)))
        if self._label_filter is not None:
            label_flags = bytes([1 if None in self._label_filter else 0] +
                                [1 if lab in self._label_filter else 0 for lab in self.labels_table])
        self._flags = (thread_flags, label_flags)
        mask, thread_hits, total, gil, cpu, label_hits, idle, hidden = snapshot.select(
            thread_flags, label_flags, -1 if self.include_idle else 0)
        self._mask: Optional[bytes] = mask
        self._label_hits: List[int] = label_hits  # [no label, label 0, label 1...]
        self.total_samples: int = total
        self.gil_samples: int = gil
        self.cpu_ns: int = cpu
        #: Samples in the selection whose thread was idle, and idle samples
        #: left out of it (``include_idle=False``).
        self.idle_samples: int = idle
        self.idle_hidden: int = hidden
        procs = self._thread_process
        self.threads: List[ThreadInfo] = [
            ThreadInfo(i, t[0], t[1], t[2] if t[2] is not None else "Thread-%d" % t[1], thread_hits[i],
                       procs[i] if procs else -1)
            for i, t in enumerate(self._raw_threads)
        ]

    def _all_rows(self) -> list:
        if self._rows is None:
            self._rows = self._snap.rows
        return self._rows

    # -- selection ---------------------------------------------------------

    def filter(
        self,
        threads: Optional[Iterable[Union[int, str]]] = None,
        labels: Optional[Iterable[Optional[str]]] = None,
        include_idle: Optional[bool] = None,
        processes: Optional[Iterable[int]] = None,
    ) -> "Profile":
        """A profile of only these threads (indexes, idents or names) and labels
        (``None`` selects samples taken outside any label); ``include_idle=False``
        leaves out the samples of threads that were waiting, not running
        (``None`` keeps this profile's choice); ``processes`` (pids) keeps the
        threads of those processes of a merged profile."""
        thread_idx = self._thread_filter
        if threads is not None:
            wanted = set(threads)
            thread_idx = frozenset(t.index for t in self.threads
                                   if t.index in wanted or t.ident in wanted or t.name in wanted)
            if self._thread_filter is not None:
                thread_idx &= self._thread_filter
        if processes is not None:
            pids = set(processes)
            chosen = {p.index for p in self.processes if p.pid in pids}
            of_processes = frozenset(t.index for t in self.threads if t.process in chosen)
            thread_idx = of_processes if thread_idx is None else thread_idx & of_processes
        label_set = self._label_filter
        if labels is not None:
            label_set = frozenset(labels) if label_set is None else frozenset(labels) & label_set
        idle = self.include_idle if include_idle is None else include_idle
        return Profile(self._snap, self.stats, threads=thread_idx, labels=label_set, include_idle=idle,
                       _parent=self)

    def process(self, pid: int) -> Optional[ProcessInfo]:
        """The process ``pid`` of a merged profile, or None."""
        return next((p for p in self.processes if p.pid == pid), None)

    @property
    def gil_share(self) -> Optional[float]:
        """Share of samples in which the sampled thread held the GIL (None when
        the backend cannot tell: the GIL-holding capture holds it itself)."""
        if self.stats.get("backend") == "gil" or not self.total_samples:
            return None
        return self.gil_samples / self.total_samples

    @functools.cached_property
    def labels(self) -> List[str]:
        """Labels (endpoint names and ``ox_profile.label`` values) seen."""
        return sorted(self.labels_table[i] for i, hits in enumerate(self._label_hits[1:]) if hits)

    def label_hits(self) -> Dict[str, int]:
        """Samples of the selection per label seen."""
        return {self.labels_table[i]: hits for i, hits in enumerate(self._label_hits[1:]) if hits}

    # -- results -----------------------------------------------------------

    def top(self, limit: Optional[int] = None, sort: str = "self",
            re_filter: Optional[str] = None) -> List[FunctionStat]:
        """Functions by self (or ``sort='total'``) hits, most first."""
        if sort not in ("self", "total"):
            raise ValueError("sort must be 'self' or 'total', not %r" % (sort,))
        _validate.limit(limit)
        regexp = _validate.regex(re_filter)
        if regexp is None and sort in self._top_all:
            return self._top_all[sort][:limit]
        if regexp is None:
            agg = self._snap.aggregate(self._mask, None, sort, -1 if limit is None else limit)
        else:
            funcs = self.functions
            agg = [row for row in self._snap.aggregate(self._mask, None, sort)
                   if funcs[row[0]].matches(regexp)]
            agg = agg if limit is None else agg[:limit]
        hot = self._snap.hot_lines(self._mask)
        total = self.total_samples or 1
        stats = [FunctionStat(self.functions[fid], self_hits, total_hits, self_hits / total, total_hits / total,
                              hot[fid] or self.functions[fid].firstlineno)
                 for fid, self_hits, total_hits in agg]
        if regexp is None and limit is None:
            self._top_all[sort] = stats
        return list(stats)

    def hot_lines(self) -> Dict[int, int]:
        """For each function with self hits, the line that had most of them."""
        return {fid: line for fid, line in enumerate(self._snap.hot_lines(self._mask)) if line}

    def line_hits(self) -> List[Tuple[Function, int, int]]:
        """(function, line, self hits) for every line that was a leaf."""
        return [(self.functions[f], line, h) for f, line, h in self._snap.line_hits(self._mask)]

    def grouped(self, groups: Sequence[int]) -> List[Tuple[int, int, int]]:
        """(group, self, total) where functions are merged by ``groups[function]``;
        a group is counted once per sample however often it is on the stack."""
        return self._snap.aggregate(self._mask, list(groups))

    def stacks(self) -> Iterator[StackSample]:
        """Every distinct (thread, label, stack) in the selection."""
        cache: Dict[int, Tuple[Frame, ...]] = {}
        for i, row in enumerate(self._all_rows()):
            if self._mask is not None and not self._mask[i]:
                continue
            thread, label, stack, hits, gil_hits, cpu_ns, idle = row
            frames = cache.get(stack)
            if frames is None:
                frames = tuple(Frame(self.functions[f], line)
                               for f, line in reversed(self._snap.stack(stack)))
                cache[stack] = frames
            yield StackSample(self.threads[thread], None if label < 0 else self.labels_table[label],
                              frames, hits, gil_hits, cpu_ns, idle)

    @property
    def distinct_stacks(self) -> int:
        """Number of distinct stacks recorded (all threads together)."""
        return self._snap.nstacks

    def frame_names(self, style: str = "qualname") -> List[str]:
        """One label per function for folded/flame output."""
        if style == "seed":
            return [f.seed_name for f in self.functions]
        return ["%s (%s)" % (f.display_name, f.short_location) for f in self.functions]

    def folded(self, names: Optional[Sequence[str]] = None, idle_frame: Optional[str] = "[idle]") -> str:
        """Brendan Gregg's folded stacks: ``root;...;leaf count`` per line.
        Samples of idle threads get ``idle_frame`` as an extra leaf (None: no
        marker, merged with the active ones)."""
        labels = list(names if names is not None else self.frame_names())
        if idle_frame is None or not self.idle_samples:
            return self._snap.folded(self._mask, labels)
        thread_flags, label_flags = self._flags
        active = self._snap.select(thread_flags, label_flags, 0)[0]
        idle = self._snap.select(thread_flags, label_flags, 1)[0]
        marked = "".join("%s;%s %s\n" % (path, idle_frame, count)
                         for path, _, count in (line.rpartition(" ")
                                                for line in self._snap.folded(idle, labels).splitlines()) if path)
        return self._snap.folded(active, labels) + marked

    def flame_tree(self) -> list:
        """The call tree as nested ``[function, total, self, children]`` lists
        (root function -1)."""
        return self._snap.flame(self._mask)

    def flame_json(self) -> str:
        """:meth:`flame_tree` as JSON text (built in C, for large trees)."""
        return self._snap.flame_json(self._mask)

    def flame_json_bounded(self, max_nodes: int) -> Tuple[str, int, int, int]:
        """(json, nodes, kept, cut_samples): :meth:`flame_json` cut to the
        ``max_nodes`` nodes with most samples (the root counts); ``nodes`` is
        the whole tree's size, ``cut_samples`` the samples of the subtrees
        left out (they show as their parents' unexplained width)."""
        return self._snap.flame_json_bounded(self._mask, int(max_nodes))

    def pprof_bytes(self) -> bytes:
        """The profile as an uncompressed pprof ``Profile`` protobuf message."""
        return self._snap.pprof(self._mask, {
            "mode": self.mode,
            "interval_ns": int(self.interval * 1e9),
            "time_nanos": int(self.started_at * 1e9),
            "duration_nanos": int(self.duration * 1e9),
        })

    def strip_root_frames(self, pattern: Union[str, Callable[[Function], bool]]) -> "Profile":
        """A profile whose stacks lose their root-most frames while those
        frames' functions match ``pattern`` (a regular expression on
        ``module.qualname`` or the file name, or a predicate on the
        :class:`Function`): e.g. the frames of the tool that ran the program.
        Samples with only such frames (the tool at work before or after the
        program) are left out."""
        if callable(pattern):
            flags = bytes(bool(pattern(f)) for f in self.functions)
        else:
            regexp = re.compile(pattern)
            flags = bytes(f.matches(regexp) for f in self.functions)
        return Profile(self._snap.strip_roots(flags), self.stats, threads=self._thread_filter,
                       labels=self._label_filter, include_idle=self.include_idle,
                       path_roots=self.path_roots, processes=self.processes)

    def thread_profile(self, index: int) -> "Profile":
        """The profile of the thread at ``index`` of :attr:`threads` alone
        (by index only: :meth:`filter` also matches idents and names)."""
        chosen = frozenset([index]) if self._thread_filter is None else frozenset([index]) & self._thread_filter
        return Profile(self._snap, self.stats, threads=chosen, labels=self._label_filter,
                       include_idle=self.include_idle, _parent=self)

    def thread_profiles(self) -> List[Tuple[ThreadInfo, "Profile"]]:
        """One profile per thread that has samples in the selection."""
        return [(t, self.thread_profile(t.index)) for t in self.threads if t.hits]

    # -- output ------------------------------------------------------------

    def render(self, format: str = "text", **options: Any) -> Union[str, bytes]:
        """The profile in one of the formats of :mod:`ox_profile.export`."""
        from ox_profile import export
        return export.render(self, format, **options)

    def save(self, path: PathLike, format: Optional[str] = None, **options: Any) -> str:
        """Write the profile to ``path``; the format defaults from the extension."""
        from ox_profile import export
        return export.save(self, path, format, **options)

    def _repr_html_(self) -> str:
        """The interactive flame graph, for Jupyter and other rich front ends:
        a self-contained page in an iframe (no network needed)."""
        from ox_profile.web import render_inline
        return render_inline(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """The top table, where a front end shows plain text (IPython)."""
        if cycle:
            printer.text(repr(self))
        else:
            from ox_profile.export import text
            printer.text(text.render(self, limit=15).rstrip("\n"))

    def __repr__(self) -> str:
        procs = ", %d processes" % len(self.processes) if self.processes else ""
        return "<Profile %d samples, %d functions, %d threads%s, mode=%s>" % (
            self.total_samples, len(self.functions), len(self.threads), procs, self.mode)
