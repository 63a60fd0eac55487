"""Test-only probe for tests/test_llmfoundry.py: with ``SLW_PROBE_OUT`` set, every Composer
``Trainer`` built in this process (here: by ``llmfoundry train``) gets a callback that records what
the model is fed, step by step, and the final counts, as JSON lines in that file. The YAMLs and
commands under test stay exactly as the doc shows them; this only observes."""

from __future__ import annotations

import os

if os.environ.get("SLW_PROBE_OUT"):
    import hashlib
    import json

    import composer
    from composer.core import Callback, Event

    class _Probe(Callback):
        def __init__(self, path: str) -> None:
            self.path = path

        def _write(self, row: dict) -> None:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

        def run_event(self, event, state, logger) -> None:
            ts = state.timestamp
            if event == Event.BEFORE_FORWARD:
                ids = state.batch["input_ids"]
                self._write(
                    {
                        "kind": "forward",
                        "step": int(ts.batch),
                        "epoch": int(ts.epoch),
                        "shape": list(ids.shape),
                        "tokens": int(ids.numel()),
                        "keys": sorted(state.batch),
                        "sha1": hashlib.sha1(ids.cpu().contiguous().numpy().tobytes()).hexdigest(),
                    }
                )
            elif event == Event.BATCH_END:
                self._write({"kind": "batch_end", "step": int(ts.batch), "token": int(ts.token)})
            elif event == Event.FIT_END:
                algo = next((a for a in state.algorithms if type(a).__name__ == "SequenceLengthWarmup"), None)
                dataset = getattr(state.train_dataloader, "dataset", None)
                accounts = {}
                if hasattr(dataset, "epoch_account"):
                    accounts = {e: dataset.epoch_account(e).as_dict() for e in range(int(ts.epoch) + 1)}
                self._write(
                    {
                        "kind": "fit_end",
                        "token": int(ts.token),
                        "batch": int(ts.batch),
                        "epoch": int(ts.epoch),
                        "dataset": type(dataset).__name__,
                        "train_metrics": sorted(state.train_metrics or {}),
                        "train_metric_values": {k: float(v) for k, v in state.train_metric_values.items()},
                        "slw": None
                        if algo is None
                        else {
                            "trained_tokens": algo.trained_tokens,
                            "dropped_tokens": algo.dropped_tokens,
                            "reserved_tokens": algo.reserved_tokens,
                            "schedule": algo.schedule.to_config(),
                        },
                        "accounts": accounts,
                    }
                )

    _init = composer.Trainer.__init__

    def _init_with_probe(self, *args, **kwargs):
        callbacks = kwargs.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        kwargs["callbacks"] = callbacks + [_Probe(os.environ["SLW_PROBE_OUT"])]
        _init(self, *args, **kwargs)

    composer.Trainer.__init__ = _init_with_probe
