"""The one user-error type. The CLI turns it into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: a CLI option, a config key, a run folder.

    The message is complete and user-facing, in the form
    "The 'depth' parameter must be an int in the range [1, inf). Got 0 instead."
    """
