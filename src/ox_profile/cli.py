"""The command line: ``ox-profile run [options] script.py [args...]`` (or
``python -m ox_profile run ...``) runs a program under the profiler and writes
its profile.

* The program runs as ``__main__`` with its own ``sys.argv``; ``sys.path[0]`` is
  the script's directory (or the working directory with ``-m``), as with
  ``python script.py`` / ``python -m module``.
* Its exit status is kept; when it raises, its traceback is printed and the
  exit status is 1; Ctrl-C gives 130.  In every case the profile is written.
* Bad arguments are reported on one ``ox-profile: error: ...`` line with exit
  status 2 before the program starts.
* A signal whose default action would end the process (SIGTERM, SIGHUP,
  SIGQUIT...) ends the program like Ctrl-C does, with status 128 + signal;
  signals and a broken pipe on stderr after the program never stop the
  profile from being written (see :mod:`ox_profile._signals`).
* ``-o`` writes through to what exists and is not a regular file (``/dev/null``,
  a FIFO); a regular file is replaced atomically, a symlink followed.  If the
  output cannot be written at the end, the profile goes to a new private
  (0600) file in the temporary directory instead, and the exit status is
  non-zero.
* ``ox-profile --version`` prints the version; ``ox-profile version`` also the
  engine, its backends and the Python it was built for.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import importlib.util
import math
import os
import pkgutil  # noqa: F401  runpy.run_path imports it lazily (with typing, on 3.13): here, unsampled
import re
import resource
import runpy
import stat
import sys
import tempfile
import threading
import time
import traceback
from types import TracebackType
from typing import IO, Any, Dict, List, NoReturn, Optional, Sequence, Tuple

from ox_profile import _validate, export
from ox_profile.shared import children
from ox_profile._signals import ProgramEnd, Signals, signal_name
from ox_profile._version import __version__
from ox_profile.paths import default_roots

PROG = "ox-profile"
#: Rows of the top table by default (``--top``).
TOP_LIMIT = 15
#: Runs shorter than this show no live status line.
STATUS_DELAY = 1.0
STATUS_PERIOD = 0.5
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Options of `run` that take a value (for splitting our options from the program's).
_VALUE_OPTIONS = ("--interval", "--mode", "-o", "--output", "--format", "--backend", "--max-memory",
                  "--top")

_RUN_USAGE = ("%(prog)s [options] script.py [args...]\n"
              "       %(prog)s [options] -m module [args...]")

_RUN_EPILOG = """\
examples:
  ox-profile run script.py arg1 arg2           top table of the functions with most samples, on stderr
  ox-profile run -o profile.html script.py     and an interactive flame graph (one offline HTML file)
  ox-profile run -o out.pb.gz -m package.mod   run a module; pprof for go tool pprof, Pyroscope, Grafana
  ox-profile run --top 40 --mode cpu script.py 40 rows, only threads that use the CPU
  ox-profile run --idle script.py              the table counts waiting threads too
  ox-profile run --interval 0.0001 -o out.speedscope.json script.py   10 kHz, for speedscope

The program runs as __main__ with its own sys.argv; its exit status is kept; if
it raises or gets Ctrl-C (or SIGTERM), the profile is still written.

environment:
  OX_PROFILE_BACKEND=auto|nogil|gil   the capture backend when --backend is not given
  OX_PROFILE_READER=direct|vm|procmem how the GIL-free capture reads the interpreter's
                                      memory (default: direct copies, guarded)
"""


class UsageError(Exception):
    """Bad command line or environment, reported before the program runs."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclasses.dataclass
class RunConfig:
    """What ``ox-profile run`` was asked to do, validated."""

    interval: float
    mode: str
    backend: Optional[str]
    max_memory: Optional[int]  # bytes
    output: Optional[str]
    fmt: Optional[str]
    top: Optional[int] = TOP_LIMIT  # rows of the table; None: every function
    idle: bool = False  # the table counts the samples of waiting threads too
    script: Optional[str] = None  # absolute path, or None with a module
    module: Optional[str] = None
    args: List[str] = dataclasses.field(default_factory=list)
    subprocesses: bool = False  # profile the Python child processes too

    @property
    def target_name(self) -> str:
        """The program as the user named it."""
        return self.module if self.module is not None else os.path.basename(self.script or "")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its ``run`` sub-parser sees only ox-profile's options)."""
    parser = _Parser(prog=PROG, description="ox_profile: a low-overhead statistical profiler "
                     "for Python programs.", epilog="'%s run --help' shows the options and examples." % PROG)
    parser.add_argument("--version", action="store_true",
                        help="print the version and exit (the command 'version' says more)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run", usage=_RUN_USAGE, allow_abbrev=False,
        help="run a Python program under the profiler",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_RUN_EPILOG,
        description="Run a Python script (or module with -m) under the profiler; print the "
                    "functions with most samples and write the profile to --output.")
    run.add_argument("--interval", metavar="SECONDS", default="0.001",
                     help="time between samples (%g..%g, default 0.001)" % (_validate.MIN_INTERVAL,
                                                                                  _validate.MAX_INTERVAL))
    run.add_argument("--mode", choices=_validate.MODES, default="wall",
                     help="wall: every thread at every tick (default); cpu: only threads that used CPU")
    run.add_argument("-o", "--output", metavar="FILE",
                     help="write the profile here; the format follows the extension (%s)"
                     % ", ".join(ext for ext, _ in export.EXTENSIONS))
    run.add_argument("--format", choices=tuple(export.FORMATS),
                     help="output format (default: from the extension of --output)")
    run.add_argument("--backend", choices=_validate.BACKENDS, default="auto",
                     help="stack capture: nogil (GIL-free, CPython 3.11), gil (portable), auto (default)")
    run.add_argument("--max-memory", metavar="MiB", default=None,
                     help="memory cap of the sample database, in MiB")
    run.add_argument("--top", metavar="N", default=str(TOP_LIMIT),
                     help="rows of the top table (default %d; 'all' for every function)" % TOP_LIMIT)
    run.add_argument("--idle", action="store_true",
                     help="count in the table the samples of threads that were waiting (sleeping, blocked "
                          "on a lock or I/O), which it leaves out by default; outputs keep every sample")
    run.add_argument("--subprocesses", action="store_true",
                     help="profile the program's Python child processes too (multiprocessing with fork, "
                          "spawn or forkserver; Python programs started with subprocess): one profile, "
                          "each process's threads labelled with its pid")
    run.add_argument("-m", dest="module", metavar="MODULE",
                     help="run a library module as a script (the rest are its arguments)")
    sub.add_parser("version", help="print the version, the engine and its backends")
    return parser


def _split_run_args(args: Sequence[str]) -> Tuple[List[str], Optional[str], List[str]]:
    """(ox-profile options, script, program arguments) of the words after ``run``.

    Everything from the script name (or from ``-m MODULE``) on belongs to the
    program, even words that look like options.
    """
    ours: List[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            if i + 1 < len(args):
                return ours, args[i + 1], list(args[i + 2:])
            return ours, None, []
        if arg == "-m":
            if i + 1 >= len(args):
                raise UsageError("argument -m: expected a module name")
            return ours + ["-m", args[i + 1]], None, list(args[i + 2:])
        if arg.startswith("-m") and not arg.startswith("--"):  # -mmodule, like python
            return ours + ["-m", arg[2:]], None, list(args[i + 1:])
        if arg.startswith("-") and arg != "-":
            ours.append(arg)
            if arg in _VALUE_OPTIONS and i + 1 < len(args):
                ours.append(args[i + 1])
                i += 1
            i += 1
            continue
        return ours, arg, list(args[i + 1:])
    return ours, None, []


def _parse_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError("--interval must be a number of seconds, not %r" % (text,)) from None
    try:
        return _validate.interval(value)
    except ValueError as exc:
        raise UsageError("--%s" % exc) from None


def _parse_max_memory(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    try:
        mib = float(text)
    except ValueError:
        raise UsageError("--max-memory must be a number of MiB, not %r" % (text,)) from None
    if not math.isfinite(mib) or mib <= 0:
        raise UsageError("--max-memory must be a positive number of MiB, not %s" % (text,))
    return int(mib * 1024 * 1024)


def _parse_top(text: str) -> Optional[int]:
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError("--top must be a number of rows or 'all', not %r" % (text,)) from None
    if value < 1:
        raise UsageError("--top must be at least 1, not %d" % (value,))
    return value


def _check_output(output: str) -> None:
    """Raise UsageError when ``output`` obviously cannot be written."""
    try:
        existing: Optional[os.stat_result] = os.stat(output)  # follows symlinks
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise UsageError("cannot write %s: %s" % (output, exc.strerror or exc)) from None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise UsageError("output %s is a directory" % (output,))
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        # A device, a FIFO...: written through, so it must be writable itself.
        if not os.access(output, os.W_OK):
            raise UsageError("cannot write %s: it is not writable" % (output,))
        return
    directory = os.path.dirname(os.path.realpath(output))
    if not os.path.isdir(directory):
        raise UsageError("cannot write %s: directory %s does not exist" % (output, directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError("cannot write %s: directory %s is not writable" % (output, directory))


def _check_module(module: str) -> None:
    """Raise UsageError unless ``module`` can be run with ``-m``."""
    if not module or module.startswith("."):
        raise UsageError("-m needs an absolute module name, not %r" % (module,))
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            if importlib.util.find_spec(module + ".__main__") is None:
                raise UsageError("%s is a package and has no __main__ module to run" % (module,))
    except UsageError:
        raise
    except Exception as exc:  # ImportError from a parent package, or any error it raised
        raise UsageError("cannot find module %s (%s: %s)" % (module, type(exc).__name__, exc)) from None
    if spec is None:
        raise UsageError("no module named %s" % (module,))


def _check_script(script: str) -> str:
    """The absolute path of ``script``; UsageError unless Python could run it."""
    path = os.path.abspath(script)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "__main__.py")):
            raise UsageError("cannot run directory %s: it has no __main__.py" % (script,))
    elif not os.path.isfile(path):
        raise UsageError("cannot open script %s: no such file" % (script,))
    elif not os.access(path, os.R_OK):
        raise UsageError("cannot open script %s: permission denied" % (script,))
    return path


def parse_run(args: Sequence[str]) -> RunConfig:
    """Validate the words after ``run``; raise UsageError on any problem."""
    ours, script, prog_args = _split_run_args(args)
    parser = build_parser()
    ns = parser.parse_args(["run"] + ours)
    interval = _parse_interval(ns.interval)
    max_memory = _parse_max_memory(ns.max_memory)
    top = _parse_top(ns.top)
    if ns.module is None and script is None:
        raise UsageError("nothing to run: give a script (ox-profile run script.py) or -m module")
    fmt = ns.format
    output = ns.output
    if output is not None:
        if fmt is None:
            try:
                fmt = export.format_for_path(output)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    elif fmt is not None:
        output = "ox-profile" + export.FORMATS[fmt].extension
    if output is not None:
        _check_output(output)
    config = RunConfig(interval=interval, mode=ns.mode,
                       backend=None if ns.backend == "auto" else ns.backend,
                       max_memory=max_memory, output=output, fmt=fmt, top=top, idle=ns.idle,
                       args=prog_args, subprocesses=ns.subprocesses)
    if ns.module is not None:
        config.module = ns.module
    else:
        assert script is not None
        config.script = _check_script(script)
    return config


# -- running -------------------------------------------------------------------


class LiveStatus:
    """A one-line "elapsed, samples" status on a terminal, redrawn from a daemon
    thread about twice a second once the run is longer than ``delay``.  It
    counts what the final report counts: the samples of every thread but its
    own."""

    def __init__(self, profiler: Any, stream: IO[str], delay: float = STATUS_DELAY,
                 period: float = STATUS_PERIOD) -> None:
        self._profiler = profiler
        self._stream = stream
        self._delay = delay
        self._period = period
        self._stop = threading.Event()
        self._shown = False
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="ox_profile-status", daemon=True)

    @property
    def ident(self) -> Optional[int]:
        """The status thread's ident (its samples are left out of the profile)."""
        return self._thread.ident

    def start(self) -> None:
        """Start the status thread."""
        self._start = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        if self._stop.wait(self._delay):
            return
        while True:
            try:
                samples = self.samples()
                line = "ox_profile: %.1f s, %d samples" % (time.monotonic() - self._start, samples)
                self._stream.write("\r\x1b[K" + line)
                self._stream.flush()
                self._shown = True
            except Exception:  # a closed stream or a stopped profiler: stop drawing
                return
            if self._stop.wait(self._period):
                return

    def samples(self) -> int:
        """Samples of the program so far (this thread's own left out)."""
        per_thread = self._profiler.thread_samples()
        return sum(per_thread.values()) - per_thread.get(self._thread.ident, 0)

    def stop(self) -> None:
        """Stop the thread and erase the status line."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
        if self._shown:
            try:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
            except Exception:
                pass


def say(text: str) -> None:
    """Print a line on stderr; never fails.  When the reader of stderr is gone
    (``... 2>&1 | head -1``), stderr is pointed at /dev/null so that nothing
    later (nor the interpreter's last flush) fails on it."""
    stream = sys.stderr
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:
        _silence(stream)
    except (OSError, ValueError, AttributeError):  # closed or replaced by the program
        pass


def _silence(stream: Any) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _exit_status(exc: SystemExit) -> int:
    """The process status Python gives for ``sys.exit(code)``."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    say(str(code))
    return 1


def _print_program_traceback(exc: BaseException) -> None:
    """The traceback of ``exc`` without the frames of ox_profile and runpy."""
    ours = (__name__, runpy.__name__)
    tb: Optional[TracebackType] = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in ours:
        tb = tb.tb_next
    try:
        traceback.print_exception(type(exc), exc, tb)
    except BrokenPipeError:
        _silence(sys.stderr)
    except Exception:  # a closed or replaced stderr: the profile matters more
        pass


def _unjoined_threads() -> List[threading.Thread]:
    """The program's non-daemon threads still running."""
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]


def _join_threads(threads: List[threading.Thread]) -> int:
    """Wait for the program's non-daemon ``threads``, as the interpreter would
    at exit; -1, or the exit status when a signal or Ctrl-C stopped the wait."""
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        say("\nox_profile: interrupted (KeyboardInterrupt) while waiting for the program's threads")
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        what = signal_name(exc.signum) if isinstance(exc, ProgramEnd) else "SystemExit"
        say("ox_profile: %s while waiting for the program's threads" % what)
        return _exit_status(exc)
    return -1


def _run_program(config: RunConfig, program_path: Optional[List[str]] = None,
                 sampling: Optional[Any] = None) -> int:
    """Run the program in this process as ``__main__``; return its exit status.
    ``program_path`` receives ``sys.path`` as the program left it; ``sampling``
    (a started, paused profiler) samples from just before the program runs
    to once its threads are joined, and not the launcher's own work."""
    saved_argv = sys.argv[:]
    saved_path0 = sys.path[0] if sys.path else None
    if config.module is not None:
        sys.argv = [config.module] + config.args
    else:
        assert config.script is not None
        sys.argv = [config.script] + config.args
        directory = config.script if os.path.isdir(config.script) else os.path.dirname(config.script)
        if sys.path:
            sys.path[0] = directory
        else:
            sys.path.append(directory)
    try:
        try:
            if sampling is not None:
                sampling.resume()
            if config.module is not None:
                runpy.run_module(config.module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(config.script, run_name="__main__")
            status = 0
        except SystemExit as exc:
            status = _exit_status(exc)
        except KeyboardInterrupt:
            say("\nox_profile: interrupted (KeyboardInterrupt)")
            return EXIT_INTERRUPTED
        except BaseException as exc:
            _print_program_traceback(exc)
            status = 1
        # The launcher's own look at the threads is not the program's work:
        # sampling waits while it looks, and goes on only if there are
        # threads to wait for (the program's, still running).
        if sampling is not None:
            sampling.pause()
        threads = _unjoined_threads()
        if not threads:
            return status
        if sampling is not None:
            sampling.resume()
        stopped = _join_threads(threads)
        return status if stopped < 0 else stopped
    finally:
        if sampling is not None:
            sampling.pause()
        if program_path is not None:
            program_path[:] = sys.path
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0


def _wrapper_frames(launcher: str) -> str:
    """A regular expression matching the functions that run the program (ox_profile's
    command line, runpy, the ``ox-profile`` launcher), left out of the top table."""
    files = {os.path.abspath(os.path.join(os.path.dirname(__file__), "__main__.py"))}
    if launcher and os.path.basename(launcher) not in ("-c", "-m"):
        files.update({launcher, os.path.abspath(launcher)})
    # runpy looks for an importer for the script's path before running it.
    return "|".join([r"^runpy\.", r"^<frozen runpy>$", r"^pkgutil\.get_importer$", r"^zipimport\.",
                     "^" + re.escape(__name__) + r"\.", r"^ox_profile\._signals\."]
                    + ["^%s$" % re.escape(f) for f in sorted(files)])


def _format_options(config: RunConfig) -> Dict[str, Any]:
    if config.fmt == "html":
        return {"title": "ox_profile: %s" % config.target_name}
    if config.fmt == "speedscope":
        return {"name": "ox_profile: %s" % config.target_name}
    return {}


def _write_fallback(data: bytes, fmt: str) -> str:
    """Write ``data`` to a new private (0600) file in the temporary directory;
    its path.  The name is unpredictable and the file created exclusively, so
    nothing planted there can redirect the write."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix="ox-profile-%s-%d-" % (stamp, os.getpid()),
                                suffix=export.FORMATS[fmt].extension, dir=tempfile.gettempdir())
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return path


def _write_profile(profile: Any, config: RunConfig, signals: Signals) -> bool:
    """Write the profile to config.output, or else to a fallback file; True if
    it went where it was asked.  A signal while writing to the output (which
    may block: a FIFO nobody reads) gives up that write for the fallback."""
    assert config.output is not None and config.fmt is not None
    data: Optional[bytes] = None
    try:
        data = export.render_bytes(profile, config.fmt, **_format_options(config))
        with signals.interruptible():
            path = export.write(config.output, data)
        say("ox_profile: wrote %s profile to %s" % (config.fmt, path))
        return True
    except Exception as exc:
        say("%s: error: could not write the profile to %s: %s" % (PROG, config.output, exc))
    # Same format in the temp dir, then the simplest format if rendering itself failed.
    attempts = [(config.fmt, data)] if data is not None else []
    attempts.append(("collapsed", None))
    for fmt, rendered in attempts:
        try:
            path = _write_fallback(rendered if rendered is not None else export.render_bytes(profile, fmt), fmt)
        except Exception as exc:
            say("%s: error: could not write the %s profile to the temporary directory %s either: %s"
                % (PROG, fmt, tempfile.gettempdir(), exc))
            continue
        say("ox_profile: wrote %s profile to %s instead" % (fmt, path))
        return False
    return False


def run(config: RunConfig, profiler_factory: Any = None) -> int:
    """Profile the program of ``config``, report and write the profile; the exit status."""
    saved_path = sys.path[:]
    try:
        return _run(config, profiler_factory)
    finally:
        sys.path[:] = saved_path


def _run(config: RunConfig, profiler_factory: Any) -> int:
    if profiler_factory is None:
        from ox_profile import Profiler as profiler_factory
    kwargs: Dict[str, Any] = {"interval": config.interval, "mode": config.mode,
                              "backend": config.backend}
    if config.max_memory is not None:
        kwargs["max_memory"] = config.max_memory
    if config.module is not None:
        # `python -m` puts the working directory first on the path.
        if sys.path:
            sys.path[0] = os.getcwd()
        else:
            sys.path.append(os.getcwd())
        _check_module(config.module)
    try:
        profiler = profiler_factory(**kwargs)
    except (ValueError, TypeError, RuntimeError, OSError, NotImplementedError) as exc:
        raise UsageError("cannot create the profiler: %s" % (exc,)) from None

    launcher = sys.argv[0] if sys.argv else ""
    stream = sys.stderr
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    status = LiveStatus(profiler, stream) if is_tty else None
    pid = os.getpid()
    if status is not None:
        status.start()  # before the profiler, so that starting it is not in the profile
    children_cpu = _children_cpu()
    try:
        profiler.start_paused()  # sampling starts with the program (_run_program)
    except BaseException:
        if status is not None:
            status.stop()
        raise
    program_path: List[str] = []
    signals = Signals().catch()
    child_run = None
    if config.subprocesses:
        child_run = children.prepare(profiler, dict(kwargs))
    else:
        # Children are not followed: a forked one needs no sampler.
        profiler.rearm_after_fork = False
    try:
        try:
            code = _run_program(config, program_path, sampling=profiler)
        finally:
            signals.ending()  # from here on, signals never stop the profile from being written
    except KeyboardInterrupt:  # arrived between the program and the line above
        code = EXIT_INTERRUPTED
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    try:
        if os.getpid() != pid:
            # A child the program forked, which returned instead of exiting: the
            # parent writes the profile.
            return code
        profiler.stop()
        if status is not None:
            status.stop()
        if child_run is None:
            _say_children_not_profiled(_children_cpu() - children_cpu)
        program_code = code
        code = _report(profiler, config, launcher, stream, is_tty, status, signals, code, program_path,
                       child_run)
        if signals.late is not None and program_code == 0:
            code = 128 + signals.late  # stopped by a signal after all
        return code
    finally:
        if child_run is not None and os.getpid() == pid:
            child_run.close()
        signals.restore()


#: Children using less CPU than this (seconds) are not worth a note.
CHILDREN_CPU_NOTE = 0.05


def _children_cpu() -> float:
    """CPU seconds used by this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _say_children_not_profiled(seconds: float) -> None:
    if seconds >= CHILDREN_CPU_NOTE:
        say("ox_profile: child processes used %.2f s of CPU and are not in this profile; "
            "add --subprocesses to profile the Python ones" % seconds)


def _report(profiler: Any, config: RunConfig, launcher: str, stream: Any, is_tty: bool,
            status: Optional[LiveStatus], signals: Signals, code: int,
            program_path: Optional[List[str]] = None, child_run: Any = None) -> int:
    """Print the top table and write the profile; the exit status.
    ``program_path``: the program's ``sys.path``, which file names are shown
    relative to; ``child_run``: the program's child processes to merge in
    (--subprocesses)."""
    try:
        # File names are shown relative to the program's sys.path (its script's
        # directory first), not ours.
        profile = profiler.snapshot(path_roots=default_roots(program_path or None))
    except Exception as exc:  # out of memory, most likely: nothing left to write
        say("%s: error: could not read the profile: %s: %s" % (PROG, type(exc).__name__, exc))
        return code if code != 0 else 1
    if child_run is not None:
        try:
            profile, notes = children.merged_profile(child_run, profile)
        except Exception as exc:  # keep the program's own profile rather than lose it
            say("%s: warning: could not merge the child processes' profiles: %s" % (PROG, exc))
        else:
            for note in notes:
                say("ox_profile: %s" % note)
    try:
        # The frames of ox_profile's command line and runpy sit under the
        # program's own <module>: leave them out of every output.
        profile = profile.strip_root_frames(_wrapper_frames(launcher))
    except Exception as exc:  # keep the unstripped profile rather than lose it
        say("%s: warning: could not trim the launcher's frames: %s" % (PROG, exc))
    if status is not None and status.ident is not None:
        # The status thread is this process's (process 0 of a merged profile).
        own = [t.index for t in profile.threads if t.ident == status.ident and t.process <= 0]
        if own:
            profile = profile.filter(threads=[t.index for t in profile.threads if t.index not in own])
    try:
        table = export.render(profile, "text", limit=config.top, color=is_tty, idle=config.idle,
                              exclude=re.compile(_wrapper_frames(launcher)))
        with signals.interruptible():  # a stalled stderr must not keep the profile from its file
            stream.write(table)
            stream.flush()
    except BrokenPipeError:
        _silence(stream)
    except Exception as exc:  # never let the report stop the profile from being written
        say("%s: error: could not print the report: %s" % (PROG, exc))
    if config.output is not None and not _write_profile(profile, config, signals):
        return code if code != 0 else 1
    return code


def version_text(verbose: bool = False) -> str:
    """``ox-profile <version>``; with ``verbose``, also the Python, the engine
    file and the capture backends it was built with."""
    lines = ["%s %s" % (PROG, __version__)]
    if verbose:
        import platform

        from ox_profile import _engine
        lines.append("python %s (%s) %s" % (platform.python_version(), platform.python_implementation(),
                                             sys.executable))
        lines.append("engine %s" % (_engine.__file__,))
        available, detail = _engine.nogil_available()
        if available:
            layout = _engine.BUILD_INFO.get("layout")
            lines.append("backends: nogil (GIL-free capture, %sreader %s) and gil (portable); default nogil"
                         % ("layout %s, " % layout if layout else "", detail))
        else:
            lines.append("backends: gil (portable) only; nogil not available: %s" % (detail,))
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``ox-profile`` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if not args or args[0] in ("-h", "--help"):
            parser.print_help(sys.stdout if args else sys.stderr)
            return 0 if args else EXIT_USAGE
        if args[0] in ("--version", "-V"):
            sys.stdout.write(version_text())
            return 0
        if args[0] == "version":
            if len(args) > 1:
                raise UsageError("'version' takes no arguments")
            sys.stdout.write(version_text(verbose=True))
            return 0
        if args[0] != "run":
            hint = " (did you mean: %s run %s?)" % (PROG, " ".join(args)) if args[0].endswith(".py") else ""
            raise UsageError("unknown command %r; the commands are 'run' and 'version'%s" % (args[0], hint))
        if any(a in ("-h", "--help") for a in _split_run_args(args[1:])[0]):
            parser.parse_args(["run", "--help"])  # prints the help and exits 0
        config = parse_run(args[1:])
        code = run(config)
    except UsageError as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if _unjoined_threads():
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """Exit without waiting for the program's threads again: a signal or
    Ctrl-C already stopped that wait, and the profile is written.  The
    program's atexit functions run first, as at a normal exit."""
    try:
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - exiting anyway
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)
