"""The version of ox_profile: the one place it is written (pyproject.toml reads it)."""

__version__ = "0.3.0"
