"""Composer integration: the ``SequenceLengthWarmup`` algorithm and the ``StabilityMonitor`` callback.

Needs the ``composer`` extra (``pip install slwdata[composer]``). The cut itself is the pure
function :func:`slwdata.truncate.truncate_batch`; the algorithm decides when and how long.

Example::

    from slwdata.composer import SequenceLengthWarmup, StabilityMonitor
    trainer = Trainer(..., algorithms=[SequenceLengthWarmup(start=8, duration="0.1dur")],
                      callbacks=[StabilityMonitor(threshold=1.5)])
"""

try:
    import composer  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ModuleNotFoundError(
        "slwdata.composer needs MosaicML Composer: pip install 'slwdata[composer]' "
        "(or use slwdata.truncate.PlainSLW in a plain PyTorch loop)",
        name="composer",
    ) from exc

from slwdata.composer.algorithm import PacedDataLoader, SequenceLengthWarmup, SLWMismatchError, registry  # noqa: F401 - importable, outside __all__
from slwdata.composer.monitors import StabilityMonitor, adam_variance_stats, loss_ratio_stats

# What a user imports.
__all__ = [
    "SequenceLengthWarmup",
    "StabilityMonitor",
    "SLWMismatchError",
    "loss_ratio_stats",
    "adam_variance_stats",
]
