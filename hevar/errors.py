"""hevar's error types and exit codes. The CLI turns each into one line on stderr and its code.

- :class:`UsageError` (exit 2): bad input — an option, a config key, a run folder, a path, or a
  user-defined activation that fails when called (:class:`UserFunctionError`).
- :class:`Fault` (exit 3): the environment failed hevar — a full disk, an I/O error, a scheduler
  lost mid-run, a worker process killed. Finished work is kept and the message says how to resume.
- Interrupted (Ctrl-C, exit 130), and any other exception (exit 1): a bug in hevar, shown as one
  line unless ``--debug`` or ``HEVAR_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

EXIT_USAGE = 2  # bad input, including a user function that fails
EXIT_FAULT = 3  # disk, I/O, scheduler or worker failure; resumable
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_BUG = 1  # anything else: a bug in hevar


class UsageError(Exception):
    """Bad input from the user: a CLI option, a config key, a run folder.

    The message is complete and user-facing, in the form
    "The 'depth' parameter must be an int in the range [1, inf). Got 0 instead."
    ``param`` names the offending parameter where there is one, so that a caller that knows where
    the value came from (a config file, a run's manifest) can say so.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param  # the option name as the user writes it ("sigma-w2"), or None

    def __reduce__(self):  # through a worker process's pipe with its param
        return type(self), (str(self), self.param)

    def amended(self, note: str) -> "UsageError":
        """The same error with ``note`` appended (what was saved, how to resume)."""
        return type(self)(f"{self} {note}", self.param)


class UserFunctionError(UsageError):
    """A user-defined activation (``--act MODULE:FUNCTION``) raised, exited, or returned something
    other than a real array of its input's shape (or nan at a finite input) when hevar called it."""


class Fault(Exception):
    """A failure of the environment, not of the input: a full disk, an unwritable file, a lost
    scheduler, a killed worker. The message names what failed; :meth:`amended` adds what was saved."""

    exit_code = EXIT_FAULT

    def amended(self, note: str) -> "Fault":
        return type(self)(f"{self} {note}")


# --- telling a Ctrl-C from a KeyboardInterrupt raised by user code ---------------------------------

_sigints = 0  # SIGINTs received while the handler below was installed


def _count_sigint(signum: int, frame) -> None:
    global _sigints
    _sigints += 1
    raise KeyboardInterrupt


def watch_interrupts() -> Callable[[], None]:
    """Count Ctrl-C's from here on, so that :func:`user_raised_interrupt` can tell a user function's
    ``raise KeyboardInterrupt`` from a real one. Returns the function that puts the old handler back.
    A no-op outside the main thread, or where SIGINT is not Python's default handler."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return lambda: None
    global _sigints
    _sigints = 0
    signal.signal(signal.SIGINT, _count_sigint)
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler)


def user_raised_interrupt() -> bool:
    """Whether a KeyboardInterrupt caught now cannot have come from a Ctrl-C: SIGINT is ignored here
    (a worker process, whose parent handles Ctrl-C), or counted by :func:`watch_interrupts` and none
    arrived. Elsewhere (a Python session) it is taken as a real Ctrl-C."""
    handler = signal.getsignal(signal.SIGINT)
    return handler is signal.SIG_IGN or (handler is _count_sigint and _sigints == 0)
