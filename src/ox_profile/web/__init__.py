"""The offline, interactive flame graph shared by the HTML exporter and the
Flask status page.

* :func:`asset` returns a static file (``flamegraph.js``, ``flamegraph.css``,
  ``report.html``) shipped with this package.
* :func:`flame_data` turns a :class:`ox_profile.profile.Profile` into the
  "Flame data" JSON structure of ``docs/contract.md``.
* :func:`render_report` produces one self-contained HTML document (no network
  access, no third-party code) from a profile or from flame data;
  :func:`render_inline` the same document in an ``<iframe srcdoc>``, for
  notebooks.

This module never imports the C engine: it only calls public methods of the
profile object it is given.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
import math
import os
import re
import secrets
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from ox_profile._text import encodable

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.profile import Profile

__all__ = ["asset", "flame_data", "render_report", "render_inline", "dumps_for_script", "MAX_VIEWS",
           "json_safe", "Budget", "COMPLETE"]

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: Most views (all threads + threads + labels) put into one flame data document.
MAX_VIEWS = 64

_ASSET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def asset(name: str) -> str:
    """The text of the static file ``name`` (e.g. ``"flamegraph.js"``)."""
    if not _ASSET_NAME.match(name):
        raise ValueError("invalid asset name: %r" % (name,))
    with open(os.path.join(STATIC_DIR, name), encoding="utf-8") as fh:
        return fh.read()


# -- flame data --------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """``value`` with only JSON types (non-finite floats become ``None``)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    return str(value)


# Rows of the top table per view: enough to read, bounded for huge profiles.
TOP_ROWS = 2000


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much of a profile one flame data document may hold.

    ``max_nodes`` bounds the call-tree nodes over all views (None: every
    node); a view cut to its share keeps its largest nodes, and the samples of
    the subtrees left out show as their parents' unexplained width.
    ``max_views`` bounds the views, and ``max_row_scans`` the work of building
    them (each view scans every row of the profile once): views beyond "All
    threads" are left out when ``rows * views`` would exceed it.  ``top_rows``
    bounds each view's table; with ``used_functions_only`` the functions
    table names only the functions the document shows (the others are null).
    """

    max_nodes: Optional[int] = None
    max_views: int = MAX_VIEWS
    max_row_scans: Optional[int] = None
    top_rows: int = TOP_ROWS
    used_functions_only: bool = False


#: The whole profile (the HTML export and downloads).
COMPLETE = Budget()

_FUNCTION_IN_TREE = re.compile(r"\[(\d+),")


def _view(key: str, label: str, profile: "Profile", budget: Budget,
          max_nodes: Optional[int]) -> Dict[str, Any]:
    total = int(profile.total_samples)
    view: Dict[str, Any] = {"key": key, "label": label, "total": total}
    # The tree as JSON text built by the engine: large trees are the bulk of
    # a report, and building them as Python lists first is slow.
    if not total:
        view["tree"] = [-1, total, 0, []]
    elif max_nodes is None:
        view["tree"] = TreeJSON(profile.flame_json())
    else:
        text, nodes, shown, cut = profile.flame_json_bounded(max_nodes)
        view["tree"] = TreeJSON(text)
        view["nodes"], view["nodes_shown"], view["samples_cut"] = nodes, shown, cut
    view["top"] = [[s.function.index, int(s.self_hits), int(s.total_hits), int(s.hot_line)]
                   for s in profile.top(limit=budget.top_rows)]
    return view


def _extra_views(profile: "Profile", per_thread: bool, budget: Budget) -> "tuple[list, list, int]":
    """The threads and labels that get a view of their own (most samples
    first, within the budget), and how many were left out."""
    threads = sorted((t for t in profile.threads if t.hits), key=lambda t: (-t.hits, t.index)) if per_thread else []
    if budget.max_row_scans is not None and len(threads) == 1:
        threads = []  # its view would be "All threads" again, at the same cost
    label_hits = profile.label_hits()
    labels = sorted(label_hits, key=lambda lab: (-label_hits[lab], lab))
    room = budget.max_views - 1
    if budget.max_row_scans is not None:
        rows = max(1, int(profile.stats.get("rows") or profile.distinct_stacks or 1))
        room = min(room, max(0, budget.max_row_scans // rows - 1))
    # Share the room between threads and labels; what one side does not use
    # goes to the other.
    n_threads = min(len(threads), max(room // 2, room - len(labels)))
    n_labels = min(len(labels), room - n_threads)
    omitted = len(threads) - n_threads + len(labels) - n_labels
    # Threads in their original order (first seen first), labels by name.
    return sorted(threads[:n_threads], key=lambda t: t.index), sorted(labels[:n_labels]), omitted


def flame_data(profile: "Profile", title: Optional[str] = None,
               per_thread: bool = True, budget: Budget = COMPLETE, idle_views: bool = True) -> Dict[str, Any]:
    """The "Flame data" dict of ``docs/contract.md`` for ``profile``: an
    "All threads" view, then one view per thread with samples (when
    ``per_thread``) and one per label, within ``budget`` (default: every
    node, at most :data:`MAX_VIEWS` views).  ``meta`` says what was left out.

    With ``idle_views`` the views hold the samples of running threads, and
    each view that has samples of waiting (idle) threads too gets a companion
    with them (key ``KEY+idle``, ``"idle_of": KEY``), which the page's "Idle
    samples" switch shows; without, the views are of ``profile`` as it is."""
    stats = json_safe(dict(profile.stats or {}))
    full = profile if profile.include_idle or not idle_views else profile.filter(include_idle=True)
    shown = profile.filter(include_idle=False) if idle_views else profile
    threads, labels, omitted = _extra_views(full, per_thread, budget)

    def spec(key: str, label: str,
             narrow: Callable[["Profile"], "Profile"]) -> Tuple[str, str, "Profile", Optional["Profile"]]:
        """(key, label, profile shown by default, companion with idle samples or None)."""
        with_idle = narrow(full) if idle_views else None
        return (key, label, narrow(shown), with_idle if with_idle is not None and with_idle.idle_samples else None)

    specs = [spec("all", "All threads", lambda p: p)]
    specs += [spec("thread:%d" % info.index, "%s (%d)" % (info.name, info.ident),
                   lambda p, i=info.index: p.thread_profile(i)) for info in threads]
    specs += [spec("label:%s" % lab, "endpoint: %s" % lab, lambda p, lab=lab: p.filter(labels=[lab]))
              for lab in labels]
    extra = len(specs) - 1 + sum(1 for spec in specs if spec[3] is not None)
    main_nodes = share = budget.max_nodes
    if budget.max_nodes is not None and extra:
        main_nodes = budget.max_nodes // 2
        share = max(1, (budget.max_nodes - main_nodes) // extra)
    views: List[Dict[str, Any]] = []
    for i, (key, label, view_profile, with_idle) in enumerate(specs):
        nodes = main_nodes if i == 0 else share
        if i == 0 or view_profile.total_samples:
            views.append(_view(key, label, view_profile, budget, nodes))
        if with_idle is not None:
            companion = _view(key + "+idle", label + ", idle included", with_idle, budget, share)
            companion["idle_of"] = key
            views.append(companion)

    if budget.used_functions_only:
        used = set()
        for view in views:
            used.update(int(m) for m in _FUNCTION_IN_TREE.findall(str(view["tree"])))
            used.update(row[0] for row in view["top"])
        functions: List[Any] = [[f.qualname, f.module, f.filename, int(f.firstlineno),
                                 f.short_filename or f.filename]
                                if f.index in used else None for f in profile.functions]
    else:
        functions = [[f.qualname, f.module, f.filename, int(f.firstlineno), f.short_filename or f.filename]
                     for f in profile.functions]

    started_at = stats.get("started_at") if isinstance(stats, dict) else None
    meta: Dict[str, Any] = {
        "title": encodable(title) if title is not None else "ox_profile",
        "mode": profile.mode,
        "interval": float(profile.interval),
        "duration": float(profile.duration),
        "total_samples": int(profile.total_samples),
        "started_at": started_at,
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "stats": stats,
        "views_omitted": omitted,
        # Samples of waiting threads not in the default views ("Idle samples" shows them).
        "idle_hidden": int(shown.idle_hidden) if idle_views else 0,
    }
    if budget.max_nodes is not None:
        meta["nodes"] = sum(int(v.get("nodes", 0)) for v in views)
        meta["nodes_shown"] = sum(int(v.get("nodes_shown", 0)) for v in views)
        main = views[0]
        meta["samples_cut"] = int(main.get("samples_cut", 0))
        meta["main_nodes"], meta["main_nodes_shown"] = main.get("nodes", 0), main.get("nodes_shown", 0)
    return {"meta": json_safe(meta), "functions": functions, "views": views}


# -- serialisation -------------------------------------------------------------

_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                   "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029]")


class TreeJSON(str):
    """A call tree already serialised as JSON (see Profile.flame_json)."""


def _dump_tree(tree: Any) -> str:
    """JSON for a nested ``[fid, total, self, children]`` tree, without
    recursion (call trees can be thousands of frames deep)."""
    if isinstance(tree, TreeJSON):
        return str(tree)
    out: List[str] = []
    # Work items: a node to open, or a literal string to emit.
    stack: List[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        children = item[3] if len(item) > 3 and item[3] else ()
        out.append("[%d,%d,%d,[" % (int(item[0]), int(item[1]), int(item[2])))
        stack.append("]]")
        for i in range(len(children) - 1, -1, -1):
            stack.append(children[i])
            if i:
                stack.append(",")
    return "".join(out)


def dumps_for_script(data: Mapping[str, Any]) -> str:
    """``data`` (flame data) as JSON that is safe inside a ``<script>``
    element: ``<``, ``>``, ``&`` are written as ``\\u003c`` etc."""
    nonce = secrets.token_hex(8)
    trees: Dict[str, str] = {}
    copy = dict(data)
    views = []
    for i, view in enumerate(copy.get("views") or []):
        view = dict(view)
        if "tree" in view:
            token = "@@oxp-tree-%s-%d@@" % (nonce, i)
            trees[json.dumps(token)] = _dump_tree(view["tree"])
            view["tree"] = token
        views.append(view)
    copy["views"] = views
    # Only the metadata can hold non-JSON values (NaN statistics...); the
    # tables are ints and strings and are large, so they are dumped as is.
    if "meta" in copy:
        copy["meta"] = json_safe(copy["meta"])
    # ASCII only: lone surrogates (undecodable file names) survive as escapes.
    text = json.dumps(copy, ensure_ascii=True, separators=(",", ":"), default=str)
    text = _SCRIPT_UNSAFE.sub(lambda m: _SCRIPT_ESCAPES[m.group(0)], text)
    # Splice the trees in last, in one pass: they hold only digits, commas
    # and brackets, so they need no escaping.
    if not trees:
        return text
    pattern = re.compile("|".join(re.escape(token) for token in trees))
    return pattern.sub(lambda m: trees[m.group(0)], text)


# -- HTML report -------------------------------------------------------------------


def _text(value: Any) -> str:
    """``value`` as HTML-escaped text that can be encoded as UTF-8."""
    return html.escape(encodable(str(value)))


def _fmt_seconds(value: Any) -> str:
    try:
        sec = float(value)
    except (TypeError, ValueError):
        return "?"
    if sec < 1:
        return "%.3g ms" % (sec * 1000)
    if sec < 120:
        return "%.2f s" % sec
    return "%dm %02ds" % (int(sec) // 60, int(sec) % 60)


def _header_html(meta: Mapping[str, Any]) -> str:
    stats = meta.get("stats") if isinstance(meta.get("stats"), Mapping) else {}
    items = []

    def add(name: str, value: Any) -> None:
        items.append('<span class="oxr-item"><span class="oxr-key">%s</span> '
                     '<span class="oxr-val">%s</span></span>'
                     % (_text(name), _text(value)))

    mode = meta.get("mode") or stats.get("mode")
    if mode:
        add("mode", mode)
    interval = meta.get("interval", stats.get("interval"))
    if interval is not None:
        add("interval", _fmt_seconds(interval))
    duration = meta.get("duration", stats.get("duration"))
    if duration is not None:
        add("duration", _fmt_seconds(duration))
    samples = meta.get("total_samples", stats.get("samples"))
    if samples is not None:
        add("samples", "{:,}".format(int(samples)) if isinstance(samples, (int, float)) else samples)
    rate = stats.get("rate_hz")
    if isinstance(rate, (int, float)):
        add("achieved rate", "%.1f Hz" % rate)
    if stats.get("backend"):
        add("backend", stats["backend"])
    dropped = stats.get("dropped")
    if isinstance(dropped, Mapping) and any(dropped.values()):
        add("dropped", ", ".join("%s=%s" % (k, v) for k, v in dropped.items() if v))
    started = meta.get("started_at")
    if isinstance(started, (int, float)):
        when = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
        add("started", when.strftime("%Y-%m-%d %H:%M:%S UTC"))
    if meta.get("views_omitted"):
        add("views omitted", meta["views_omitted"])
    if meta.get("idle_hidden"):
        add("idle samples", "{:,} of waiting threads, shown by the Idle samples switch".format(
            int(meta["idle_hidden"])))
    if stats.get("warning"):
        items.append('<span class="oxr-item oxr-warning"><span class="oxr-key">warning</span> '
                     '<span class="oxr-val">%s</span></span>' % _text(stats["warning"]))
    return "\n".join(items)


_PLACEHOLDER = re.compile(r"\{\{(TITLE|HEADER|CSS|JS|DATA|NONCE)\}\}")


def render_report(profile_or_data: Union["Profile", Mapping[str, Any]],
                  title: Optional[str] = None) -> str:
    """One self-contained HTML document showing the flame graph of a profile
    (or of already built flame data)."""
    if isinstance(profile_or_data, Mapping):
        data: Dict[str, Any] = dict(profile_or_data)
        meta = dict(data.get("meta") or {})
        if title is not None:
            meta["title"] = encodable(title)
        data["meta"] = meta
    else:
        data = flame_data(profile_or_data, title=title)
        meta = data["meta"]
    page_title = str(meta.get("title") or "ox_profile")
    css = asset("flamegraph.css")
    js = asset("flamegraph.js")
    # Our own code must not be able to end its element early.
    if re.search(r"</style", css, re.I) or re.search(r"</script", js, re.I):
        raise RuntimeError("static assets contain a closing tag")
    values = {
        # The page's Content-Security-Policy runs only scripts and styles with
        # this nonce: ours, never anything that made its way into the data.
        "NONCE": secrets.token_urlsafe(18),
        "TITLE": _text(page_title),
        "HEADER": _header_html(meta),
        "CSS": css,
        "JS": js,
        "DATA": dumps_for_script(data),
    }
    # One pass, so text from the data can never be taken for a placeholder.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], asset("report.html"))


#: Height of the inline report in a notebook, in CSS pixels.
INLINE_HEIGHT = 620


def render_inline(profile_or_data: Union["Profile", Mapping[str, Any]], title: Optional[str] = None,
                  height: int = INLINE_HEIGHT) -> str:
    """The report of :func:`render_report` as one ``<iframe srcdoc>`` element
    to put inside another page (a notebook's output): the document stays
    self-contained, and its script and style cannot touch the page around it
    (the frame is sandboxed: scripts run, in an origin of their own)."""
    doc = render_report(profile_or_data, title=title)
    return ('<iframe class="ox-profile-report" title="%s" sandbox="allow-scripts" '
            'style="width: 100%%; height: %dpx; border: 1px solid #d0d0d0; border-radius: 4px;" '
            'srcdoc="%s"></iframe>' % (_text(title or "ox_profile flame graph"), int(height),
                                       html.escape(doc, quote=True)))
