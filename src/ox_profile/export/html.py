"""A self-contained HTML page with an interactive flame graph (no network needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ox_profile.profile import Profile

extension = ".html"
binary = False


def render(profile: "Profile", title: Optional[str] = None) -> str:
    """The HTML report of ``profile`` (see :func:`ox_profile.web.render_report`)."""
    from ox_profile.web import render_report

    return render_report(profile, title=title)
