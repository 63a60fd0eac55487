"""The paper's instability measure, the loss ratio, as plain Python (no torch, no Composer).

The ratio at step ``i >= 1`` is ``loss[i] / min(loss[:i])`` (Li, Zhang, He, NeurIPS 2022); a step
counts as a spike when it exceeds a threshold (1.2 in the paper). Used by
:class:`slwdata.composer.StabilityMonitor` during training and by the quickstart's report.

Example::

    >>> loss_ratio_stats([4.0, 3.0, 3.9, 2.5, 2.6])
    {'steps': 5, 'max_ratio': 1.3, 'steps_above_threshold': 1, 'threshold': 1.2}
    >>> loss_ratios([4.0, 3.0, 3.9, 2.0])
    [1.0, 0.75, 1.3, 0.6666666666666666]
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

__all__ = ["LOSS_RATIO_THRESHOLD", "loss_ratio", "loss_ratio_stats", "loss_ratios"]

LOSS_RATIO_THRESHOLD = 1.2


def loss_ratio(loss: float, best: float) -> Optional[float]:
    """One step's ratio: ``loss / best`` (best = min of the earlier finite losses); ``None`` when
    there is no earlier finite loss. A non-finite loss is the worst spike (``inf``)."""
    if not math.isfinite(loss):
        return math.inf  # a NaN/inf loss is the worst spike
    if best == math.inf:
        return None  # no finite loss before this one
    if best > 0:
        return loss / best
    return 1.0 if loss <= best else math.inf


def loss_ratio_stats(losses: Iterable[float], threshold: float = LOSS_RATIO_THRESHOLD) -> dict[str, Any]:
    """Loss-ratio statistics of a loss sequence (no Composer needed).

    The ratio at step ``i >= 1`` is ``losses[i] / min(losses[:i])``; step 0 has no ratio.
    Non-finite losses count as above the threshold (a NaN is the worst spike).
    """
    steps, above, max_ratio = 0, 0, None
    best = math.inf
    for loss in losses:
        loss = float(loss)
        ratio = loss_ratio(loss, best) if steps > 0 else None
        if ratio is not None:
            max_ratio = ratio if max_ratio is None else max(max_ratio, ratio)
            above += ratio > threshold
        if math.isfinite(loss):
            best = min(best, loss)
        steps += 1
    return {
        "steps": steps,
        "max_ratio": None if max_ratio is None else round(max_ratio, 12),
        "steps_above_threshold": above,
        "threshold": threshold,
    }


def loss_ratios(losses: Sequence[float]) -> list[float]:
    """The ratio at every step, for plots; the first step (no earlier loss) is 1.0."""
    out: list[float] = []
    best = math.inf
    for loss in losses:
        ratio = loss_ratio(float(loss), best)
        out.append(1.0 if ratio is None else ratio)
        if math.isfinite(loss):
            best = min(best, loss)
    return out
