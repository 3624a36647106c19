"""The one error a bad pipeline config raises."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid pipeline config; ``field`` is the dotted path of the offending setting."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field = field_path
        super().__init__(f"invalid config field '{field_path}': {message}")
