"""The user-setting error every layer may raise (a leaf module: it imports nothing of the package,
so the engines, the config checks and the CLI can all share it without an import cycle)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting the user gave (config key, option, argument) that cannot work; the message names it."""
