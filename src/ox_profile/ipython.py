"""IPython and Jupyter: ``%load_ext ox_profile``, then

* ``%%ox_profile [options]`` at the top of a cell profiles the cell;
* ``%ox_profile [options] statement`` profiles one statement.

The result shows as the interactive flame graph (a self-contained HTML page
in an iframe: no network) where the front end shows HTML, and as the top
table in plain text where it cannot (terminal IPython).  Options:

  --interval SECONDS   time between samples (default 0.001)
  --mode wall|cpu      wall: every thread at every tick; cpu: threads using the CPU
  --backend NAME       auto (default), nogil or gil
  --top N              rows of the plain-text table (default 15)
  -o FILE              also write the profile to FILE (format from the extension)
  -r                   return the Profile instead of displaying it
  --all-threads        keep the threads that were running before the cell
                       (the kernel's own: history, heartbeat...)

Only the code of the cell (or statement) and the threads it starts are kept:
the frames of IPython and the kernel that ran it are cut from the stacks.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import threading
from typing import Any, FrozenSet, List, NoReturn, Optional, Tuple

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from ox_profile import _validate, export
from ox_profile.profile import Function, Profile
from ox_profile.profiler import Profiler

__all__ = ["OxProfileMagics", "load_ipython_extension", "parse_line"]

#: Rows of the plain-text table by default.
TOP_ROWS = 15

_OPTION = re.compile(r"(--?[A-Za-z][\w-]*)(=\S+)?")
#: Functions of the magic and the profiler, left out of the table.
_OWN_FRAMES = re.compile(r"^ox_profile\.(ipython|profiler)\.")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError("%%ox_profile: %s" % (message,))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%ox_profile", add_help=False)
    parser.add_argument("-i", "--interval", type=float, default=0.001)
    parser.add_argument("--mode", choices=_validate.MODES, default="wall")
    parser.add_argument("--backend", choices=_validate.BACKENDS, default="auto")
    parser.add_argument("-t", "--top", type=int, default=TOP_ROWS)
    parser.add_argument("-o", "--output", default=None)
    parser.add_argument("-r", "--return", dest="return_profile", action="store_true")
    parser.add_argument("--all-threads", action="store_true")
    return parser


_TAKES_VALUE = {"-i", "--interval", "--mode", "--backend", "-t", "--top", "-o", "--output"}
_FLAGS = {"-r", "--return", "--all-threads"}


def parse_line(line: str) -> Tuple[argparse.Namespace, str]:
    """(options, statement) of a magic's line: the leading options, and the
    rest of the line verbatim.  Raises IPython's UsageError on a bad option."""
    words: List[str] = []
    rest = line.lstrip()
    while rest.startswith("-"):
        m = _OPTION.match(rest)
        if m is None or m.group(1) not in _TAKES_VALUE | _FLAGS:
            raise UsageError("%%ox_profile: unknown option %s" % (rest.split()[0],))
        words.append(m.group(0))
        rest = rest[m.end():].lstrip()
        if m.group(1) in _TAKES_VALUE and m.group(2) is None:
            value = rest.split(None, 1)
            if not value:
                raise UsageError("%%ox_profile: option %s needs a value" % (m.group(1),))
            words.append(value[0])
            rest = value[1].lstrip() if len(value) > 1 else ""
    opts = _parser().parse_args(words)
    try:
        opts.interval = _validate.interval(opts.interval)
    except ValueError as exc:
        raise UsageError("%%ox_profile: --%s" % (exc,)) from None
    if opts.top < 1:
        raise UsageError("%%ox_profile: --top must be at least 1, not %d" % (opts.top,))
    if opts.output is not None:
        try:
            export.format_for_path(opts.output)
        except ValueError as exc:
            raise UsageError("%%ox_profile: %s" % (exc,)) from None
    return opts, rest


def _functions_on_stack() -> FrozenSet[Tuple[str, int, str]]:
    """(file, first line, qualname) of every function on this thread's stack:
    the frames of whatever ran the magic."""
    found = set()
    frame: Any = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        found.add((code.co_filename, code.co_firstlineno, code.co_qualname))
        frame = frame.f_back
    return frozenset(found)


def trim(profile: Profile, runner: FrozenSet[Tuple[str, int, str]], keep_threads: Optional[FrozenSet[int]],
         own_thread: int) -> Profile:
    """``profile`` without the frames of the code that ran the magic (at the
    root of the stacks) and, unless ``keep_threads`` is None, only the thread
    ``own_thread`` and the threads not in ``keep_threads`` (that is, started
    since)."""
    def ran_it(func: Function) -> bool:
        return (func.filename, func.firstlineno, func.qualname) in runner
    trimmed = profile.strip_root_frames(ran_it)
    if keep_threads is None:
        return trimmed
    kept = [t.index for t in trimmed.threads if t.ident == own_thread or t.ident not in keep_threads]
    return trimmed.filter(threads=kept)


@magics_class
class OxProfileMagics(Magics):
    """The ``%ox_profile`` line magic and ``%%ox_profile`` cell magic."""

    @no_var_expand
    @line_cell_magic
    def ox_profile(self, line: str = "", cell: Optional[str] = None) -> Optional[Profile]:
        """Profile a statement (``%ox_profile [options] stmt``) or a cell
        (``%%ox_profile [options]``) and show its flame graph and top table.

        Options: --interval SECONDS, --mode wall|cpu, --backend auto|nogil|gil,
        --top N (rows of the text table), -o FILE (also save it), -r (return
        the Profile instead of showing it), --all-threads (keep the threads
        that were running before)."""
        opts, statement = parse_line(line)
        if cell is not None and statement.strip():
            raise UsageError("%%%%ox_profile: options only on the %%%%ox_profile line, not a statement: %r"
                             % (statement.strip(),))
        source = cell if cell is not None else statement
        if not source.strip():
            raise UsageError("%ox_profile: nothing to profile (usage: %ox_profile [options] statement, "
                             "or %%ox_profile [options] at the top of a cell)")
        code = self._compile(source)
        profile, error = self._run(code, opts)
        if opts.output is not None:
            path = export.save(profile, opts.output)
            print("ox_profile: wrote %s profile to %s" % (export.format_for_path(path), path))
        if error is not None or not opts.return_profile:
            self._display(profile, opts.top, source)
        if error is not None:
            raise error
        return profile if opts.return_profile else None

    def _compile(self, source: str) -> Any:
        shell = self.shell
        assert shell is not None  # magics are registered with a shell
        transformed = shell.transform_cell(source)
        try:
            filename = shell.compile.cache(transformed, raw_code=source)
        except Exception:  # an IPython without the cache: tracebacks show no source
            filename = "<ox_profile>"
        tree = ast.parse(transformed, filename=filename)
        return shell.compile(tree, filename, "exec")

    def _run(self, code: Any, opts: argparse.Namespace) -> Tuple[Profile, Optional[BaseException]]:
        before = None if opts.all_threads else frozenset(t.ident for t in threading.enumerate()
                                                        if t.ident is not None)
        runner = _functions_on_stack()
        try:
            profiler = Profiler(interval=opts.interval, mode=opts.mode,
                                backend=None if opts.backend == "auto" else opts.backend)
        except (ValueError, RuntimeError, NotImplementedError) as exc:
            raise UsageError("%%ox_profile: cannot create the profiler: %s" % (exc,)) from None
        error: Optional[BaseException] = None
        assert self.shell is not None
        # Sampling only from resume() to pause(), both quick, so that the
        # samples are the code's, not those of starting and joining the
        # sampler thread.
        profiler.start_paused()
        try:
            profiler.resume()
            try:
                exec(code, self.shell.user_ns)
            except BaseException as exc:  # shown after the profile, then raised again
                error = exc
            finally:
                profiler.pause()
        finally:
            profiler.stop()
        profile = trim(profiler.snapshot(), runner, before, threading.get_ident())
        return profile, error

    def _display(self, profile: Profile, top: int, source: str) -> None:
        from IPython.display import display

        from ox_profile.export import text
        from ox_profile.web import render_inline
        first = source.strip().splitlines()[0] if source.strip() else ""
        title = "ox_profile: %s" % (first if len(first) <= 60 else first[:57] + "...")
        # (a sample may land in the magic itself, between resuming the
        # sampler and running the code: not a row of the table)
        display({"text/plain": text.render(profile, limit=top, exclude=_OWN_FRAMES).rstrip("\n"),
                 "text/html": render_inline(profile, title=title)}, raw=True)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (``%load_ext ox_profile``)."""
    ipython.register_magics(OxProfileMagics)
