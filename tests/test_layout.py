"""The layout layer: one place knows CPython's internal structures, each
supported version gets the GIL-free capture, and on 3.13+ the build is
checked against the running interpreter's _Py_DebugOffsets."""

from __future__ import annotations

import ctypes
import re
import struct
import sys
import sysconfig

import pytest

import ox_profile
from ox_profile import _engine
from conftest import ROOT

LAYOUTS = {(3, 11): "3.11", (3, 12): "3.12", (3, 13): "3.13"}
SUPPORTED = sys.implementation.name == "cpython" and sys.version_info[:2] in LAYOUTS and \
    not sysconfig.get_config_var("Py_GIL_DISABLED")

# Names of CPython's internal structures and fields that the GIL-free
# capture reads: only engine/layout/ may use them.
INTERNAL = re.compile(
    r"\b(_PyInterpreterFrame|_PyCFrame|_PyStackChunk|_PyRuntime|_Py_DebugOffsets|PyDictKeysObject|"
    r"PyDict\w*Entry|PyASCIIObject|PyCompactUnicodeObject|PyCodeObject|"
    r"co_code_adaptive|_co_firsttraceable|co_linetable|co_qualname|f_code|prev_instr|instr_ptr|f_executable|"
    r"f_funcobj|f_func|f_globals|datastack_\w+|current_frame|cframe|gilstate|ma_keys|ma_values|dk_\w+|"
    r"FRAME_OWNED_BY_\w+|_Py_atomic_\w+|Py_BUILD_CORE)\b|internal/pycore_")


def code_only(text: str) -> str:
    """C source without its comments and string literals."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\\n])*"', '""', text)


def test_only_the_layout_layer_names_cpython_internals() -> None:
    engine = ROOT / "engine"
    offenders = {}
    for path in sorted(engine.glob("*.[ch]")):
        if path.name == "capture_gil.c":
            continue  # the portable capture: public C API only, checked below
        hits = sorted(set(m.group(0) for m in INTERNAL.finditer(code_only(path.read_text()))))
        if hits:
            offenders[path.name] = hits
    assert offenders == {}, offenders
    gil = code_only((engine / "capture_gil.c").read_text())
    assert not re.search(r"internal/pycore_|Py_BUILD_CORE|_PyInterpreterFrame|_PyRuntime", gil)
    # The families, and nothing else, live in engine/layout/.
    headers = sorted(p.name for p in (engine / "layout").glob("py3*.h"))
    assert headers == ["py311.h", "py312.h", "py313.h"]


def test_setup_has_one_layout_table_entry_per_family() -> None:
    setup = (ROOT / "setup.py").read_text()
    table = re.search(r"LAYOUTS = \{(.*?)\n\}", setup, re.S).group(1)
    entries = dict(re.findall(r"\((3, \d+)\): \"(py3\d+\.h)\"", table))
    assert entries == {"3, 11": "py311.h", "3, 12": "py312.h", "3, 13": "py313.h"}


def test_every_supported_version_gets_the_gil_free_capture() -> None:
    info = _engine.BUILD_INFO
    if SUPPORTED:
        assert info["layout"] == LAYOUTS[sys.version_info[:2]]
        assert info["nogil_available"] is True and info["nogil_note"] == ""
        assert ox_profile.Profiler().stats()["backend"] == "nogil"
    else:
        assert info["layout"] is None and not info["nogil_available"]
        assert "no GIL-free capture" in info["nogil_note"]
        stats = ox_profile.Profiler().stats()
        assert stats["backend"] == "gil" and stats["backend_note"]


# -- _Py_DebugOffsets (3.13+) ---------------------------------------------

HAS_DEBUG_OFFSETS = SUPPORTED and sys.version_info >= (3, 13)


def running_debug_offsets(nfields: int) -> bytes:
    """The first bytes of the running interpreter's _PyRuntime, read through
    ctypes: the cookie, version, free-threaded flag and nfields offsets."""
    runtime = ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime")
    return ctypes.string_at(ctypes.addressof(runtime), 24 + 8 * nfields)


@pytest.mark.skipif(HAS_DEBUG_OFFSETS, reason="3.13+ publishes _Py_DebugOffsets")
def test_no_debug_offsets_before_3_13() -> None:
    if not SUPPORTED:
        pytest.skip("no GIL-free capture in this build")
    with pytest.raises(NotImplementedError):
        _engine._debug_offsets(None)


@pytest.mark.skipif(not HAS_DEBUG_OFFSETS, reason="needs CPython 3.13+ with the GIL-free capture")
def test_every_debug_offset_matches_the_compiled_layout() -> None:
    rows = _engine._debug_offsets(None)
    # Every uint64 of 3.13's struct after its 24-byte header: 3 + 13 + 9 + 6 + 10 + 2 + 4 + 3 + 3 + 3 + 2
    # + 3 + 3 + 4 + 2 fields (Include/internal/pycore_runtime.h).
    assert len(rows) == 70
    assert len({name for name, _ in rows}) == len(rows)
    raw = running_debug_offsets(len(rows))
    assert raw[:8] == b"xdebugpy"
    version, free_threaded = struct.unpack_from("<QQ", raw, 8)
    assert version == sys.hexversion and free_threaded == 0
    running = struct.unpack_from("<%dQ" % len(rows), raw, 24)
    mismatches = [(name, built, value) for (name, built), value in zip(rows, running) if built != value]
    assert mismatches == []
    # Spot checks that the rows are what they say.
    named = dict(rows)
    assert named["pyobject.ob_type"] == 8 and named["pyobject.size"] == 16
    assert named["unicode_object.asciiobject_size"] == 40
    assert _engine._debug_offsets(raw) is None


@pytest.mark.skipif(not HAS_DEBUG_OFFSETS, reason="needs CPython 3.13+ with the GIL-free capture")
def test_a_mismatched_interpreter_is_refused_with_the_reason() -> None:
    rows = _engine._debug_offsets(None)
    raw = bytearray(running_debug_offsets(len(rows)))
    # One offset that moved: named, with both values.
    index = [name for name, _ in rows].index("thread_state.current_frame")
    moved = bytearray(raw)
    struct.pack_into("<Q", moved, 24 + 8 * index, rows[index][1] + 8)
    why = _engine._debug_offsets(bytes(moved))
    assert "thread_state.current_frame" in why and str(rows[index][1] + 8) in why and str(rows[index][1]) in why
    # Not a _PyRuntime at all.
    assert "cookie" in _engine._debug_offsets(b"garbage!" + bytes(raw[8:]))
    # Another minor version (3.14), and a free-threaded interpreter.
    other = bytearray(raw)
    struct.pack_into("<Q", other, 8, 0x030E00F0)
    assert "version" in _engine._debug_offsets(bytes(other))
    threaded = bytearray(raw)
    struct.pack_into("<Q", threaded, 16, 1)
    assert "free-threaded" in _engine._debug_offsets(bytes(threaded))
    # Too short to be one.
    assert "bytes" in _engine._debug_offsets(bytes(raw[:100]))
    with pytest.raises(TypeError):
        _engine._debug_offsets("not bytes")


@pytest.mark.skipif(not SUPPORTED, reason="no GIL-free capture in this build")
def test_gil_flag_per_sample_from_the_interpreters_gil() -> None:
    """From 3.12 the GIL belongs to the interpreter: the flag still says which
    thread held it (a spinning main thread, a thread blocked in a lock)."""
    import threading

    from conftest import spin

    lock = threading.Lock()
    lock.acquire()
    blocked = threading.Thread(target=lock.acquire, name="blocked-on-lock")
    blocked.start()
    with ox_profile.Profiler(interval=0.001, backend="nogil") as prof:
        spin(0.3)
    lock.release()
    blocked.join()
    profile = prof.snapshot()
    assert profile.filter(threads=[threading.get_ident()]).gil_share > 0.9
    assert profile.filter(threads=["blocked-on-lock"]).gil_share < 0.05


# -- falling back -----------------------------------------------------------

def _nogil_layout_with(version=(3, 14), implementation="cpython", platform="linux",
                       free_threaded=None, headers=True, env=None):
    """Runs setup.py's nogil_layout() as if on another interpreter."""
    import ast
    import types

    source = (ROOT / "setup.py").read_text()
    tree = ast.parse(source)
    keep = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "nogil_layout"
            or isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "LAYOUTS" for t in node.targets)]
    fake_sys = types.SimpleNamespace(version_info=version, platform=platform,
                                     implementation=types.SimpleNamespace(name=implementation))
    fake_sysconfig = types.SimpleNamespace(
        get_config_var=lambda name: free_threaded if name == "Py_GIL_DISABLED" else None,
        get_paths=lambda: {"include": "/include"})
    fake_os = types.SimpleNamespace(environ=env or {}, path=types.SimpleNamespace(
        exists=lambda p: headers, join=lambda *parts: "/".join(parts)))
    namespace = {"sys": fake_sys, "sysconfig": fake_sysconfig, "os": fake_os}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "setup.py", "exec"), namespace)
    return namespace["nogil_layout"]()


def test_every_other_interpreter_gets_a_reason() -> None:
    assert _nogil_layout_with(version=(3, 12)) == ("py312.h", None)
    header, why = _nogil_layout_with(version=(3, 14))
    assert header is None and "CPython 3.14 has no layout" in why and "3.11, 3.12, 3.13" in why
    assert "free-threaded" in _nogil_layout_with(version=(3, 13), free_threaded=1)[1]
    assert "pypy is not CPython" in _nogil_layout_with(implementation="pypy")[1]
    assert "internal headers" in _nogil_layout_with(version=(3, 13), headers=False)[1]
    assert "Linux" in _nogil_layout_with(platform="darwin")[1]
    assert "OXP_NO_NOGIL" in _nogil_layout_with(version=(3, 11), env={"OXP_NO_NOGIL": "1"})[1]


@pytest.mark.skipif(not SUPPORTED, reason="this build is already the fallback")
def test_a_build_without_the_gil_free_capture_falls_back_and_says_why(tmp_path) -> None:
    """The engine built without a layout: every run takes the GIL-holding
    capture, and the profile says why and what it misses."""
    import os
    import shutil
    import subprocess

    shutil.copytree(ROOT / "src" / "ox_profile", tmp_path / "ox_profile",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = dict(os.environ, OXP_NO_NOGIL="1")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
                            "--build-temp", str(tmp_path / "tmp")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    for so in (tmp_path / "lib" / "ox_profile").glob("_engine*.so"):
        shutil.copy(so, tmp_path / "ox_profile")
    probe = subprocess.run([sys.executable, "-c", """if True:
        import time, ox_profile
        from ox_profile import _engine
        assert _engine.__file__.startswith(%r), _engine.__file__
        with ox_profile.Profiler(interval=0.001) as prof:
            end = time.time() + 0.2
            while time.time() < end:
                pass
        stats = prof.stats()
        print(stats["backend"]); print(stats["backend_note"]); print(stats["warning"])
        print(_engine.BUILD_INFO["nogil_note"])
        """ % str(tmp_path)], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(tmp_path)), capture_output=True,
        text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    backend, note, warning, build_note = probe.stdout.splitlines()
    assert backend == "gil"
    assert "OXP_NO_NOGIL" in note and note == build_note
    assert "GIL-holding backend" in warning and "not available here" in warning and "OXP_NO_NOGIL" in warning
