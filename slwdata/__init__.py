"""slwdata: Sequence Length Warmup at scale.

The top-level package stays importable without torch or numpy: pacing is plain arithmetic.
Heavier pieces live in submodules (``slwdata.dataset``, ``slwdata.truncate``, ``slwdata.composer``).

Example:
    >>> from slwdata import PacingSchedule
    >>> PacingSchedule(start=8, end=1024, duration="100ba").seq_len(step=50)
    512
"""

from slwdata.pacing import Duration, PacingSchedule, Progress, parse_duration

__all__ = ["PacingSchedule", "Duration", "Progress", "parse_duration", "__version__"]

__version__ = "0.1.0"
