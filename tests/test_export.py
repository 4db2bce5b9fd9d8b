"""Exporters checked against their real consumers: jsonschema with speedscope's
published schema, Go's ``go tool pprof`` for pprof, a folded-stack parser, and
the HTML report's content."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import ox_profile
from ox_profile import export
from ox_profile.export import collapsed, html, pprof, speedscope, text

from conftest import shared_file

REPO = Path(__file__).resolve().parents[1]
GO = shutil.which("go")
INTERVAL = 0.001


# -- a workload with recognisable functions ----------------------------------------


def oxt_leaf_alpha(seconds: float) -> int:
    """Spin in this very frame (the leaf) for ``seconds``."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def oxt_leaf_beta(seconds: float) -> int:
    """Spin in this very frame (the leaf) for ``seconds``."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def oxt_main_caller(seconds: float) -> int:
    return oxt_leaf_alpha(seconds)


def oxt_worker_body(seconds: float, spun: threading.Event, release: threading.Event) -> None:
    with ox_profile.label("oxt-endpoint"):
        oxt_leaf_beta(seconds)
    spun.set()
    release.wait()


def _profile(mode: str, seconds: float) -> "ox_profile.Profile":
    # The worker stays alive until the snapshot is taken so that it has its name.
    spun, release = threading.Event(), threading.Event()
    worker = threading.Thread(target=oxt_worker_body, args=(seconds, spun, release),
                              name="oxt-worker")
    profiler = ox_profile.Profiler(interval=INTERVAL, mode=mode)
    profiler.start()
    worker.start()
    try:
        oxt_main_caller(seconds)
        spun.wait()
        if mode == "wall":
            # Both threads wait a while: samples of waiting threads for every export.
            deadline = time.monotonic() + 10
            while profiler.stats()["idle_samples"] < 10 and time.monotonic() < deadline:
                release.wait(0.01)
        profiler.stop()
        return profiler.snapshot()
    finally:
        profiler.stop()
        release.set()
        worker.join()


@pytest.fixture(scope="module")
def profile() -> "ox_profile.Profile":
    prof = _profile("wall", 0.4)
    assert prof.total_samples > 50, prof.stats
    assert prof.idle_samples >= 10, prof.stats  # the exports' idle marks are tested on them
    return prof


@pytest.fixture(scope="module")
def cpu_profile() -> "ox_profile.Profile":
    prof = _profile("cpu", 0.3)
    assert prof.total_samples > 20, prof.stats
    return prof


def _names(prof: "ox_profile.Profile") -> List[str]:
    return [f.qualname for f in prof.functions]


# -- registry ------------------------------------------------------------------------


@pytest.mark.parametrize("path, fmt", [
    ("a.html", "html"), ("dir/A.HTML", "html"), ("a.speedscope.json", "speedscope"),
    ("a.collapsed", "collapsed"), ("a.folded", "collapsed"), ("a.pb.gz", "pprof"),
    ("a.pprof", "pprof"), ("a.txt", "text"), (Path("x/y.txt"), "text"),
])
def test_format_for_path(path, fmt):
    assert export.format_for_path(path) == fmt


@pytest.mark.parametrize("path", ["a.json", "a", "a.gz", "a.pb", "a.html.bak", ".txt"])
def test_format_for_path_unknown_lists_choices(path):
    with pytest.raises(ValueError) as info:
        export.format_for_path(path)
    msg = str(info.value)
    for ext in (".html", ".speedscope.json", ".collapsed", ".folded", ".pb.gz", ".pprof", ".txt"):
        assert ext in msg


def test_registry_modules():
    assert set(export.FORMATS) == {"text", "html", "speedscope", "collapsed", "pprof"}
    for name, mod in export.FORMATS.items():
        assert callable(mod.render), name
        assert mod.extension.startswith("."), name
        assert export.format_for_path("x" + mod.extension) == name
        assert mod.binary is (name == "pprof")


def test_render_unknown_format(profile):
    with pytest.raises(ValueError, match="speedscope"):
        export.render(profile, "svg")


def test_exporters_do_not_use_the_engine():
    for mod in export.FORMATS.values():
        source = Path(mod.__file__).read_text()
        assert "_engine" not in source, mod.__name__
    assert "_engine" not in Path(export.__file__).read_text()


def test_render_types(profile):
    for name, mod in export.FORMATS.items():
        out = export.render(profile, name)
        assert isinstance(out, bytes if mod.binary else str), name
        assert out


# -- save ----------------------------------------------------------------------------


def test_save_atomic_and_returns_path(profile, tmp_path):
    target = tmp_path / "p.collapsed"
    target.write_text("old contents\n")
    written = export.save(profile, target)
    assert written == str(target)
    assert target.read_text() == collapsed.render(profile)
    assert sorted(os.listdir(tmp_path)) == ["p.collapsed"]  # no temp file left behind
    mode = stat.S_IMODE(os.stat(target).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_save_explicit_format_and_profile_method(profile, tmp_path):
    out = export.save(profile, tmp_path / "weird.name", "speedscope")
    assert json.loads(Path(out).read_text())["exporter"] == "ox_profile"
    out2 = profile.save(tmp_path / "p.txt")
    assert "oxt_leaf_alpha" in Path(out2).read_text()
    assert isinstance(profile.render("pprof"), bytes)


def test_save_failure_leaves_no_file(profile, tmp_path):
    with pytest.raises(OSError):
        export.save(profile, tmp_path / "missing-dir" / "p.txt")
    with pytest.raises(ValueError):
        export.save(profile, tmp_path / "p.unknown")
    assert os.listdir(tmp_path) == []


# -- text ----------------------------------------------------------------------------


def test_text_table(profile):
    out = text.render(profile)
    assert "\x1b[" not in out
    header = out.splitlines()[0]
    # The table counts the samples of running threads; the others are said.
    active = profile.filter(include_idle=False)
    assert "%d samples" % active.total_samples in header
    assert active.idle_hidden == profile.idle_samples > 0
    assert "%d samples of waiting threads" % active.idle_hidden in out
    assert "%d samples" % profile.total_samples in text.render(profile, idle=True).splitlines()[0]
    assert "wall mode" in header
    if profile.stats.get("backend"):
        assert str(profile.stats["backend"]) in header
    assert "Hz achieved" in header
    assert "self%" in out and "total%" in out and "file:line" in out
    assert "oxt_leaf_alpha" in out and "oxt_leaf_beta" in out
    assert "test_export.py:" in out
    # rows follow self hits, most first
    top = active.top()
    first_row = [ln for ln in out.splitlines() if top[0].function.display_name in ln][0]
    assert str(top[0].self_hits) in first_row


def test_text_color_and_limit(profile):
    colored = text.render(profile, color=True)
    assert "\x1b[" in colored
    limited = text.render(profile, limit=1)
    rows = [ln for ln in limited.splitlines() if re.match(r"^\s+\d+\.\d%", ln)]
    assert len(rows) == 1
    assert "more functions" in limited
    with pytest.raises(ValueError):
        text.render(profile, limit=0)


def test_text_exclude_drops_matches_and_checks_the_pattern(profile):
    out = text.render(profile, limit=None)
    assert "oxt_leaf_alpha" in out
    dropped = text.render(profile, limit=None, exclude="oxt_leaf_alpha")
    assert "oxt_leaf_alpha" not in dropped and "oxt_leaf_beta" in dropped
    with pytest.raises(ValueError, match="invalid exclude"):
        text.render(profile, exclude="(")
    with pytest.raises(ValueError, match="exclude is longer"):
        text.render(profile, exclude="x" * 201)


def test_text_empty_selection(profile):
    empty = profile.filter(threads=["no such thread"])
    out = text.render(empty)
    assert "0 samples" in out and "no samples" in out


# -- collapsed -----------------------------------------------------------------------

_FOLDED_LINE = re.compile(r"^(\S.*) (\d+)$")


def _parse_folded(out: str) -> List[Tuple[List[str], int]]:
    result = []
    for line in out.splitlines():
        m = _FOLDED_LINE.match(line)
        assert m, "bad folded line: %r" % line
        result.append((m.group(1).split(";"), int(m.group(2))))
    return result


def test_collapsed_parses_and_sums(profile):
    out = collapsed.render(profile)
    assert out.endswith("\n")
    stacks = _parse_folded(out)
    assert sum(n for _, n in stacks) == profile.total_samples
    # Samples of a thread that was waiting end in an [idle] frame.
    idle = sum(n for frames, n in stacks if frames[-1] == "[idle]")
    assert idle == profile.idle_samples
    alpha = [frames[:-1] if frames[-1] == "[idle]" else frames
             for frames, _ in stacks if any("oxt_leaf_alpha" in f for f in frames)]
    assert alpha
    for frames in alpha:  # root first: the caller comes before the leaf
        ci = [i for i, f in enumerate(frames) if "oxt_main_caller" in f]
        li = [i for i, f in enumerate(frames) if "oxt_leaf_alpha" in f]
        assert ci and li and ci[0] < li[0] and li[0] == len(frames) - 1


def test_collapsed_filtered_and_seed_names(profile):
    worker = profile.filter(threads=["oxt-worker"])
    stacks = _parse_folded(collapsed.render(worker))
    assert sum(n for _, n in stacks) == worker.total_samples > 0
    assert all(not any("oxt_leaf_alpha" in f for f in frames) for frames, _ in stacks)
    seed = collapsed.render(profile, names="seed")
    assert "oxt_leaf_alpha(" in seed
    assert sum(n for _, n in _parse_folded(seed)) == profile.total_samples


# -- speedscope ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema():
    return json.loads(shared_file("formats/speedscope-file-format-schema.json").read_text())


@pytest.mark.parametrize("unit", ["nanoseconds", "none"])
def test_speedscope_validates(profile, schema, unit):
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads(speedscope.render(profile, unit=unit))
    jsonschema.validate(doc, schema)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert doc["exporter"] == "ox_profile"
    frames = doc["shared"]["frames"]
    names = [f["name"] for f in frames]
    assert any(n.endswith("oxt_leaf_alpha") for n in names)
    assert all("file" in f and "line" in f for f in frames if f["name"] != "[idle]")
    assert frames[-1] == {"name": "[idle]"}  # the leaf of samples of waiting threads
    scale = int(round(INTERVAL * 1e9)) if unit == "nanoseconds" else 1
    threads_with_hits = [t for t in profile.threads if t.hits]
    assert len(doc["profiles"]) == len(threads_with_hits)
    total = idle_weight = 0
    for prof, thread in zip(doc["profiles"], threads_with_hits):
        assert prof["type"] == "sampled" and prof["unit"] == unit
        assert thread.name in prof["name"]
        assert len(prof["samples"]) == len(prof["weights"])
        assert prof["endValue"] == sum(prof["weights"])
        assert sum(prof["weights"]) == thread.hits * scale
        assert all(0 <= i < len(frames) for s in prof["samples"] for i in s)
        total += sum(prof["weights"])
        idle_weight += sum(w for s, w in zip(prof["samples"], prof["weights"]) if s[-1] == len(frames) - 1)
    assert total == profile.total_samples * scale
    assert idle_weight == profile.idle_samples * scale > 0


def test_speedscope_root_first(profile, schema):
    doc = json.loads(speedscope.render(profile))
    names = [f["name"] for f in doc["shared"]["frames"]]
    alpha = next(i for i, n in enumerate(names) if n.endswith("oxt_leaf_alpha"))
    caller = next(i for i, n in enumerate(names) if n.endswith("oxt_main_caller"))
    seen = 0
    for prof in doc["profiles"]:
        for sample in prof["samples"]:
            if sample and sample[-1] == alpha:
                assert caller in sample and sample.index(caller) < sample.index(alpha)
                seen += 1
    assert seen
    with pytest.raises(ValueError):
        speedscope.render(profile, unit="furlongs")


# -- pprof ---------------------------------------------------------------------------

needs_go = pytest.mark.skipif(GO is None, reason="go (golang-go) is not installed")


def _go_pprof(args: List[str], path: Path, tmp_path: Path) -> str:
    env = dict(os.environ, PPROF_TMPDIR=str(tmp_path), HOME=str(tmp_path),
               GOCACHE=str(tmp_path / "gocache"))
    proc = subprocess.run([GO, "tool", "pprof"] + args + [str(path)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _parse_raw(out: str) -> Tuple[List[str], List[List[int]], List[str], str]:
    """(sample types, per-sample values, label lines, locations section) of ``-raw``."""
    lines = out.splitlines()
    start = lines.index("Samples:")
    types = lines[start + 1].split()
    values: List[List[int]] = []
    labels: List[str] = []
    i = start + 2
    while i < len(lines) and lines[i] != "Locations":
        m = re.match(r"^\s+(-?\d+(?:\s+-?\d+)*):", lines[i])
        if m:
            values.append([int(v) for v in m.group(1).split()])
        else:
            labels.append(lines[i].strip())
        i += 1
    return types, values, labels, "\n".join(lines[i:])


def _write_pprof(prof, tmp_path: Path, name: str = "p.pb.gz") -> Path:
    path = Path(export.save(prof, tmp_path / name))
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    return path


@needs_go
def test_pprof_read_by_go(profile, tmp_path):
    path = _write_pprof(profile, tmp_path)
    types, values, labels, locations = _parse_raw(_go_pprof(["-raw"], path, tmp_path))
    assert types == ["samples/count", "wall/nanoseconds"]
    assert sum(v[0] for v in values) == profile.total_samples
    interval_ns = int(profile.interval * 1e9)
    assert sum(v[1] for v in values) == profile.total_samples * interval_ns
    for fn in ("oxt_leaf_alpha", "oxt_leaf_beta", "oxt_main_caller", "oxt_worker_body"):
        assert fn in locations
    assert __file__.replace(".pyc", ".py") in locations
    joined = "\n".join(labels)
    assert "thread:[oxt-worker]" in joined
    assert "thread:[MainThread]" in joined
    assert "endpoint:[oxt-endpoint]" in joined
    assert "thread_id:[" in joined
    assert "thread_state:[idle]" in joined  # samples of waiting threads, labelled

    top = _go_pprof(["-top", "-sample_index=samples"], path, tmp_path)
    m = re.search(r"Total samples = (\d+)\b", top)
    assert m and int(m.group(1)) == profile.total_samples, top
    assert "oxt_leaf_alpha" in top


@needs_go
def test_pprof_locations_are_shared(profile, tmp_path):
    path = _write_pprof(profile, tmp_path)
    out = _go_pprof(["-raw"], path, tmp_path)
    _, _, _, locations = _parse_raw(out)
    loc_lines = re.findall(r"^\s+\d+: 0x0 .*$", locations, re.M)
    # one location per distinct (function, line): no duplicates
    keys = [re.sub(r"^\s+\d+: ", "", ln) for ln in loc_lines]
    assert len(keys) == len(set(keys))
    distinct = {(fr.function.index, fr.line) for s in profile.stacks() for fr in s.frames}
    assert len(loc_lines) == len(distinct)


@needs_go
def test_pprof_filtered_profile(profile, tmp_path):
    worker = profile.filter(threads=["oxt-worker"])
    path = _write_pprof(worker, tmp_path, "w.pb.gz")
    _, values, labels, _ = _parse_raw(_go_pprof(["-raw"], path, tmp_path))
    assert sum(v[0] for v in values) == worker.total_samples > 0
    assert "thread:[MainThread]" not in "\n".join(labels)
    top = _go_pprof(["-top", "-sample_index=samples"], path, tmp_path)
    assert "oxt_leaf_beta" in top and "oxt_leaf_alpha" not in top


@needs_go
def test_pprof_cpu_mode(cpu_profile, tmp_path):
    path = _write_pprof(cpu_profile, tmp_path)
    types, values, _, _ = _parse_raw(_go_pprof(["-raw"], path, tmp_path))
    assert types == ["samples/count", "wall/nanoseconds", "cpu/nanoseconds"]
    assert sum(v[0] for v in values) == cpu_profile.total_samples
    assert sum(v[2] for v in values) == cpu_profile.cpu_ns
    top = _go_pprof(["-top", "-sample_index=cpu"], path, tmp_path)
    assert "oxt_leaf" in top


PPROF_MODULE = """
import time


class Worker:
    def spin(self, seconds):
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            n += 1
        return n


_end = time.perf_counter() + 0.25
while time.perf_counter() < _end:  # module-level work: its frame is <module>
    pass
Worker().spin(0.25)
"""


@needs_go
def test_pprof_names_are_module_qualified(tmp_path, monkeypatch):
    """go tool pprof -top and -list name every frame after its module: no
    "<unknown>" for module-level code, and two modules' <module> (or two
    classes' methods of one name) stay apart."""
    pkg = tmp_path / "oxt_pprof_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("mod_a", "mod_b"):
        (pkg / (name + ".py")).write_text(PPROF_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with ox_profile.Profiler(interval=INTERVAL) as prof:
        import oxt_pprof_pkg.mod_a  # noqa: F401
        import oxt_pprof_pkg.mod_b  # noqa: F401
    path = _write_pprof(prof.snapshot(), tmp_path)
    top = _go_pprof(["-top", "-sample_index=samples", "-nodefraction=0"], path, tmp_path)
    rows = {line.split()[-1]: line for line in top.splitlines() if re.match(r"^\s+\d+\s", line)}
    for mod in ("mod_a", "mod_b"):
        for func in ("<module>", "Worker.spin"):
            name = "oxt_pprof_pkg.%s.%s" % (mod, func)
            assert name in rows, top
            flat = int(rows[name].split()[0])
            assert flat > 50, rows[name]  # about 250 samples each
    assert "<unknown>" not in top, top
    listing = _go_pprof(["-list", r"oxt_pprof_pkg\.mod_b\.Worker\.spin", "-sample_index=samples"],
                        path, tmp_path)
    assert re.search(r"ROUTINE =+ oxt_pprof_pkg\.mod_b\.Worker\.spin in %s"
                     % re.escape(str(pkg / "mod_b.py")), listing), listing
    assert re.search(r"^\s+\d+\s+\d+\s+\d+:\s+n \+= 1$", listing, re.M), listing
    assert "mod_a" not in listing


def test_pprof_is_gzip_of_message(profile):
    data = pprof.render(profile)
    raw = gzip.decompress(data)
    assert raw == profile.pprof_bytes()
    # first field: sample_type (field 1, length-delimited)
    assert raw[0] == (1 << 3) | 2
    assert b"oxt_leaf_alpha" in raw


# -- html ----------------------------------------------------------------------------


def test_html_contains_functions(profile):
    doc = html.render(profile, title="oxt report")
    assert doc.lstrip().lower().startswith("<!doctype html")
    for fn in ("oxt_leaf_alpha", "oxt_leaf_beta", "oxt_main_caller"):
        assert fn in doc
    assert "oxt report" in doc
