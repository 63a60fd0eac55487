"""The error types that ``slwdata`` and ``converters`` raise for bad input, settings or faults.

Both packages import this module (and it imports nothing of theirs), so no import runs in a
circle; ``slwdata.cli`` prints a :class:`UserError` as one line and exits non-zero.
"""

from __future__ import annotations

__all__ = ["UserError", "ConvertError", "RemoteError", "ConvertInterrupted"]


class UserError(Exception):
    """An error caused by input or configuration; printed without a traceback."""


class ConvertError(UserError):
    """Bad input or configuration in ``slwdata convert`` (message names file/line/setting)."""


class RemoteError(ConvertError):
    """An object-store call failed for good; ``convert`` adds what was kept."""


class ConvertInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``convert``; the message says what was kept (slwdata.cli prints it)."""
