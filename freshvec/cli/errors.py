"""The CLI's own expected failure, and the exit codes every command keeps (scripts gate on them).

- ``EXIT_OK`` (0): done; for a check (reconcile, wait, preflight, load), it passed.
- ``EXIT_CHECK_FAILED`` (1): the command finished and its check did not pass: reconcile found drift, wait saw
  changes that never became searchable, preflight found a problem, load had rows refused.
- ``EXIT_USAGE`` (2): the command line, the config or an input file is wrong (also click's own usage errors).
- ``EXIT_FAILED`` (3): the command could not finish: a service unreachable or refusing, an unexpected error.
  A script can tell "drift" from "could not look".
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


class OperatorError(Exception):
    """An expected failure, explained in one line (no traceback needed): the command could not finish."""


class UsageError(OperatorError):
    """The operator asked for something that cannot be done as asked (exit ``EXIT_USAGE``)."""
