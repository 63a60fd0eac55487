"""The paper's low-cost tuning of SLW's start length ``s`` and duration ``T`` (Section 4), as pure logic.

Li, Zhang & He tune SLW from short trials that train only the first few multiples of the LR
warmup, judged on the validation set alone:

1. start with ``s = 8`` and ``T`` = a few multiples of the LR warmup;
2. raise ``s`` until the validation perplexity no longer fluctuates at the very beginning;
3. binary-search the largest ``T`` whose trial has no fluctuation during the first few
   multiples of the LR warmup.

A *fluctuation* is a validation perplexity above ``ratio`` (1.3) times the best one before it.
The search assumes what the paper's strategy assumes: a longer ``T`` keeps the model on short
rows longer, so if a ``T`` fluctuates every longer one does too.

This module knows nothing about training: a trial is any callable ``(start, duration) ->
Curve`` (see :mod:`slwdata.tune.runners`), and finished trials are cached by
:class:`TrialCache` so an interrupted or widened search reuses them.

Example, with a scripted trial whose boundary is known::

    >>> space = SearchSpace(unit="ba", lr_warmup=100, trial_length=400, eval_interval=25,
    ...                     starts=(8, 16), t_init=200, t_min=100, t_max=800, resolution=50)
    >>> def trial(s, T):   # fluctuates when s < 16 or T > 430
    ...     bad = s < 16 or T > 430
    ...     return Curve([(25 * i, 20.0 if bad and i == 3 else 10.0 - i / 10) for i in range(1, 17)])
    >>> result = search(trial, space)
    >>> result.start, result.duration
    (16, 425)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

__all__ = [
    "Curve",
    "SearchSpace",
    "TrialRecord",
    "TuneResult",
    "TrialCache",
    "first_fluctuation",
    "search",
    "bisection_trials",
]


@dataclasses.dataclass
class Curve:
    """Validation perplexity of one trial: ``points`` of ``(progress, perplexity)``, progress in the
    search's unit (steps or tokens) as the trainer counted it, in training order."""

    points: list[tuple[int, float]]
    trained_tokens: int = 0
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [[int(p), float(v)] for p, v in self.points],
            "trained_tokens": int(self.trained_tokens),
            "wall_s": float(self.wall_s),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Curve":
        return cls(
            [(int(p), float(v)) for p, v in d["points"]], int(d.get("trained_tokens", 0)), float(d.get("wall_s", 0.0))
        )


def first_fluctuation(
    points: Sequence[tuple[int, float]], ratio: float = 1.3, until: Optional[int] = None
) -> Optional[int]:
    """Index of the first point whose perplexity exceeds ``ratio`` x the best (lowest) before it.

    Only points with progress ``<= until`` are judged (all when ``None``). A non-finite
    perplexity (a diverged run) counts as a fluctuation.

    Example:
        >>> first_fluctuation([(1, 50.0), (2, 40.0), (3, 45.0), (4, 53.0)])
        3
        >>> first_fluctuation([(1, 50.0), (2, 40.0), (3, 51.0)], ratio=1.3) is None
        True
    """
    best = math.inf
    for i, (progress, value) in enumerate(points):
        if until is not None and progress > until:
            break
        if not math.isfinite(value):
            return i
        if value > ratio * best:
            return i
        best = min(best, value)
    return None


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Everything the search decides over, in one unit (``"ba"`` or ``"tok"``: the LR warmup's).

    ``trial_length``: how far each trial trains (a few multiples of ``lr_warmup``);
    ``start_window``: how far the start-length stage judges ("the very beginning"; default one
    LR warmup); ``starts``: candidate ``s``, tried in increasing order; ``t_init``: ``T`` for the
    start-length stage; ``[t_min, t_max]``, ``resolution``: the binary search's bounds and the
    width at which it stops; ``max_trials``: a budget over both stages (``None``: unbounded).
    """

    unit: str
    lr_warmup: int
    trial_length: int
    eval_interval: int
    starts: tuple[int, ...]
    t_init: int
    t_min: int
    t_max: int
    resolution: int
    ratio: float = 1.3
    start_window: Optional[int] = None
    max_trials: Optional[int] = None
    end: Optional[int] = None  # the full row length, when known: starts must be below it

    def problems(self) -> list[str]:
        """What is wrong with these bounds, before any trial runs (empty when usable)."""
        out = []
        if self.unit not in ("ba", "tok", "sp"):
            out.append(f"unit must be 'ba', 'sp' or 'tok', got {self.unit!r}")
        if self.lr_warmup <= 0:
            out.append(
                f"the LR warmup is {self.lr_warmup}{self.unit}: the strategy measures trials in "
                "multiples of it, so it must be positive"
            )
        if self.trial_length <= 0 or self.eval_interval <= 0:
            out.append("trial length and eval interval must be positive")
        elif self.trial_length < 3 * self.eval_interval:
            out.append(
                f"a trial of {self.trial_length}{self.unit} holds fewer than 3 validations every "
                f"{self.eval_interval}{self.unit}: no fluctuation can be judged; lower --eval-interval"
            )
        starts = [s for s in self.starts if s > 0 and s % 8 == 0 and (self.end is None or s < self.end)]
        if not starts:
            limit = f" and below the row length {self.end}" if self.end else ""
            out.append(f"no start length in {list(self.starts)} is a positive multiple of 8{limit}")
        if self.t_min <= 0 or self.t_min > self.t_max:
            out.append(f"T bounds [{self.t_min}, {self.t_max}]{self.unit} hold no candidate")
        if self.resolution <= 0:
            out.append("resolution must be positive")
        if self.ratio <= 1.0:
            out.append(f"fluctuation ratio must be > 1, got {self.ratio}")
        return out

    def candidate_starts(self) -> list[int]:
        return sorted(s for s in set(self.starts) if s > 0 and s % 8 == 0 and (self.end is None or s < self.end))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TrialRecord:
    """One trial: its settings, its curve, and the verdict of the stage that ran it."""

    stage: str  # "start" or "duration"
    start: int
    duration: int
    curve: Curve
    fluctuation_at: Optional[int]  # progress of the first fluctuating point, None when none
    judged_until: int
    passed: bool
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "start": self.start,
            "duration": self.duration,
            "curve": self.curve.to_dict(),
            "fluctuation_at": self.fluctuation_at,
            "judged_until": self.judged_until,
            "passed": self.passed,
            "cached": self.cached,
        }


@dataclasses.dataclass
class TuneResult:
    """What the search chose (``None`` where nothing passed), why, and every trial on the way."""

    space: SearchSpace
    start: Optional[int]
    duration: Optional[int]
    trials: list[TrialRecord]
    message: str
    bound_hit: bool = False  # the chosen T is t_max: a wider search might go further
    interval: Optional[tuple[int, int]] = None  # (largest T that passed, smallest that failed)

    @property
    def ok(self) -> bool:
        return self.start is not None and self.duration is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space.to_dict(),
            "start": self.start,
            "duration": self.duration,
            "unit": self.space.unit,
            "message": self.message,
            "bound_hit": self.bound_hit,
            "interval": list(self.interval) if self.interval else None,
            "trials": [t.to_dict() for t in self.trials],
        }


def bisection_trials(lo: int, hi: int, resolution: int) -> int:
    """Trials a bisection needs to narrow a known-good ``lo`` and known-bad ``hi`` to ``resolution``."""
    return max(0, math.ceil(math.log2(max(hi - lo, 1) / resolution))) if hi - lo > resolution else 0


class TrialCache:
    """Finished trials on disk, one JSON file each, keyed by the run's identity and ``(s, T)``.

    ``identity`` is whatever makes trials comparable (the user's config after overrides, the
    trial length, the seed...): change it and no old trial is reused. Files are written whole
    (temp file + rename), so a trial killed halfway leaves nothing and is run again.
    """

    def __init__(self, folder: str | os.PathLike, identity: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _path(self, start: int, duration: int) -> Path:
        return self.folder / f"{self.key}-s{start}-T{duration}.json"

    def get(self, start: int, duration: int) -> Optional[Curve]:
        path = self._path(start, duration)
        if not path.exists():
            return None
        try:
            return Curve.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cached trial {path} is unreadable ({exc}); delete it to run that trial again") from exc

    def put(self, start: int, duration: int, curve: Curve) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(start, duration)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(curve.to_dict()))
        os.replace(tmp, path)
        return path


TrialFn = Callable[[int, int], Curve]


def search(
    trial: TrialFn,
    space: SearchSpace,
    cache: Optional[TrialCache] = None,
    log: Callable[[str], None] = lambda msg: None,
) -> TuneResult:
    """Run the paper's strategy: the start-length stage, then the binary search over ``T``.

    ``trial(start, duration)`` trains the first ``space.trial_length`` of a run with SLW at
    ``(start, duration)`` (both in ``space.unit``) and returns its validation curve.
    """
    problems = space.problems()
    if problems:
        raise ValueError("; ".join(problems))
    records: list[TrialRecord] = []
    seen: dict[tuple[int, int], Curve] = {}
    start_window = space.start_window or space.lr_warmup

    def run(stage: str, s: int, T: int, until: int) -> TrialRecord:
        curve = seen.get((s, T))
        cached = curve is not None
        source = "the same training as before" if cached else ""
        if curve is None and cache is not None:
            curve = cache.get(s, T)
            cached = curve is not None
            source = "cached" if cached else ""
        if curve is None:
            if space.max_trials is not None and sum(not r.cached for r in records) >= space.max_trials:
                raise _BudgetSpent()
            log(f"trial {len(records) + 1}: s={s} T={T}{space.unit}, training {space.trial_length}{space.unit} ...")
            curve = trial(s, T)
            if cache is not None:
                cache.put(s, T, curve)
        seen[(s, T)] = curve
        idx = first_fluctuation(curve.points, space.ratio, until)
        at = curve.points[idx][0] if idx is not None else None
        rec = TrialRecord(stage, s, T, curve, at, until, at is None, cached)
        records.append(rec)
        verdict = "passes" if rec.passed else f"fluctuates at {at}{space.unit}"
        log(
            f"trial {len(records)}: s={s} T={T}{space.unit} {verdict}"
            f" (judged to {until}{space.unit}{', ' + source if source else ''})"
        )
        return rec

    # What is known so far, kept outside the try so a spent budget can report it.
    known: dict[str, Optional[int]] = {"s": None, "good": None, "bad": None}
    try:
        for s in space.candidate_starts():
            if run("start", s, space.t_init, start_window).passed:
                known["s"] = s
                break
        chosen_s = known["s"]
        if chosen_s is None:
            return TuneResult(
                space,
                None,
                None,
                records,
                f"every start length {space.candidate_starts()} fluctuates within the first "
                f"{start_window}{space.unit}: lower the learning rate, lengthen the LR warmup, "
                "or allow longer starts (--starts)",
            )
        # The start-stage trial at t_init is a known point for T, judged now over the whole window.
        if space.t_min <= space.t_init <= space.t_max:
            # Judged again over the whole trial: a record of its own, trained once.
            init = run("duration", chosen_s, space.t_init, space.trial_length)
            known["good" if init.passed else "bad"] = space.t_init
        # The largest passing T is the goal, so t_max goes first. When t_init already failed this
        # also catches a learning rate so high that only a long T is calm (short T is unstable).
        if space.t_max != known["bad"] and run("duration", chosen_s, space.t_max, space.trial_length).passed:
            calm_long = known["bad"] is not None
            return TuneResult(
                space,
                chosen_s,
                space.t_max,
                records,
                f"T = t_max ({space.t_max}{space.unit}) passes"
                + (
                    f" while T = {known['bad']}{space.unit} fluctuates (a shorter T is unstable at this learning rate)"
                    if calm_long
                    else ""
                )
                + ": the search hit its upper bound; raise --t-max to look further",
                bound_hit=True,
            )
        if known["bad"] is None:
            known["bad"] = space.t_max
        if known["good"] is None:
            if not run("duration", chosen_s, space.t_min, space.trial_length).passed:
                return TuneResult(
                    space,
                    chosen_s,
                    None,
                    records,
                    f"with s={chosen_s} every T tried ({space.t_min}, {space.t_init} and "
                    f"{space.t_max}{space.unit}) fluctuates within {space.trial_length}{space.unit}: "
                    "raise s, lower the learning rate or lengthen its warmup",
                    interval=(0, space.t_min),
                )
            known["good"] = space.t_min
        good, bad = int(known["good"]), int(known["bad"])  # type: ignore[arg-type]
        while bad - good > space.resolution:
            mid = (good + bad) // 2
            if run("duration", chosen_s, mid, space.trial_length).passed:
                good = known["good"] = mid
            else:
                bad = known["bad"] = mid
        return TuneResult(
            space,
            chosen_s,
            good,
            records,
            f"s={chosen_s}, T={good}{space.unit}: the largest T without fluctuation (T={bad}{space.unit} fluctuates)",
            interval=(good, bad),
        )
    except _BudgetSpent:
        s, good, bad = known["s"], known["good"], known["bad"]
        so_far = f"; so far s={s}" if s is not None else ""
        if good is not None:
            so_far += f", T={good}{space.unit} passes" + (f" and T={bad}{space.unit} fluctuates" if bad else "")
        return TuneResult(
            space,
            s if good is not None else None,
            good,
            records,
            f"trial budget of {space.max_trials} spent before the search converged{so_far}",
            interval=(good, bad) if good is not None and bad is not None else None,
        )


class _BudgetSpent(Exception):
    pass


def multiples(values: Iterable[float], warmup: int) -> list[int]:
    """``[1, 2.5] x warmup`` -> whole amounts (at least 1)."""
    return [max(1, int(round(v * warmup))) for v in values]
