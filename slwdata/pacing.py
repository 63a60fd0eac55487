"""Pacing schedules for Sequence Length Warmup: what length to train at, given progress.

Pure arithmetic (no torch, no numpy) so the dataset, the Composer algorithm, the CLI and a
plain training loop can all ask the same question and get the same answer.

The paper's linear schedule (Li, Zhang, He, NeurIPS 2022)::

    seqlen_t = s + (e - s) * min(t / T, 1)
    seqlen_t -= seqlen_t mod k          # k = 8

Progress ``t`` is counted in *trained* units: optimizer steps (``"ba"``), samples (``"sp"``)
or tokens (``"tok"``), all counted after truncation. ``T`` may also be a fraction of the run
(``"0.3dur"``), resolved against the run's total length (``total=``).

Example:
    >>> sched = PacingSchedule(start=8, end=1024, duration="100ba")
    >>> sched.seq_len(step=0), sched.seq_len(step=50), sched.seq_len(step=100)
    (8, 512, 1024)
    >>> PacingSchedule(start=8, end=64, duration="0.5dur").plan(6, rows_per_step=4, total="6ba")
    [8, 24, 40, 64, 64, 64]
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence, Union

__all__ = [
    "Duration",
    "Progress",
    "PacingSchedule",
    "KINDS",
    "parse_duration",
]

KINDS = ("linear", "root", "stages", "constant", "callable")
_PROGRESS_UNITS = ("ba", "sp", "tok")
_UNIT_ALIASES = {
    "ba": "ba",
    "batch": "ba",
    "batches": "ba",
    "step": "ba",
    "steps": "ba",
    "sp": "sp",
    "sample": "sp",
    "samples": "sp",
    "tok": "tok",
    "token": "tok",
    "tokens": "tok",
    "dur": "dur",
}
_DURATION_RE = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


@dataclasses.dataclass(frozen=True)
class Duration:
    """An amount of training: ``value`` in ``unit`` (``"ba"``, ``"sp"``, ``"tok"`` or ``"dur"``).

    ``"dur"`` is a fraction of the whole run in ``[0, 1]``; the other units are whole numbers.

    Example:
        >>> Duration.parse("5000000tok")
        Duration(value=5000000, unit='tok')
        >>> Duration.parse(0.3)
        Duration(value=Fraction(3, 10), unit='dur')
    """

    value: Union[int, Fraction]
    unit: str

    @classmethod
    def parse(cls, spec: Any, default_unit: str = "ba") -> "Duration":
        """Parse ``"1000ba"``, ``"2000sp"``, ``"5e6tok"``, ``"0.3dur"``, an int (``default_unit``)
        or a float in ``[0, 1]`` (a fraction of the run, like Composer's ``duration=0.3``)."""
        if isinstance(spec, Duration):
            return spec
        if isinstance(spec, bool):
            raise ValueError(f"duration must be a number or a string like '1000ba', got {spec!r}")
        if isinstance(spec, int):
            return cls._make(spec, default_unit, spec)
        if isinstance(spec, float):
            if not math.isfinite(spec) or not 0.0 <= spec <= 1.0:
                raise ValueError(
                    f"a float duration is a fraction of the run and must lie in [0, 1], got {spec!r}; "
                    "write '1000ba', '2000sp' or '5000000tok' for absolute durations"
                )
            return cls._make(Fraction(str(spec)), "dur", spec)
        if isinstance(spec, Fraction):
            return cls._make(spec, "dur", spec)
        if hasattr(spec, "value") and hasattr(spec, "unit"):
            # A composer.core.Time, without importing composer here.
            unit_name = str(getattr(spec.unit, "value", spec.unit))
            return cls.parse(f"{spec.value}{unit_name}", default_unit)
        if not isinstance(spec, str):
            raise ValueError(f"duration must be an int or a string like '1000ba', got {type(spec).__name__}")
        m = _DURATION_RE.match(spec)
        if m is None:
            raise ValueError(
                f"cannot parse duration {spec!r}: expected a number followed by one of "
                "'ba' (steps), 'sp' (samples), 'tok' (tokens) or 'dur' (fraction of the run), e.g. '0.3dur'"
            )
        number, unit = m.group(1).replace("_", ""), m.group(2).lower() or default_unit
        if not m.group(2) and unit != "dur" and Fraction(number).denominator != 1:
            hint = (
                f"did you mean '{number}dur' (a fraction of the run)?"
                if Fraction(number) <= 1
                else f"give a whole number of steps, or a unit: '{number}tok', '{number}sp'"
            )
            raise ValueError(f"duration {spec!r} has no unit and is not a whole number of steps: {hint}")
        if unit not in _UNIT_ALIASES:
            hint = (
                " (epochs are not supported: give steps, samples or tokens, or a fraction 'dur')"
                if unit in ("ep", "epoch", "epochs")
                else ""
            )
            raise ValueError(f"unknown duration unit {m.group(2)!r} in {spec!r}{hint}")
        return cls._make(Fraction(number), _UNIT_ALIASES[unit], spec)

    @classmethod
    def _make(cls, value: Union[int, Fraction], unit: str, spec: Any) -> "Duration":
        if unit not in _UNIT_ALIASES:
            raise ValueError(f"unknown duration unit {unit!r}")
        unit = _UNIT_ALIASES[unit]
        if value < 0:
            raise ValueError(f"duration must be non-negative, got {spec!r}")
        if unit == "dur":
            if value > 1:
                raise ValueError(f"a fractional duration must lie in [0, 1], got {spec!r}")
            return cls(Fraction(value), unit)
        if Fraction(value).denominator != 1:
            raise ValueError(f"a duration in {unit!r} must be a whole number, got {spec!r}")
        return cls(int(value), unit)

    def __str__(self) -> str:
        if self.unit == "dur":
            return f"{float(self.value):g}dur"
        return f"{self.value}{self.unit}"


def parse_duration(spec: Any, default_unit: str = "ba") -> Duration:
    """Shorthand for :meth:`Duration.parse`."""
    return Duration.parse(spec, default_unit)


@dataclasses.dataclass(frozen=True)
class Progress:
    """Training progress, counted after truncation (trained steps, samples, tokens)."""

    step: int = 0
    samples: int = 0
    tokens: int = 0

    def get(self, unit: str) -> int:
        return {"ba": self.step, "sp": self.samples, "tok": self.tokens}[unit]


def _resolve_callable(fn: Union[str, Callable[[float], float]]) -> Callable[[float], float]:
    if callable(fn):
        return fn
    if isinstance(fn, str) and ":" in fn:
        module_name, _, attr = fn.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise ValueError(f"{fn!r} does not name a callable")
        return obj
    raise ValueError(f"fn must be a callable or an import path 'module:function', got {fn!r}")


class PacingSchedule:
    """Maps training progress to a sequence length.

    Args:
        start: ``s``, the first length (default 8; with ``kind="stages"`` the first stage's length).
        end: ``e``, the full row length. ``None`` leaves it to be filled in later with
            :meth:`with_end` (the Composer algorithm infers it from the data).
        duration: ``T``; ``"1000ba"``, ``"2000sp"``, ``"5000000tok"``, ``"0.3dur"``, an int (steps)
            or a float in [0, 1] (fraction of the run); default ``"0.3dur"`` (stages: the last
            stage's start). From ``T`` on the length is exactly ``end``.
        kind: ``"linear"`` (the paper), ``"root"`` (``s + (e-s) * (t/T) ** (1/degree)``),
            ``"stages"`` (piecewise constant, e.g. Shortformer's two stages), ``"constant"``
            (always ``end``: a baseline with identical plumbing) or ``"callable"``.
        multiple: ``k``; lengths are rounded down to a multiple of ``k``, then clamped to
            ``[start, end]``.
        degree: the root's degree for ``kind="root"``.
        stages: for ``kind="stages"``: ``[(at, length), ...]`` with ``at`` in the unit of
            ``duration`` (ints, or strings such as ``"500ba"`` in that unit), increasing, first
            ``at`` 0. ``duration`` defaults to the last ``at``; from ``duration`` on it is ``end``.
        fn: for ``kind="callable"``: ``fn(fraction_of_T: float) -> length``, monotone
            non-decreasing; a callable or an import path ``"module:function"`` (serializable).

    Example:
        >>> shortformer = PacingSchedule(kind="stages", end=1024, stages=[(0, 128), (500, 1024)])
        >>> [shortformer.seq_len(step=i) for i in (0, 499, 500)]
        [128, 128, 1024]
    """

    def __init__(
        self,
        start: int | None = None,
        end: int | None = None,
        duration: Any = None,
        kind: str = "linear",
        multiple: int = 8,
        degree: float = 2.0,
        stages: Sequence[tuple[Any, int]] | None = None,
        fn: Union[str, Callable[[float], float], None] = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown pacing kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f"multiple (k) must be a positive int, got {multiple!r}")
        self.multiple = multiple
        try:
            self.degree = float(degree)
        except (TypeError, ValueError):
            raise ValueError(f"degree must be a number, got {degree!r}") from None
        if kind == "root" and not (self.degree > 0 and math.isfinite(self.degree)):
            raise ValueError(f"degree must be a positive finite number, got {degree!r}")
        self.fn_spec = fn
        self._fn: Callable[[float], float] | None = None
        if kind == "callable":
            if fn is None:
                raise ValueError("kind='callable' needs fn=, a function of the fraction of T in [0, 1]")
            self._fn = _resolve_callable(fn)
        elif fn is not None:
            raise ValueError(f"fn= is only used with kind='callable', not kind={kind!r}")

        self.stages: list[tuple[int, int]] | None = None
        self.stage_unit: str | None = None
        if kind == "stages":
            if not stages:
                raise ValueError("kind='stages' needs stages=[(at, length), ...], e.g. [(0, 128), (500, 1024)]")
            duration = self._init_stages(stages, duration)
            first = self.stages[0][1]  # type: ignore[index]
            if start is None:
                start = first  # the first stage is where the run starts
            elif start != first:
                raise ValueError(
                    f"start={start} contradicts the first stage's length {first}: leave start out (with stages "
                    "it is the first stage's length) or make the two equal"
                )
        elif stages is not None:
            raise ValueError(f"stages= is only used with kind='stages', not kind={kind!r}")

        # None marks "not given", so an explicit value is never mistaken for the default.
        self.duration = Duration.parse("0.3dur" if duration is None else duration)
        if start is None:
            start = 8
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise ValueError(f"start (s) must be a positive int, got {start!r}")
        if end is not None and (isinstance(end, bool) or not isinstance(end, int) or end < 1):
            raise ValueError(f"end (e) must be a positive int or None, got {end!r}")
        if end is not None and kind != "constant" and start > end:
            raise ValueError(f"start (s={start}) must not exceed end (e={end})")
        if kind == "stages" and end is not None and self.duration.unit != "dur":
            self._check_stages(self.duration, end)
        self.start = start if kind != "constant" or end is None else end
        self._start_arg = start
        self.end = end
        if self._fn is not None:
            self._check_callable_monotone()

    # ------------------------------------------------------------------ construction helpers
    def _init_stages(self, stages: Sequence[tuple[Any, int]], duration: Any) -> Any:
        dur = Duration.parse(duration) if duration is not None else None
        unit = dur.unit if dur is not None and dur.unit != "dur" else None
        items = []
        for item in stages:
            try:
                at, length = item
            except (TypeError, ValueError):
                raise ValueError(f"each stage must be (at, length), got {item!r}") from None
            items.append((at, length))
        if unit is None:
            # Bare ints take the unit of the first threshold written with one ("100tok").
            units = [Duration.parse(at).unit for at, _ in items if isinstance(at, str)]
            unit = units[0] if units else None
        parsed: list[tuple[int, int]] = []
        for at, length in items:
            at_d = Duration.parse(at, default_unit=unit or "ba")
            if at_d.unit == "dur":
                raise ValueError(f"stage thresholds must be in steps, samples or tokens, got {at!r}")
            if unit is None:
                unit = at_d.unit
            elif at_d.unit != unit:
                raise ValueError(f"all stage thresholds must share one unit ({unit!r}), got {at!r}")
            if isinstance(length, bool) or not isinstance(length, int) or length < 1:
                raise ValueError(f"stage length must be a positive int, got {length!r}")
            parsed.append((int(at_d.value), length))
        ats = [a for a, _ in parsed]
        if ats[0] != 0:
            raise ValueError(f"the first stage must start at 0, got {stages[0]!r}")
        if any(b <= a for a, b in zip(ats, ats[1:])):
            raise ValueError(f"stage thresholds must be strictly increasing, got {ats}")
        lengths = [n for _, n in parsed]
        if any(b < a for a, b in zip(lengths, lengths[1:])):
            raise ValueError(f"stage lengths must be non-decreasing, got {lengths}")
        self.stages = parsed
        self.stage_unit = unit
        # Without a duration T is where the last stage starts.
        if duration is None:
            return f"{ats[-1]}{unit}"
        if dur is not None and dur.unit != "dur" and dur.value < ats[-1]:
            raise ValueError(f"duration {duration!r} ends before the last stage starts ({ats[-1]}{unit})")
        return duration

    def _check_stages(self, T: Duration, end: int) -> None:
        """Stage thresholds and ``T`` must be counted in one unit, and no stage may be ignored."""
        assert self.stages is not None
        last_at, last_len = self.stages[-1]
        if T.unit != self.stage_unit:
            raise ValueError(
                f"stage thresholds are in {self.stage_unit!r} but duration {self.duration} resolves to {T} "
                f"(in {T.unit!r}): give the stages in {T.unit!r}, or an absolute duration in {self.stage_unit!r}, "
                f"or a run total in {self.stage_unit!r}"
            )
        if T.value < last_at:
            raise ValueError(
                f"duration {self.duration} (= {T}) ends before the last stage starts ({last_at}{self.stage_unit})"
            )
        if T.value == last_at and last_len != end:
            # From T on the length is end, so the last stage's own length would never be used.
            raise ValueError(
                f"the last stage ({last_at}{self.stage_unit}, {last_len}) starts at T, where the length is "
                f"end={end}: make the last stage's length {end}, or give a duration beyond "
                f"{last_at}{self.stage_unit} so the last stage is trained before end"
            )

    def _check_callable_monotone(self) -> None:
        assert self._fn is not None
        prev = -math.inf
        for i in range(101):
            value = float(self._fn(i / 100))
            if not math.isfinite(value):
                raise ValueError(f"fn({i / 100}) returned {value}, not a finite length")
            if value < prev - 1e-9:
                raise ValueError(f"fn must be non-decreasing; fn({i / 100}) = {value} < {prev}")
            prev = value

    def with_end(self, end: int) -> "PacingSchedule":
        """A copy with ``end`` filled in (e.g. the full row length read from the data)."""
        cfg = self.to_config(allow_callable=True)
        cfg["end"] = end
        cfg["start"] = self._start_arg
        if self.kind == "callable":
            cfg["fn"] = self.fn_spec
        return PacingSchedule.from_config(cfg)

    # ------------------------------------------------------------------ the schedule
    def resolve_duration(self, total: Any = None) -> Duration:
        """``T`` as an absolute :class:`Duration` (``total`` is needed for a fraction)."""
        if self.duration.unit != "dur":
            return self.duration
        if total is None:
            raise ValueError(
                f"duration {self.duration} is a fraction of the run: pass total= (the run length, "
                "e.g. '1000ba', '2000sp', '5000000tok')"
            )
        tot = Duration.parse(total)
        if tot.unit == "dur":
            raise ValueError(f"total must be an absolute length ('1000ba', '5000000tok'), got {total!r}")
        # Keep T exact (a Fraction) so rounding matches the paper's formula at every step.
        return Duration(self.duration.value * tot.value, tot.unit)  # type: ignore[arg-type]

    @property
    def unit(self) -> str | None:
        """The unit progress is measured in, or ``None`` if it depends on the run's total."""
        return None if self.duration.unit == "dur" else self.duration.unit

    def _require_end(self) -> int:
        if self.end is None:
            raise ValueError("this schedule has no end length yet: pass end= or call .with_end(full_row_length)")
        return self.end

    def _round(self, raw: Union[Fraction, float, int], end: int) -> int:
        length = math.floor(raw)
        length -= length % self.multiple
        return max(self.start, min(end, length))

    def seq_len(self, step: Any = 0, samples: int = 0, tokens: int = 0, total: Any = None) -> int:
        """The length to train at, given progress so far (counted after truncation).

        ``step`` may also be a :class:`Progress`. ``total`` is the run length, needed when the
        duration is a fraction (``"0.3dur"``): its unit decides which progress counter is used.

        Example:
            >>> PacingSchedule(end=1024, duration="1000tok").seq_len(step=3, tokens=500)
            512
        """
        end = self._require_end()
        if isinstance(step, Progress):
            progress = step
        else:
            for name, value in (("step", step), ("samples", samples), ("tokens", tokens)):
                if value < 0:
                    raise ValueError(f"{name} must be non-negative, got {value}")
            progress = Progress(int(step), int(samples), int(tokens))
        if self.kind == "constant":
            return end
        return self._length(progress, self._resolve_T(total, end), end)

    def _resolve_T(self, total: Any, end: int) -> Duration:
        """``T`` resolved and checked once, so loops over many steps do not re-parse ``total``."""
        T = self.resolve_duration(total)
        if self.kind == "stages" and self.duration.unit == "dur":
            self._check_stages(T, end)
        return T

    def _length(self, progress: Progress, T: Duration, end: int) -> int:
        if self.kind == "constant":
            return end
        t = progress.get(T.unit)
        if t >= T.value:  # also covers T == 0
            return end
        if self.kind == "stages":
            assert self.stages is not None
            length = self.stages[0][1]
            for at, n in self.stages:
                if t >= at:
                    length = n
            return self._round(length, end)
        if self.kind == "linear":
            # floor(s + (e - s) * t / T) in exact integer arithmetic (T = p / q may be a fraction).
            T_exact = Fraction(T.value)
            raw: Union[Fraction, float, int] = (
                self.start + (end - self.start) * t * T_exact.denominator // T_exact.numerator
            )
            return self._round(raw, end)
        frac = Fraction(t) / Fraction(T.value)
        if self.kind == "root":
            raw = self.start + (end - self.start) * float(frac) ** (1.0 / self.degree)
        else:  # callable
            assert self._fn is not None
            raw = float(self._fn(float(frac)))
        return self._round(raw, end)

    __call__ = seq_len

    def plan(self, num_steps: int, rows_per_step: int, total: Any = None) -> list[int]:
        """Lengths of the first ``num_steps`` steps of a run whose rows are all full length.

        Trained tokens before step ``i`` are ``sum(len_j * rows_per_step for j < i)`` and
        samples are ``i * rows_per_step`` (``rows_per_step`` is the *global* row count).
        Deterministic: the dataset and the trainer compute the same list.
        """
        if num_steps < 0:
            raise ValueError(f"num_steps must be non-negative, got {num_steps}")
        if rows_per_step < 1:
            raise ValueError(f"rows_per_step must be a positive int, got {rows_per_step}")
        lengths: list[int] = []
        if num_steps == 0:
            return lengths
        end = self._require_end()
        T = self._resolve_T(total, end) if self.kind != "constant" else Duration(0, "ba")
        tokens = 0
        for i in range(num_steps):
            length = self._length(Progress(i, i * rows_per_step, tokens), T, end)
            lengths.append(length)
            tokens += length * rows_per_step
        return lengths

    def warmup_steps(self, rows_per_step: int, total: Any = None) -> int:
        """The first step whose length is ``end`` (0 when there is no warmup)."""
        end = self._require_end()
        if rows_per_step < 1:
            raise ValueError(f"rows_per_step must be a positive int, got {rows_per_step}")
        if self.kind == "constant":
            return 0
        T = self._resolve_T(total, end)
        if self.kind in ("linear", "root", "stages") and T.unit != "tok" and self.start < end:
            # Strictly below end for t < T (stages may reach end earlier: scan those).
            if self.kind != "stages":
                per = 1 if T.unit == "ba" else rows_per_step
                return math.ceil(Fraction(T.value) / per)
        step, tokens = 0, 0
        while True:
            length = self._length(Progress(step, step * rows_per_step, tokens), T, end)
            if length >= end:
                return step
            tokens += length * rows_per_step
            step += 1

    # ------------------------------------------------------------------ config round trip
    def to_config(self, allow_callable: bool = False) -> dict[str, Any]:
        """A plain dict (YAML/JSON friendly) that :meth:`from_config` turns back into this schedule."""
        cfg: dict[str, Any] = {
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "duration": str(self.duration),
            "multiple": self.multiple,
        }
        if self.kind == "root":
            cfg["degree"] = self.degree
        if self.kind == "stages":
            assert self.stages is not None
            # Bare ints take the duration's unit; a fractional duration has none, so then the
            # thresholds carry theirs (absolute durations keep the plain, older form).
            unit = self.stage_unit if self.duration.unit == "dur" else ""
            cfg["stages"] = [[f"{at}{unit}" if unit else at, n] for at, n in self.stages]
        if self.kind == "callable":
            if isinstance(self.fn_spec, str):
                cfg["fn"] = self.fn_spec
            elif not allow_callable:
                raise ValueError("a schedule with a Python callable cannot be serialized: pass fn='module:function'")
        return cfg

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PacingSchedule":
        """Build from a dict such as ``{"start": 8, "duration": "0.3dur", "kind": "linear"}``."""
        allowed = {"start", "end", "duration", "kind", "multiple", "degree", "stages", "fn"}
        unknown = set(config) - allowed
        if unknown:
            raise ValueError(f"unknown pacing option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        cfg = dict(config)
        if cfg.get("stages") is not None:
            cfg["stages"] = [tuple(s) for s in cfg["stages"]]
        return cls(**cfg)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PacingSchedule):
            return NotImplemented
        return self.to_config(allow_callable=True) == other.to_config(allow_callable=True) and (
            self.kind != "callable" or self.fn_spec == other.fn_spec
        )

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config(allow_callable=True).items())
        return f"PacingSchedule({args})"
