"""Sharing between the processes of a pre-fork server: moved to
:mod:`ox_profile.ui.core.sharing` (shared by every web integration); this
name stays for existing imports."""

from ox_profile.ui.core.sharing import (MAX_PUBLISH_INTERVAL, MIN_PUBLISH_INTERVAL,  # noqa: F401
                                        BlueprintSharing, ControlSharing)

__all__ = ["BlueprintSharing", "ControlSharing", "MIN_PUBLISH_INTERVAL", "MAX_PUBLISH_INTERVAL"]
