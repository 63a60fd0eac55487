"""Trials for ``slwdata tune``: each one an ordinary, shortened run of the user's own training setup.

A trial trains the first ``trial_length`` of the full run with SLW at ``(start, duration)`` and
returns its validation curve. Everything else stays as the user configured it; only four
things change, and all four so that the trial follows the *full* run's course:

- ``max_duration`` becomes the trial length;
- the LR warmup and the LR schedule's ``t_max`` become absolute (a ``dur`` fraction would
  otherwise shrink with the shortened run);
- SLW's ``start`` and ``duration`` are the trial's;
- validation runs every ``eval_interval``.

Runners:

- :class:`ExampleTrainerTrials`: ``examples/train_slw.py`` and its YAML configs, each trial a
  subprocess (optionally under a launcher such as ``composer -n 8``);
- :class:`LLMFoundryTrials`: an llm-foundry training YAML, each trial ``llmfoundry train`` in its
  own process, its validation curve recorded by the ``slw_eval_curve`` callback;
- :class:`ComposerFactoryTrials`: a function that builds a Composer ``Trainer``, in process.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from slwdata.pacing import Duration
from slwdata.shards import read_meta_fields
from slwdata.tune.search import Curve

__all__ = [
    "TuneSetupError",
    "ExampleTrainerTrials",
    "LLMFoundryTrials",
    "ComposerFactoryTrials",
    "resolve_amount",
    "set_dotted",
    "val_tokens_needed",
]


class TuneSetupError(ValueError):
    """The setup cannot be tuned as given (said before any trial runs)."""


def val_tokens_needed(ratio: float, token_loss_std: float = 3.0, sigmas: float = 5.0) -> int:
    """Validation tokens for a ``ratio`` rise in perplexity to stand ``sigmas`` standard errors clear.

    A 1.3x perplexity is a 0.26-nat rise of the mean validation loss; per-token losses of a small
    LM spread by about 3 nats, so the mean of ``n`` tokens wanders by about ``3 / sqrt(n)``
    (fewer independent tokens than that in practice, hence the margin).

    Example:
        >>> val_tokens_needed(1.3)
        3269
    """
    return int(math.ceil((sigmas * token_loss_std / math.log(ratio)) ** 2))


def resolve_amount(spec: Any, total: Duration, what: str) -> Duration:
    """An absolute amount for ``spec`` (``"0.02dur"`` of ``total``, or ``"300ba"`` as is)."""
    try:
        d = Duration.parse(spec)
    except ValueError as exc:
        raise TuneSetupError(f"{what}: {exc}") from exc
    if d.unit != "dur":
        return d
    if total.unit == "dur":
        raise TuneSetupError(f"{what} is {spec!r}, a fraction of the run, but the run's length is itself a fraction")
    return Duration(max(1, int(round(d.value * total.value))), total.unit)


def _curve_from(points: Sequence[Sequence[float]], unit: str, trained_tokens: int, wall_s: float) -> Curve:
    """``[(steps, tokens, loss), ...]`` -> perplexity by ``unit`` progress."""
    col = {"ba": 0, "tok": 1}[unit]
    out = []
    for p in points:
        loss = float(p[2])
        out.append((int(p[col]), math.exp(loss) if loss < 700 else math.inf))
    return Curve(out, trained_tokens, wall_s)


def _run_length_and_warmup(cfg: dict[str, Any], lr_warmup: str | None, where: Path) -> tuple[Duration, Duration]:
    """The full run's ``max_duration`` and its LR warmup (``--lr-warmup`` or ``scheduler.t_warmup``),
    both of which the strategy measures trials by; a missing or relative one stops tuning."""
    if not cfg.get("max_duration"):
        raise TuneSetupError(
            f"{where}: no max_duration: the trials follow the full run's LR schedule, "
            "so the full run's length must be known"
        )
    try:
        total = Duration.parse(cfg["max_duration"])
    except ValueError as exc:
        raise TuneSetupError(f"{where}: max_duration: {exc}") from exc
    if total.unit == "dur":
        raise TuneSetupError(f"{where}: max_duration {cfg['max_duration']!r} must be absolute")
    spec = lr_warmup or (cfg.get("scheduler") or {}).get("t_warmup")
    if spec is None:
        raise TuneSetupError(
            f"{where}: cannot find the LR warmup (scheduler.t_warmup): the strategy "
            "measures trials in multiples of it; add it to the config or pass --lr-warmup"
        )
    warmup = resolve_amount(spec, total, "LR warmup (scheduler.t_warmup)")
    if warmup.unit not in ("ba", "tok"):
        raise TuneSetupError("give the LR warmup in steps ('ba') or tokens ('tok') for tuning, not samples")
    return total, warmup


class ExampleTrainerTrials:
    """Trials of ``examples/train_slw.py CONFIG``, each in its own process.

    ``launcher``: a command prefix for distributed runs, e.g. ``"composer -n 8"``; the default
    runs ``python train_slw.py`` with this interpreter. ``overrides``: ``key=value`` applied to
    every trial, like the script's ``--set``.
    """

    metric = "metrics/eval/LanguageCrossEntropy"

    def __init__(
        self,
        config: str | os.PathLike,
        *,
        script: Optional[str | os.PathLike] = None,
        overrides: Sequence[str] = (),
        launcher: Optional[str] = None,
        lr_warmup: Optional[str] = None,
        log_dir: Optional[str | os.PathLike] = None,
        timeout_s: Optional[float] = None,
    ) -> None:
        import yaml

        self.config = Path(config)
        if not self.config.is_file():
            raise TuneSetupError(f"{self.config}: no such config file")
        self.script = Path(script) if script else self.config.resolve().parent.parent / "train_slw.py"
        if not self.script.is_file():
            raise TuneSetupError(f"trainer script {self.script} not found: pass --script PATH/TO/train_slw.py")
        self.overrides = list(overrides)
        self.launcher = launcher
        self.log_dir = Path(log_dir) if log_dir else None
        self.timeout_s = timeout_s
        cfg = yaml.safe_load(self.config.read_text()) or {}
        for item in self.overrides:
            set_dotted(cfg, item)
        self.cfg = cfg
        self.total, self.warmup = _run_length_and_warmup(cfg, lr_warmup, self.config)
        self.seq_len = int(cfg.get("seq_len", 0))
        self.global_batch = int(cfg.get("global_batch_size", 0))
        self.seed = cfg.get("seed")

    # -- what the search needs to know about this setup

    @property
    def unit(self) -> str:
        return self.warmup.unit

    @property
    def lr_warmup(self) -> int:
        return int(self.warmup.value)

    def full_run_tokens(self) -> int:
        """Tokens of the full run (for a step budget, its full-length upper bound)."""
        if self.total.unit == "tok":
            return int(self.total.value)
        rows = int(self.total.value) * (self.global_batch if self.total.unit == "ba" else 1)
        return rows * self.seq_len

    def val_tokens(self) -> int:
        """Tokens one validation sees: the val set, or ``eval_subset_num_batches`` batches of it."""
        data = self.cfg.get("data") or {}
        val = data.get("val")
        if not val:
            raise TuneSetupError(
                f"{self.config}: no validation set (data.val): the strategy judges trials "
                "by validation perplexity alone"
            )
        meta = read_meta_fields(val)
        index = Path(val) / "index.json"
        if meta is not None:
            rows = int(meta["counts"]["rows"])
        elif index.is_file():
            rows = sum(int(s.get("samples", 0)) for s in json.loads(index.read_text()).get("shards", []))
        elif str(val).startswith(("s3://", "gs://")) or data.get("remote_val"):
            return -1  # remote: counted by the trial itself
        else:
            raise TuneSetupError(
                f"validation set {val}: no index.json (not a shard folder written by `slwdata convert`)"
            )
        subset = int(self.cfg.get("eval_subset_num_batches", -1))
        if subset > 0:
            rows = min(rows, subset * self.global_batch)
        return rows * self.seq_len

    def identity(self) -> dict[str, Any]:
        """What makes two trials comparable: the config after overrides, and the script."""
        return {
            "runner": "example",
            "config": self.cfg,
            "script": str(self.script.resolve()),
            "launcher": self.launcher,
        }

    # -- one trial

    def trial_overrides(self, start: int, duration: int, trial_length: int, eval_interval: int) -> list[str]:
        u = self.unit
        sched = self.cfg.get("scheduler") or {}
        t_max = sched.get("t_max", "1dur")
        t_max = str(resolve_amount(t_max, self.total, "scheduler.t_max"))
        return self.overrides + [
            f"max_duration={trial_length}{u}",
            f"scheduler.t_warmup={self.lr_warmup}{u}",
            f"scheduler.t_max={t_max}",
            f"eval_interval={eval_interval}{u}",
            "slw.enabled=true",
            f"slw.start={start}",
            f"slw.duration={duration}{u}",
            "save_folder=null",
            "progress_bar=false",
        ]

    def bind(self, trial_length: int, eval_interval: int) -> Callable[[int, int], Curve]:
        """The ``trial(start, duration)`` callable for :func:`slwdata.tune.search.search`."""
        return lambda start, duration: self.run(start, duration, trial_length, eval_interval)

    def run(self, start: int, duration: int, trial_length: int, eval_interval: int) -> Curve:
        sets = self.trial_overrides(start, duration, trial_length, eval_interval)
        with tempfile.TemporaryDirectory(prefix="slw-tune-") as tmp:
            summary = Path(tmp) / "summary.json"
            prefix = shlex.split(self.launcher) if self.launcher else [sys.executable]
            cmd = prefix + [str(self.script), str(self.config), "--summary-json", str(summary)]
            for item in sets:
                cmd += ["--set", item]
            wall = _run_trial(cmd, self.log_dir, start, duration, self.unit, self.timeout_s)
            data = json.loads(summary.read_text())
        curves = data.get("eval_curves") or {}
        points = curves.get(self.metric)
        if not points:
            raise RuntimeError(
                f"trial s={start} T={duration}{self.unit} logged no {self.metric}: check data.val and eval_interval"
            )
        return _curve_from(points, self.unit, int(data.get("trained_tokens", 0)), wall)


def _run_trial(
    cmd: list[str], log_dir: Optional[Path], start: int, duration: int, unit: str, timeout_s: Optional[float]
) -> float:
    """Run one trial's command with its output in a log file; its wall time, or an error naming the log."""
    log_dir = log_dir or Path(tempfile.gettempdir())
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"trial-s{start}-T{duration}.log"
    t0 = time.time()
    with open(log, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"trial s={start} T={duration}{unit} ran past {timeout_s:.0f} s; its log: {log}"
            ) from None
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(
            f"trial s={start} T={duration}{unit} failed (exit {proc.returncode}): {tail[0]} — full log: {log}"
        )
    return time.time() - t0


class LLMFoundryTrials:
    """Trials of an llm-foundry training YAML, each one ``llmfoundry train YAML key=value ...``.

    Run from the environment where llm-foundry and slwdata are installed. The YAML is the one you
    will train with: it needs ``algorithms.slw`` (or gets it), a ``scheduler.t_warmup`` and an
    ``eval_loader``. Each trial adds the ``slw_eval_curve`` callback (slwdata's
    ``llmfoundry_callbacks`` entry point) to record its validation curve. ``launcher``: a command
    prefix for distributed trials, e.g. ``"composer -n 8"``, which then runs llm-foundry's own
    ``llmfoundry`` script with ``train YAML ...``.
    """

    metric = "LanguageCrossEntropy"

    def __init__(
        self,
        yaml_path: str | os.PathLike,
        *,
        overrides: Sequence[str] = (),
        launcher: Optional[str] = None,
        lr_warmup: Optional[str] = None,
        log_dir: Optional[str | os.PathLike] = None,
        timeout_s: Optional[float] = None,
    ) -> None:
        try:
            from omegaconf import OmegaConf
        except ImportError:
            raise TuneSetupError(
                "the llm-foundry runner needs omegaconf (llm-foundry's environment): run "
                "slwdata tune from the environment where llm-foundry is installed"
            ) from None
        self.yaml = Path(yaml_path)
        if not self.yaml.is_file():
            raise TuneSetupError(f"{self.yaml}: no such YAML file")
        self.overrides = list(overrides)
        self.launcher = launcher
        self.log_dir = Path(log_dir) if log_dir else None
        self.timeout_s = timeout_s
        try:
            conf = OmegaConf.merge(OmegaConf.load(self.yaml), OmegaConf.from_dotlist(self.overrides))
            cfg = OmegaConf.to_container(conf, resolve=True)
        except Exception as exc:  # omegaconf's parse and interpolation errors share no base class
            raise TuneSetupError(f"{self.yaml}: cannot read it with its overrides: {exc}") from None
        self.cfg = cfg
        self.total, self.warmup = _run_length_and_warmup(cfg, lr_warmup, self.yaml)
        self.seq_len = int(cfg.get("max_seq_len") or (cfg.get("model") or {}).get("max_seq_len") or 0)
        self.global_batch = int(cfg.get("global_train_batch_size") or 0)
        if launcher:
            self.command = shlex.split(launcher) + [str(Path(sys.executable).parent / "llmfoundry"), "train"]
        else:
            self.command = [str(Path(sys.executable).parent / "llmfoundry"), "train"]

    unit = ExampleTrainerTrials.unit
    lr_warmup = ExampleTrainerTrials.lr_warmup

    def full_run_tokens(self) -> int:
        if self.total.unit == "tok":
            return int(self.total.value)
        return int(self.total.value) * self.global_batch * self.seq_len

    def val_tokens(self) -> int:
        ev = self.cfg.get("eval_loader")
        if not ev:
            raise TuneSetupError(
                f"{self.yaml}: no eval_loader: the strategy judges trials by validation perplexity alone"
            )
        ds = (ev[0] if isinstance(ev, list) else ev).get("dataset") or {}
        local = ds.get("local")
        index = Path(local) / "index.json" if local else None
        if index is None or not index.is_file():
            return -1  # remote or built by a plugin: not countable before a trial
        rows = sum(int(s.get("samples", 0)) for s in json.loads(index.read_text()).get("shards", []))
        subset = int(self.cfg.get("eval_subset_num_batches", -1) or -1)
        if subset > 0:
            rows = min(rows, subset * int(self.cfg.get("device_eval_batch_size") or 1))
        return rows * self.seq_len

    def identity(self) -> dict[str, Any]:
        return {"runner": "llmfoundry", "config": self.cfg, "launcher": self.launcher}

    def trial_overrides(
        self, start: int, duration: int, trial_length: int, eval_interval: int, curve_path: str
    ) -> list[str]:
        u = self.unit
        t_max = str(
            resolve_amount((self.cfg.get("scheduler") or {}).get("t_max", "1dur"), self.total, "scheduler.t_max")
        )
        return self.overrides + [
            f"max_duration={trial_length}{u}",
            f"scheduler.t_warmup={self.lr_warmup}{u}",
            f"scheduler.t_max={t_max}",
            f"eval_interval={eval_interval}{u}",
            f"algorithms.slw.start={start}",
            f"algorithms.slw.duration={duration}{u}",
            f"callbacks.slw_eval_curve.path={curve_path}",
            "save_folder=null",
            "progress_bar=false",
        ]

    bind = ExampleTrainerTrials.bind

    def run(self, start: int, duration: int, trial_length: int, eval_interval: int) -> Curve:
        with tempfile.TemporaryDirectory(prefix="slw-tune-") as tmp:
            path = Path(tmp) / "eval.jsonl"
            cmd = (
                self.command
                + [str(self.yaml)]
                + self.trial_overrides(start, duration, trial_length, eval_interval, str(path))
            )
            wall = _run_trial(cmd, self.log_dir, start, duration, self.unit, self.timeout_s)
            rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        points = [
            [r["batch"], r["token"], v]
            for r in rows
            if r["kind"] == "eval"
            for k, v in r["metrics"].items()
            if k.endswith(self.metric)
        ]
        if not points:
            raise RuntimeError(
                f"trial s={start} T={duration}{self.unit} recorded no {self.metric}: check "
                "eval_loader and eval_interval"
            )
        ends = [r for r in rows if r["kind"] == "fit_end"]
        tokens = int(ends[-1]["token"]) if ends else int(rows[-1]["token"])
        return _curve_from(points, self.unit, tokens, wall)


class ComposerFactoryTrials:
    """Trials built by ``make_trainer``, in this process.

    ``make_trainer(start, duration, max_duration, eval_interval, callbacks)`` returns a Composer
    ``Trainer`` for one trial: SLW at ``start`` / ``duration``, ``max_duration`` the trial's
    length, validating every ``eval_interval`` (all strings such as ``"400ba"``), with
    ``callbacks`` added to its own. Keep its LR schedule absolute (``t_max`` the full run's
    length), so a trial follows the full run's course.

    Example::

        trials = ComposerFactoryTrials(make_trainer, unit="ba", lr_warmup=100, full_run_tokens=10**9)
        result = search(trials.bind(400, 25), space)
    """

    def __init__(
        self,
        make_trainer: Callable[..., Any],
        *,
        unit: str,
        lr_warmup: int,
        full_run_tokens: int,
        metric: str = "LanguageCrossEntropy",
    ) -> None:
        if unit not in ("ba", "tok"):
            raise TuneSetupError(f"unit must be 'ba' or 'tok', got {unit!r}")
        self.make_trainer = make_trainer
        self.unit = unit
        self.lr_warmup = int(lr_warmup)
        self._full = int(full_run_tokens)
        self.metric = metric

    def full_run_tokens(self) -> int:
        return self._full

    def identity(self) -> dict[str, Any]:
        fn = self.make_trainer
        return {
            "runner": "composer",
            "factory": f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}",
            "unit": self.unit,
            "lr_warmup": self.lr_warmup,
            "metric": self.metric,
        }

    def bind(self, trial_length: int, eval_interval: int) -> Callable[[int, int], Curve]:
        return lambda start, duration: self.run(start, duration, trial_length, eval_interval)

    def run(self, start: int, duration: int, trial_length: int, eval_interval: int) -> Curve:
        from composer.core import Callback

        unit = self.unit
        metric = self.metric
        points: list[tuple[int, float]] = []

        class _Record(Callback):
            def eval_end(self, state: Any, logger: Any) -> None:
                for name, m in state.eval_metrics.get("eval", {}).items():
                    if name.endswith(metric):
                        loss = float(m.compute())
                        at = int(state.timestamp.token if unit == "tok" else state.timestamp.batch)
                        points.append((at, math.exp(loss) if loss < 700 else math.inf))

        t0 = time.time()
        trainer = self.make_trainer(
            start=start,
            duration=f"{duration}{unit}",
            max_duration=f"{trial_length}{unit}",
            eval_interval=f"{eval_interval}{unit}",
            callbacks=[_Record()],
        )
        try:
            trainer.fit()
            tokens = int(trainer.state.timestamp.token)
        finally:
            trainer.close()
        if not points:
            raise RuntimeError(
                f"trial s={start} T={duration}{unit}: no eval metric ending in {metric!r} was "
                "computed; give the Trainer an eval_dataloader"
            )
        return Curve(points, tokens, time.time() - t0)


def set_dotted(cfg: dict, dotted: str) -> None:
    """``a.b=value`` -> ``cfg["a"]["b"] = yaml.safe_load(value)``: the ``--set`` rule of
    ``examples/train_slw.py`` and of ``slwdata tune`` over its configs."""
    import yaml

    if "=" not in dotted:
        raise TuneSetupError(f"--set expects key=value, got {dotted!r}")
    key, raw = dotted.split("=", 1)
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(raw)
