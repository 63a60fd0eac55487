"""Training-stability monitors from the SLW paper (Li, Zhang, He, NeurIPS 2022, section 3).

* loss ratio: the current training loss over the minimum of all previous losses; a spike
  shows as a ratio above a threshold (the paper counts steps with ratio > 1.2);
* Adam variance state: the l1 norm and the max element of ``sqrt(exp_avg_sq)`` (the paper's
  variance statistics), which blow up together with loss spikes at large batch / learning rate.

Example::

    >>> loss_ratio_stats([4.0, 3.0, 3.9, 2.5, 2.6])
    {'steps': 5, 'max_ratio': 1.3, 'steps_above_threshold': 1, 'threshold': 1.2}
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from composer.core import Callback, State
from composer.loggers import Logger

from slwdata.stability import loss_ratio, loss_ratio_stats

__all__ = ["loss_ratio_stats", "adam_variance_stats", "StabilityMonitor"]


def adam_variance_stats(
    optimizers: Sequence[torch.optim.Optimizer] | torch.optim.Optimizer,
) -> Optional[dict[str, float]]:
    """``{"var_l1": sum sqrt(exp_avg_sq), "var_sqrt_max": max sqrt(exp_avg_sq)}`` over all parameters.

    Both statistics are taken on ``sqrt(exp_avg_sq)``, the per-parameter scale Adam divides by.
    Works with any optimizer keeping an ``exp_avg_sq`` state (torch Adam/AdamW, Composer's
    DecoupledAdamW); ``None`` if there is no such state yet. The sums stay on the device and are
    read back with a single host synchronisation.

    Example:
        >>> p = torch.nn.Parameter(torch.zeros(2))
        >>> opt = torch.optim.Adam([p]); p.sum().backward(); opt.step()
        >>> _ = opt.state[p]["exp_avg_sq"].copy_(torch.tensor([4.0, 9.0]))
        >>> adam_variance_stats(opt)
        {'var_l1': 5.0, 'var_sqrt_max': 3.0}
    """
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = [optimizers]
    l1: Optional[torch.Tensor] = None
    vmax: Optional[torch.Tensor] = None
    for opt in optimizers:
        for state in opt.state.values():
            v = state.get("exp_avg_sq") if isinstance(state, dict) else None
            if not isinstance(v, torch.Tensor) or v.numel() == 0:
                continue
            root = v.detach().float().clamp_min(0).sqrt()
            part_sum, part_max = root.sum(), root.max()
            if l1 is None or vmax is None:
                l1, vmax = part_sum, part_max
            else:
                # Parameters may sit on different devices (pipeline / CPU offload): gather on the first.
                l1 = l1 + part_sum.to(l1.device, non_blocking=True)
                vmax = torch.maximum(vmax, part_max.to(vmax.device, non_blocking=True))
    if l1 is None or vmax is None:
        return None
    var_l1, var_sqrt_max = torch.stack([l1.double(), vmax.double()]).tolist()
    return {"var_l1": var_l1, "var_sqrt_max": var_sqrt_max}


def _loss_value(state: State) -> Optional[float]:
    total = getattr(state, "total_loss_dict", None) or {}
    if "loss/train/total" in total:  # already averaged over ranks by the trainer
        return float(total["loss/train/total"])
    loss = state.loss
    if isinstance(loss, dict):
        loss = loss.get("total", sum(loss.values()))
    if isinstance(loss, (list, tuple)):
        loss = sum(loss)
    if loss is None:
        return None
    return float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)


class StabilityMonitor(Callback):
    """Logs the loss ratio every step and Adam variance statistics every ``interval`` steps.

    Metrics: ``stability/loss_ratio``, ``stability/max_loss_ratio``, ``stability/steps_above_threshold``,
    ``stability/adam_var_l1``, ``stability/adam_var_sqrt_max``; at fit end the summary under
    ``stability/summary/*``. :meth:`summary` returns the same as a dict.

    Args:
        threshold: loss-ratio threshold for counting a spike (paper: 1.2).
        interval: log the Adam statistics every this many steps (they read every parameter).
    """

    def __init__(self, threshold: float = 1.2, interval: int = 10) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.threshold = threshold
        self.interval = interval
        self.steps = 0  # losses seen (only the running statistics are kept, not the losses)
        self.best = math.inf
        self.max_ratio: Optional[float] = None
        self.steps_above = 0
        self.var_l1_max: Optional[float] = None
        self.var_sqrt_max_max: Optional[float] = None
        self.last_var: Optional[dict[str, float]] = None

    def observe_loss(self, loss: float) -> Optional[float]:
        """Feed one loss; returns its ratio to the previous minimum (None for the first)."""
        ratio = loss_ratio(loss, self.best) if self.steps else None
        if ratio is not None:
            ratio = round(ratio, 12)
            self.max_ratio = ratio if self.max_ratio is None else max(self.max_ratio, ratio)
            self.steps_above += ratio > self.threshold
        self.steps += 1
        if math.isfinite(loss):
            self.best = min(self.best, loss)
        return ratio

    def observe_optimizers(self, optimizers: Any) -> Optional[dict[str, float]]:
        stats = adam_variance_stats(optimizers)
        if stats is not None:
            self.last_var = stats
            self.var_l1_max = stats["var_l1"] if self.var_l1_max is None else max(self.var_l1_max, stats["var_l1"])
            self.var_sqrt_max_max = (
                stats["var_sqrt_max"]
                if self.var_sqrt_max_max is None
                else max(self.var_sqrt_max_max, stats["var_sqrt_max"])
            )
        return stats

    def batch_end(self, state: State, logger: Logger) -> None:
        metrics: dict[str, float] = {}
        loss = _loss_value(state)
        if loss is not None:
            ratio = self.observe_loss(loss)
            if ratio is not None:
                metrics["stability/loss_ratio"] = ratio
                metrics["stability/max_loss_ratio"] = self.max_ratio  # type: ignore[assignment]
            metrics["stability/steps_above_threshold"] = self.steps_above
        if int(state.timestamp.batch) % self.interval == 0:
            stats = self.observe_optimizers(state.optimizers)
            if stats is not None:
                metrics["stability/adam_var_l1"] = stats["var_l1"]
                metrics["stability/adam_var_sqrt_max"] = stats["var_sqrt_max"]
        if metrics:
            logger.log_metrics(metrics)

    def fit_end(self, state: State, logger: Logger) -> None:
        logger.log_metrics(
            {
                f"stability/summary/{k}": v
                for k, v in self.summary().items()
                if isinstance(v, (int, float)) and v is not None
            }
        )

    def summary(self) -> dict[str, Any]:
        """Steps seen, max loss ratio, steps above the threshold, and Adam variance maxima."""
        return {
            "steps": self.steps,
            "threshold": self.threshold,
            "max_loss_ratio": self.max_ratio,
            "steps_above_threshold": self.steps_above,
            "adam_var_l1_max": self.var_l1_max,
            "adam_var_sqrt_max_max": self.var_sqrt_max_max,
            "adam_var_l1_last": None if self.last_var is None else self.last_var["var_l1"],
            "adam_var_sqrt_max_last": None if self.last_var is None else self.last_var["var_sqrt_max"],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "best": self.best,
            "max_ratio": self.max_ratio,
            "steps_above": self.steps_above,
            "var_l1_max": self.var_l1_max,
            "var_sqrt_max_max": self.var_sqrt_max_max,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "losses" in state:  # checkpoints written before only the statistics were kept
            losses = [float(x) for x in state["losses"]]
            finite = [x for x in losses if math.isfinite(x)]
            self.steps, self.best = len(losses), (min(finite) if finite else math.inf)
        else:
            self.steps = int(state.get("steps", 0))
            self.best = float(state.get("best", math.inf))
        self.max_ratio = state.get("max_ratio")
        self.steps_above = int(state.get("steps_above", 0))
        self.var_l1_max = state.get("var_l1_max")
        self.var_sqrt_max_max = state.get("var_sqrt_max_max")
