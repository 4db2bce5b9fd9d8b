"""Brendan Gregg's folded stacks (``root;caller;leaf 12`` per line), the input of
flamegraph.pl, inferno and speedscope's importer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.profile import Profile

extension = ".collapsed"
binary = False


def render(profile: "Profile", names: str = "qualname",
           frame_names: Optional[Sequence[str]] = None) -> str:
    """The folded stacks of ``profile``, one distinct stack per line, root first.

    ``names`` picks the frame labels: ``"qualname"`` (``module.qualname (file:line)``,
    the file relative to the ``sys.path`` entry it was imported from)
    or ``"seed"`` (the original ox_profile's ``function(module)``); ``frame_names``
    gives one label per function explicitly instead.  Semicolons and line breaks in
    labels are replaced, since they would break the format.
    """
    if frame_names is None:
        if names not in ("qualname", "seed"):
            raise ValueError("names must be 'qualname' or 'seed', not %r" % (names,))
        frame_names = profile.frame_names(names)
    clean = [_clean(n) for n in frame_names]
    out = profile.folded(clean)
    if out and not out.endswith("\n"):
        out += "\n"
    return out


def _clean(name: str) -> str:
    if ";" in name or "\n" in name or "\r" in name:
        name = name.replace(";", ":").replace("\n", " ").replace("\r", " ")
    return name
