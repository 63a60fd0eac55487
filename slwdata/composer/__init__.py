"""Composer integration: the ``SequenceLengthWarmup`` algorithm and the ``StabilityMonitor`` callback.

Needs the ``composer`` extra (``pip install slwdata[composer]``).
"""

from slwdata.composer.algorithm import PacedDataLoader, SequenceLengthWarmup, SLWMismatchError, registry
from slwdata.composer.monitors import StabilityMonitor, adam_variance_stats, loss_ratio_stats

__all__ = [
    "PacedDataLoader",
    "SequenceLengthWarmup",
    "SLWMismatchError",
    "registry",
    "StabilityMonitor",
    "adam_variance_stats",
    "loss_ratio_stats",
]
