"""The ``slw_eval_curve`` callback: a trial's validation curve, one JSON line per evaluation.

Registered under llm-foundry's ``llmfoundry_callbacks`` entry point, so a YAML (or ``slwdata
tune``'s per-trial overrides) turns it on with ``callbacks: {slw_eval_curve: {path: ...}}``.
Every rank computes the metrics (torchmetrics syncs them across ranks); rank 0 writes.
"""

from __future__ import annotations

import json
from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

__all__ = ["EvalCurveRecorder"]


class EvalCurveRecorder(Callback):
    """Append ``{"kind": "eval", "batch", "token", "metrics"}`` to ``path`` at each evaluation, and
    ``{"kind": "fit_end", "batch", "token"}`` when training ends.

    Example::

        trainer = Trainer(..., callbacks=[EvalCurveRecorder("/tmp/curve.jsonl")])
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, record: dict[str, Any]) -> None:
        if dist.get_global_rank() == 0:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def eval_end(self, state: State, logger: Logger) -> None:
        metrics = {
            f"{label}/{name}": float(m.compute()) for label, ms in state.eval_metrics.items() for name, m in ms.items()
        }
        ts = state.timestamp
        self._write({"kind": "eval", "batch": int(ts.batch), "token": int(ts.token), "metrics": metrics})

    def fit_end(self, state: State, logger: Logger) -> None:
        ts = state.timestamp
        self._write({"kind": "fit_end", "batch": int(ts.batch), "token": int(ts.token)})
