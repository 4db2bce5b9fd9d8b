"""Our line-table decoder (used without the GIL) against CPython's own."""

from __future__ import annotations

import importlib
import types

from ox_profile import _engine

MODULES = ["json.decoder", "json.encoder", "argparse", "asyncio.base_events", "collections", "dataclasses",
           "email.message", "inspect", "re._parser", "threading", "typing", "pathlib", "tarfile", "zipfile"]


def all_code(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from all_code(const)


def test_decoder_matches_cpython_on_stdlib_code() -> None:
    checked = 0
    for name in MODULES:
        module = importlib.import_module(name)
        source_code = compile(open(module.__file__).read(), module.__file__, "exec")
        for code in all_code(source_code):
            # co_lines() gives CPython's (start, end, line) per byte range.
            for start, end, line in code.co_lines():
                for offset in range(start, end, 2):
                    expected = line if line is not None else -1
                    assert _engine._addr2line(code, offset // 2) == expected, (code, offset)
                    checked += 1
    assert checked > 50000


def test_decoder_beyond_the_table_gives_first_line() -> None:
    def f() -> int:
        return 1
    assert _engine._addr2line(f.__code__, 10 ** 6) == f.__code__.co_firstlineno
    assert _engine._addr2line(f.__code__, -1) == f.__code__.co_firstlineno
