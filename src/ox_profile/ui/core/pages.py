"""What the ox_profile pages show, for any framework: the profiler's state,
the selected profile's page data, the JSON answers, downloads and the
request-timing table of a :class:`~ox_profile.ui.core.control.ProfilerControl`."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ox_profile import web
from ox_profile.ui.core import pagedata
from ox_profile.ui.core.params import DOWNLOADS, BadParameter, Selection, echo
from ox_profile.ui.core.refilter import FilterError
from ox_profile.ui.core.timing import EndpointSummary, summaries_csv

__all__ = ["state", "shared_info", "selected", "page", "page_title", "status_payload",
           "json_body", "download", "timing_summaries", "timing_csv", "reset"]


def state(control: Any) -> Dict[str, Any]:
    """Whether the profiler runs, its interval and this process's pid."""
    paused = control.is_paused()
    stats = control.launcher.profiler.stats()
    return {
        "state": "running" if not paused else ("paused" if control.started else "not started"),
        "paused": paused,
        "started": control.started,
        "interval": float(stats.get("interval") or 0.0),
        "pid": os.getpid(),
    }


def shared_info(control: Any) -> Dict[str, Any]:
    """How this process shares with the server's others (for pages and JSON)."""
    sharing = control.sharing
    share = sharing.share
    if share is None:
        return {"enabled": False, "error": sharing.error}
    return {"enabled": True, "directory": share.shared.path, "publish_interval": share.publish_interval,
            "publish_errors": share.publish_errors, "last_error": share.last_error}


def _process_json(info: Any) -> Dict[str, Any]:
    stats = info.stats
    return {"pid": info.pid, "state": info.state, "samples": info.samples, "current": info.current,
            "rate_hz": stats.get("rate_hz"), "backend": stats.get("backend"), "mode": stats.get("mode"),
            "interval": stats.get("interval"), "stats_samples": stats.get("samples"),
            "publish_interval": stats.get("share_interval"),
            "updated": info.updated, "command": info.command}


def _thread_key(profile: Any, thread: Any) -> Optional[Tuple[int, int]]:
    """(pid, native id) of a thread of a merged profile."""
    if 0 <= thread.process < len(profile.processes):
        return profile.processes[thread.process].pid, thread.native_id
    return None


def selected(control: Any, sel: Selection) -> Tuple[Any, Any]:
    """(whole profile, profile narrowed to the selection).  When the control
    shares with the server's other processes, the whole profile is theirs
    merged; ``sel.thread`` is set to the selected thread's number."""
    view = control.merged()
    profile = view.profile if view is not None else control.launcher.snapshot()
    if sel.thread_key is not None:
        found = [t.index for t in profile.threads if _thread_key(profile, t) == sel.thread_key]
        if not found:
            raise BadParameter("thread %d:%d is not one of the threads sampled." % sel.thread_key)
        sel.thread = found[0]
    if sel.thread is not None:
        if not 0 <= sel.thread < len(profile.threads):
            raise BadParameter("thread %d is not one of the %d threads sampled."
                               % (sel.thread, len(profile.threads)))
    if sel.process is not None and profile.process(sel.process) is None:
        raise BadParameter("process %d is not one of the %d processes of this server%s."
                           % (sel.process, len(profile.processes),
                              "" if view is not None else " (sharing between processes is off)"))
    if sel.thread is None and sel.endpoint is None and sel.process is None:
        return profile, profile
    narrowed = profile if sel.thread is None else profile.thread_profile(sel.thread)
    if sel.process is not None:
        narrowed = narrowed.filter(processes=[sel.process])
        narrowed.stats = dict(profile.process(sel.process).stats)
    if sel.endpoint is not None:
        narrowed = narrowed.filter(labels=[sel.endpoint])
    return profile, narrowed


def _display_name(stat: Any) -> str:
    return str(stat.function.display_name)


def _filename(stat: Any) -> str:
    return str(stat.function.filename)


def _top(profile: Any, sel: Selection) -> Tuple[List[Any], int]:
    """The top functions of the selection and how many matched re_filter."""
    stats: List[Any] = profile.top()
    if sel.matcher is not None:
        try:
            stats = sel.matcher.select(stats, _display_name, _filename)
        except FilterError as exc:
            raise BadParameter(str(exc)) from None
    return stats[:sel.max_records], len(stats)


def _top_json(stat: Any) -> Dict[str, Any]:
    func = stat.function
    return {"function": func.display_name, "name": func.name, "qualname": func.qualname,
            "module": func.module, "file": func.filename, "line": stat.hot_line,
            "first_line": func.firstlineno, "self_hits": stat.self_hits,
            "total_hits": stat.total_hits, "self_share": stat.self_share,
            "total_share": stat.total_share}


def page_title(sel: Selection) -> str:
    """The flame graph's title for a selection."""
    parts = ["ox_profile"]
    if sel.endpoint is not None:
        parts.append("endpoint " + sel.endpoint)
    if sel.thread_param is not None:
        parts.append("thread %s" % sel.thread_param)
    if sel.process is not None:
        parts.append("pid %d" % sel.process)
    return " - ".join(parts)


def _data_version(control: Any) -> Tuple[Any, ...]:
    """What a kept page was built from: resets, the profiler, and (last) how
    many samples it had."""
    launcher = control.launcher
    return (control.generation, id(launcher), control.sharing.version(),
            int(launcher.profiler.stats().get("total_hits") or 0))


def _build_page(control: Any, sel: Selection) -> pagedata.PageData:
    profile, narrowed = selected(control, sel)
    shown = narrowed.filter(include_idle=sel.idle)  # the top table's samples
    top, matched = _top(shown, sel)
    flame = web.flame_data(narrowed, title=page_title(sel), budget=pagedata.PAGE_BUDGET)
    threads, threads_omitted = pagedata.listed(
        [t for t in profile.threads], lambda t: t.hits, pagedata.MAX_LISTED_THREADS,
        keep=profile.threads[sel.thread] if sel.thread is not None else None)
    label_hits = profile.label_hits()
    endpoints, endpoints_omitted = pagedata.listed(
        sorted(label_hits), lambda lab: label_hits[lab], pagedata.MAX_LISTED_ENDPOINTS, keep=sel.endpoint)
    merged = len(profile.processes) > 1
    keys = {t.index: _thread_key(profile, t) for t in threads} if merged else {}
    thread_values = {index: "%d:%d" % key for index, key in keys.items() if key is not None}
    return pagedata.PageData(
        stats=dict(narrowed.stats), top=top, matched=matched, total_functions=len(profile.functions),
        total_samples=narrowed.total_samples, threads=threads, threads_omitted=threads_omitted,
        endpoints=endpoints, endpoints_omitted=endpoints_omitted,
        flame_text=web.dumps_for_script(flame), flame_meta=flame["meta"],
        processes=list(profile.processes), thread_values=thread_values, selected_thread=sel.thread,
        skipped=list(profile.stats.get("shared_skipped_files") or ()),
        shown_samples=shown.total_samples, idle_hidden=0 if sel.idle else shown.idle_hidden)


def page(control: Any, sel: Selection) -> pagedata.PageData:
    """The data of the selection's pages, built within bounds or reused."""
    return control.pages.get(sel.cache_key(), _data_version(control), lambda: _build_page(control, sel))


def status_payload(control: Any, sel: Selection, data: pagedata.PageData, csrf_token: str) -> Dict[str, Any]:
    """status.json without its flame data."""
    return {
        "state": state(control),
        "stats": data.stats,
        "selection": {"re_filter": sel.re_filter, "max_records": sel.max_records,
                      "thread": sel.thread, "endpoint": sel.endpoint, "process": sel.process,
                      "idle": sel.idle},
        "total_samples": data.total_samples,
        "top_samples": data.shown_samples,
        "idle_samples_left_out": data.idle_hidden,
        "matched_functions": data.matched,
        "top": [_top_json(s) for s in data.top],
        "threads": [{"index": t.index, "ident": t.ident, "native_id": t.native_id,
                     "name": t.name, "hits": t.hits, "key": data.thread_values.get(t.index),
                     "pid": data.processes[t.process].pid if 0 <= t.process < len(data.processes) else None}
                    for t in data.threads],
        "threads_omitted": data.threads_omitted,
        "endpoints": data.endpoints,
        "endpoints_omitted": data.endpoints_omitted,
        "answered_by": os.getpid(),
        "processes": [_process_json(p) for p in data.processes],
        "shared": dict(shared_info(control), skipped=data.skipped),
        "csrf_token": csrf_token,
    }


def json_body(payload: Dict[str, Any], flame_text: str, bare: bool = False) -> str:
    """``payload`` plus ``"flame": flame`` as JSON text (or the flame data
    alone when ``bare``), ``flame_text`` being the flame data serialised by
    ox_profile.web (whose call trees come already encoded)."""
    if bare:
        return flame_text
    head = json.dumps(web.json_safe(payload), separators=(",", ":"))
    return head[:-1] + ("," if payload else "") + '"flame":' + flame_text + "}"


def download(control: Any, fmt: str, sel_args: Any) -> Tuple[bytes, str, str]:
    """(body, mimetype, file name) of the selected profile in format ``fmt``:
    every sample, whatever its size."""
    from ox_profile.ui.core.params import parse_selection

    if fmt not in DOWNLOADS:
        raise BadParameter("unknown download format %s; choose one of: %s."
                           % (echo(fmt), ", ".join(sorted(DOWNLOADS))))
    sel = parse_selection(sel_args)
    export_fmt, mimetype, filename = DOWNLOADS[fmt]
    from ox_profile import export

    def build() -> bytes:
        _profile, narrowed = selected(control, sel)
        return export.render_bytes(narrowed, export_fmt)

    return control.downloads.run(build), mimetype, filename


def timing_summaries(control: Any, process: Optional[int]) -> List[EndpointSummary]:
    """Per-endpoint request timing of the server (or of one process)."""
    return control.request_summaries(process)


def timing_csv(summaries: List[EndpointSummary]) -> str:
    """The request-timing table as CSV text."""
    return summaries_csv(summaries)


def reset(control: Any) -> None:
    """Forget samples, request timings and the pages built from them."""
    control.reset()
    control.pages.clear()
