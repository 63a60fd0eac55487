"""Composer integration: the ``SequenceLengthWarmup`` algorithm and the ``StabilityMonitor`` callback.

Needs the ``composer`` extra (``pip install slwdata[composer]``).
"""

try:
    import composer  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ModuleNotFoundError(
        "slwdata.composer needs MosaicML Composer: pip install 'slwdata[composer]' "
        "(or use slwdata.truncate.PlainSLW in a plain PyTorch loop)",
        name="composer",
    ) from exc

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
