"""Composer integration: the ``SequenceLengthWarmup`` algorithm and the ``StabilityMonitor`` callback.

Needs the ``composer`` extra (``pip install slwdata[composer]``).
"""

from slwdata.composer.algorithm import PacedDataLoader, SequenceLengthWarmup, SLWMismatchError, registry

__all__ = ["PacedDataLoader", "SequenceLengthWarmup", "SLWMismatchError", "registry"]

try:  # the monitor is optional while it is being written
    from slwdata.composer.monitors import StabilityMonitor, loss_ratio_stats  # noqa: F401

    __all__ += ["StabilityMonitor", "loss_ratio_stats"]
except ImportError:  # pragma: no cover
    pass
