"""The one user-error type. The CLI turns it into a one-line message and exit code 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: a CLI option, a config key, a run folder.

    The message is complete and user-facing, in the form
    "The 'depth' parameter must be an int in the range [1, inf). Got 0 instead."
    ``param`` names the offending parameter where there is one, so that a caller that knows where
    the value came from (a config file, a run's manifest) can say so.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param  # the option name as the user writes it ("sigma-w2"), or None
