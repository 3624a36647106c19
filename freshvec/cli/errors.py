"""The CLI's own expected failure: ``OperatorError``, one line a person can act on (no traceback)."""

from __future__ import annotations


class OperatorError(Exception):
    """An expected failure, explained in one line (no traceback needed)."""
