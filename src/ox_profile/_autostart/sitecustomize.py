"""Started in the Python child processes of ``ox-profile run --subprocesses``.

``ox-profile`` puts this directory first on the children's PYTHONPATH, so
Python imports this module at start-up.  When ``OX_PROFILE_CHILD`` is set it
profiles the process (:func:`ox_profile.shared.children.start_in_child`);
then it imports the ``sitecustomize`` this one hides, if there is one.
Nothing here may stop the child from running: every error is reported in
the run's directory and ignored.
"""

import os
import sys


def _profile_this_child():
    if not os.environ.get("OX_PROFILE_CHILD"):
        return
    try:
        from ox_profile.shared import children
    except Exception as exc:  # another interpreter, or ox_profile missing there
        _note_skipped("%s: %s" % (type(exc).__name__, exc))
        return
    children.start_in_child()


def _note_skipped(why):
    """Tell the parent this child ran but could not be profiled."""
    try:
        import json
        config = json.loads(os.environ["OX_PROFILE_CHILD"])
        directory = config["dir"]
        name = os.path.join(directory, "skipped-%d.txt" % os.getpid())
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(("%s (%s): %s" % (sys.executable, sys.version.split()[0], why))[:500])
    except Exception:
        pass


def _chain():
    """Import the sitecustomize module this one hides on sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    saved = sys.path[:]
    mine = sys.modules.pop("sitecustomize", None)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
        import importlib
        try:
            importlib.import_module("sitecustomize")
        except ImportError as exc:
            if getattr(exc, "name", None) != "sitecustomize":
                raise
            if mine is not None:
                sys.modules["sitecustomize"] = mine
    finally:
        # The program sees the path it would have seen without ox_profile.
        sys.path[:] = [p for p in saved if os.path.abspath(p or os.curdir) != here]


try:
    _profile_this_child()
except Exception:
    pass
_chain()
