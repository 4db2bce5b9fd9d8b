"""The original ox_profile API (``launchers``, ``sampling``, ``recording``),
kept verbatim on top of the C engine."""
