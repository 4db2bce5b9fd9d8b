"""One profile of every process sharing a directory: this process's live data
merged (in C) with what the others published, the list of processes with
their state, and their request timings added up."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from ox_profile import _engine
from ox_profile.profile import ProcessInfo, Profile
from ox_profile.shared.agent import PROCESS_FILE_RE, ProcessShare, unflatten_stats
from ox_profile.shared.process import ProcessId, is_alive

#: Statistics of the merged profile that add up over processes.
SUMMED = ("ticks", "samples", "gil_samples", "late_wakeups", "missed_ticks", "truncated", "idle_skipped",
          "own_skipped", "gone_skipped", "idle_samples", "dropped_total", "retried", "memo_hits", "code_cache_misses",
          "memory_bytes", "memory_cap", "overflow_samples", "total_hits", "sampler_cpu_s", "read_faults")
#: ... and that are the largest of them.
MAXED = ("capture_max_us", "duration")
#: Largest file read from another process.
MAX_FILE_BYTES = 1 << 30


@dataclasses.dataclass
class MergedView:
    """The merged profile, the processes' request timings, and the files
    that could not be used (name, why)."""

    profile: Profile
    timings: List[list]
    skipped: List[Tuple[str, str]]


def _merge_stats(own: Dict[str, Any], per_process: List[Tuple[Dict[str, Any], bool]]) -> Dict[str, Any]:
    """Statistics of the whole: counts added up, rates and costs averaged
    (weighted by ticks) over the processes that sampled.  ``own``'s settings
    (mode, backend, interval...) are kept; per_process: (stats, alive)."""
    merged = dict(own)
    for key in SUMMED:
        values = [s.get(key) for s, _ in per_process if isinstance(s.get(key), (int, float))]
        if values:
            merged[key] = sum(values)
    for key in MAXED:
        values = [s.get(key) for s, _ in per_process if isinstance(s.get(key), (int, float))]
        if values:
            merged[key] = max(values)
    dropped: Dict[str, int] = {}
    for s, _ in per_process:
        for reason, n in (s.get("dropped") or {}).items():
            if isinstance(n, int):
                dropped[reason] = dropped.get(reason, 0) + n
    merged["dropped"] = dropped
    sampled = [(s, int(s.get("ticks") or 0)) for s, alive in per_process if int(s.get("ticks") or 0) > 1]
    weight = sum(w for _, w in sampled)
    if weight:
        for key in ("rate_hz", "capture_mean_us", "mean_interval", "gil_wait_mean_us", "sampler_cpu_percent"):
            merged[key] = sum(float(s.get(key) or 0.0) * w for s, w in sampled) / weight
        variance = sum(float(s.get("stdev_interval") or 0.0) ** 2 * w for s, w in sampled) / weight
        merged["stdev_interval"] = variance ** 0.5
    starts = [s.get("started_at") for s, _ in per_process if s.get("started_at")]
    if starts:
        merged["started_at"] = min(starts)
    backends = {s.get("backend") for s, _ in per_process if s.get("ticks")}
    if len(backends) > 1:
        merged["backend"] = "mixed (%s)" % ", ".join(sorted(b for b in backends if b))
    warnings = [s.get("warning") for s, _ in per_process if s.get("warning")]
    if warnings and not merged.get("warning"):
        merged["warning"] = warnings[0]
    merged["processes"] = len(per_process)
    return merged


def _state(meta: Dict[str, Any], alive: bool) -> str:
    if not alive:
        return "exited" if meta.get("final") else "lost"
    state = meta.get("state")
    return state if state in ("running", "paused", "not started") else "running"


def merged_view(share: ProcessShare, own: Optional[Profile], own_stats: Dict[str, Any],
                own_timings: Optional[list]) -> MergedView:
    """This process's profile ``own`` (its statistics, timings) merged with
    every other process's published file.  Files written before the last
    reset, and malformed ones, are left out and listed in ``skipped``."""
    share.poll_control()
    names = share.other_files()
    require = {"reset_id": share.applied_reset} if share.follow else None
    snap = own._snap if own is not None else None
    pid = os.getpid()
    if snap is None:
        snap = _engine.Database().snapshot()
    snapshot, merged, skipped = _engine.share_merge(share.shared.fd, names, (snap, pid), MAX_FILE_BYTES,
                                                    require, bool(names))
    now = time.time()
    own_state = "not started"
    if own_stats.get("alive"):
        own_state = "paused" if own_stats.get("paused") else "running"
    processes = [ProcessInfo(0, pid, share.me.start, share.command, own_state, int(snap.total_hits),
                             dict(own_stats), now, current=True)]
    per_process: List[Tuple[Dict[str, Any], bool]] = [(own_stats, True)]
    timings: List[list] = [own_timings or []]
    for name, meta, file_timings, total in merged:
        match = PROCESS_FILE_RE.match(name)
        proc = ProcessId(int(match.group(1)), int(match.group(2))) if match else ProcessId(0, 0)
        alive = is_alive(proc)
        stats = unflatten_stats(meta)
        processes.append(ProcessInfo(len(processes), int(meta.get("pid") or proc.pid), proc.start,
                                     str(meta.get("command") or ""), _state(meta, alive), int(total),
                                     stats, float(meta.get("written_at") or 0.0)))
        per_process.append((stats, alive))
        timings.append(file_timings or [])
    # Live processes whose file predates the last reset (they have not
    # published since): listed, with none of their old samples.
    unreadable = []
    for name, why in skipped:
        match = PROCESS_FILE_RE.match(name)
        if not why.startswith("stale") or match is None:
            unreadable.append((name, why))
            continue
        proc = ProcessId(int(match.group(1)), int(match.group(2)))
        if not is_alive(proc):
            continue  # ended before the reset: forgotten
        try:
            meta, _timings, _total = _engine.share_read(share.shared.fd, name, MAX_FILE_BYTES)
        except (OSError, ValueError) as exc:
            unreadable.append((name, str(exc)))
            continue
        processes.append(ProcessInfo(len(processes), proc.pid, proc.start, str(meta.get("command") or ""),
                                     _state(meta, True), 0, {}, float(meta.get("written_at") or 0.0)))
        timings.append([])
    skipped = unreadable
    stats = _merge_stats(own_stats, per_process)
    stats["shared_skipped"] = len(skipped)
    stats["shared_skipped_files"] = [[name, why] for name, why in skipped[:20]]
    profile = Profile(snapshot, stats, processes=processes,
                      path_roots=own.path_roots if own is not None else None)
    return MergedView(profile, timings, list(skipped))
