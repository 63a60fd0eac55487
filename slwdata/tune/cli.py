"""``slwdata tune``: find SLW's start length and duration from short trials (the paper's Section 4).

Parses the flags, checks the setup before any trial runs, drives :func:`slwdata.tune.search.search`
over a runner from :mod:`slwdata.tune.runners`, and writes ``tune.json``, ``tune.md`` and
``tune.png`` beside the cached trials.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Tune Sequence Length Warmup's start length s and duration T the way Li, Zhang & He tuned
GPT-2 1.5B and GPT-3 125M (NeurIPS 2022, Section 4), from short trials judged on the
validation set alone:

  1. start with s = 8 and T = a few multiples of the LR warmup (--t-init);
  2. raise s (--starts) until the validation perplexity no longer fluctuates at the very
     beginning (the first --start-window multiples of the LR warmup);
  3. binary-search the largest T in [--t-min, --t-max] whose trial has no fluctuation,
     to within --resolution.

Each trial is an ordinary run of your setup that trains only the first --warmup-multiples
multiples of the LR warmup, on the full run's LR schedule, validating --evals times. A
fluctuation is a validation perplexity above --ratio (1.3) times the best one before it.
T values are in the LR warmup's unit (steps or tokens); --t-* flags are multiples of it.

Finished trials are cached under --out: rerun the same command after a crash, or with wider
bounds, and only new trials train. Writes tune.json, tune.md, tune.png and prints the YAML
to paste.
"""

EPILOG = """\
example:
  slwdata tune examples/configs/tiny-cpu.yaml --set data.train=shards/train --set data.val=shards/val
  slwdata tune cfg.yaml --launcher "composer -n 8"      # each trial on 8 GPUs
  .venv-llmfoundry/bin/slwdata tune my-llmfoundry-run.yaml   # trials are `llmfoundry train` runs
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tune",
        help="tune SLW's start length and duration from short trials",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        help="the training YAML you will train with: an llm-foundry YAML (it has a "
        "train_loader) or a config of examples/train_slw.py",
    )
    p.add_argument(
        "--runner",
        choices=("auto", "llmfoundry", "example"),
        default="auto",
        help="how a trial runs: 'llmfoundry train YAML ...' or 'python train_slw.py CONFIG ...' "
        "(default: llmfoundry when the YAML has a train_loader)",
    )
    p.add_argument("--script", help="the trainer script (default: train_slw.py beside the config's folder)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config entry for every trial, dotted keys (repeatable)",
    )
    p.add_argument("--launcher", help="command prefix for each trial, e.g. 'composer -n 8' (default: this python)")
    p.add_argument(
        "--out", default="./slw-tune", help="folder for the report and the trial cache (default %(default)s)"
    )
    p.add_argument("--lr-warmup", help="the LR warmup, e.g. 300ba or 0.02dur (default: scheduler.t_warmup)")
    p.add_argument(
        "--warmup-multiples",
        type=float,
        default=4.0,
        metavar="K",
        help="each trial trains K x the LR warmup (default %(default)g)",
    )
    p.add_argument("--evals", type=int, default=16, help="validations per trial (default %(default)s)")
    p.add_argument(
        "--ratio",
        type=float,
        default=1.3,
        help="a fluctuation: val perplexity > RATIO x the best before it (default %(default)g)",
    )
    p.add_argument("--starts", default="8,16,32,64,128", help="start lengths to try, in order (default %(default)s)")
    p.add_argument(
        "--start-window",
        type=float,
        default=1.0,
        metavar="M",
        help="the start stage judges the first M x LR warmup (default %(default)g)",
    )
    p.add_argument(
        "--t-init",
        type=float,
        default=2.0,
        metavar="X",
        help="T for the start stage, x LR warmup (default %(default)g)",
    )
    p.add_argument(
        "--t-min", type=float, default=1.0, metavar="X", help="smallest T, x LR warmup (default %(default)g)"
    )
    p.add_argument("--t-max", type=float, default=8.0, metavar="X", help="largest T, x LR warmup (default %(default)g)")
    p.add_argument(
        "--resolution",
        type=float,
        default=0.5,
        metavar="X",
        help="stop when the T interval is this narrow, x LR warmup (default %(default)g)",
    )
    p.add_argument("--max-trials", type=int, help="a budget of trials to train (cached ones are free)")
    p.add_argument(
        "--min-val-tokens",
        type=int,
        help="refuse a validation set smaller than this (default: enough for --ratio to stand 5 "
        "standard errors clear, 3,269 tokens at 1.3)",
    )
    p.add_argument("--trial-timeout", type=float, help="seconds before a trial is stopped as hung")
    p.add_argument("--fresh", action="store_true", help="train every trial again (cached ones are kept, not read)")
    p.set_defaults(func=_main)


def _space(args: argparse.Namespace, runner: Any) -> Any:
    from slwdata.tune.search import SearchSpace

    w = runner.lr_warmup
    trial_length = max(1, int(round(args.warmup_multiples * w)))
    if args.evals < 3:
        raise _user(f"--evals {args.evals}: at least 3 validations are needed to see a fluctuation")
    try:
        starts = tuple(int(s) for s in args.starts.split(",") if s.strip())
    except ValueError:
        raise _user(f"--starts {args.starts!r}: expected comma-separated integers, e.g. 8,16,32") from None

    def x(v: float) -> int:
        return max(1, int(round(v * w)))

    return SearchSpace(
        unit=runner.unit,
        lr_warmup=w,
        trial_length=trial_length,
        eval_interval=max(1, trial_length // args.evals),
        starts=starts,
        t_init=x(args.t_init),
        t_min=x(args.t_min),
        t_max=x(args.t_max),
        resolution=x(args.resolution),
        ratio=args.ratio,
        start_window=x(args.start_window),
        max_trials=args.max_trials,
        end=runner.seq_len or None,
    )


def _user(msg: str) -> Exception:
    from slwdata.errors import UserError

    return UserError(msg)


def _main(args: argparse.Namespace) -> int:
    from slwdata.tune.runners import ExampleTrainerTrials, LLMFoundryTrials, TuneSetupError, val_tokens_needed
    from slwdata.tune.search import TrialCache, search

    out = Path(args.out)
    try:
        common = dict(
            overrides=args.overrides,
            launcher=args.launcher,
            lr_warmup=args.lr_warmup,
            log_dir=out / "logs",
            timeout_s=args.trial_timeout,
        )
        if _runner_kind(args) == "llmfoundry":
            runner: Any = LLMFoundryTrials(args.config, **common)
        else:
            runner = ExampleTrainerTrials(args.config, script=args.script, **common)
        space = _space(args, runner)
        problems = space.problems()
        if problems:
            raise TuneSetupError("; ".join(problems))
        need = args.min_val_tokens if args.min_val_tokens is not None else val_tokens_needed(args.ratio)
        have = runner.val_tokens()
        if 0 <= have < need:
            raise TuneSetupError(
                f"the validation set gives {have:,} tokens per validation, fewer than {need:,}: "
                f"a {args.ratio}x perplexity rise would not stand clear of its noise; use a larger "
                "data.val or eval_subset_num_batches (or --min-val-tokens)"
            )
    except TuneSetupError as exc:
        raise _user(str(exc)) from None
    identity = {**runner.identity(), "trial_length": space.trial_length, "eval_interval": space.eval_interval}
    cache = TrialCache(out / "trials", identity)
    if args.fresh:
        cache.get = lambda s, T: None  # type: ignore[method-assign]
    w, u = space.lr_warmup, space.unit
    print(
        f"slwdata tune: LR warmup {w}{u}; trials train {space.trial_length}{u} "
        f"({args.warmup_multiples:g}x), validating every {space.eval_interval}{u}; "
        f"starts {space.candidate_starts()}, T in [{space.t_min}, {space.t_max}]{u} to {space.resolution}{u}",
        flush=True,
    )
    t0 = time.time()
    try:
        result = search(
            runner.bind(space.trial_length, space.eval_interval),
            space,
            cache,
            log=lambda m: print(f"slwdata tune: {m}", flush=True),
        )
    except RuntimeError as exc:
        raise _user(f"{exc}; finished trials are cached in {out / 'trials'}, rerun to go on") from None
    report = write_report(
        result,
        out,
        full_run_tokens=runner.full_run_tokens(),
        wall_s=time.time() - t0,
        snippet=_snippet(result, isinstance(runner, LLMFoundryTrials)),
    )
    print(f"slwdata tune: {result.message}")
    print(
        f"slwdata tune: {report['trials_trained']} trials trained ({report['trials_cached']} cached), "
        f"{report['trial_tokens']:,} tokens = {report['cost_fraction']:.1%} of the full run's "
        f"{report['full_run_tokens']:,}"
    )
    print(f"slwdata tune: report {out / 'tune.md'}, plot {out / 'tune.png'}")
    if result.ok:
        print("paste into the config:\n" + _snippet(result, isinstance(runner, LLMFoundryTrials)))
        return 0
    return 1


def _runner_kind(args: argparse.Namespace) -> str:
    if args.runner != "auto":
        return args.runner
    import yaml

    try:
        cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    except OSError as exc:
        raise _user(f"{args.config}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _user(f"{args.config}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return "llmfoundry" if isinstance(cfg, dict) and "train_loader" in cfg else "example"


def _snippet(result: Any, llmfoundry: bool) -> str:
    if not result.ok:
        return ""
    d = f"{result.duration}{result.space.unit}"
    if llmfoundry:
        return f"algorithms:\n  slw: {{start: {result.start}, duration: {d}}}"
    return f"slw: {{enabled: true, start: {result.start}, duration: {d}}}"


def write_report(result: Any, out: Path, *, full_run_tokens: int, wall_s: float, snippet: str = "") -> dict[str, Any]:
    """``tune.json``, ``tune.md`` and ``tune.png`` under ``out``; returns the JSON's content."""
    out.mkdir(parents=True, exist_ok=True)
    trained = [t for t in result.trials if not t.cached]
    unique = {(t.start, t.duration): t for t in result.trials}
    trial_tokens = sum(t.curve.trained_tokens for t in unique.values())
    data = result.to_dict()
    data.update(
        {
            "trials_trained": len({(t.start, t.duration) for t in trained}),
            # From an earlier run's cache; a trial this run trained and then judged again (t_init,
            # start stage then T stage) is not one.
            "trials_cached": len(
                {(t.start, t.duration) for t in result.trials if t.cached} - {(t.start, t.duration) for t in trained}
            ),
            "trial_tokens": trial_tokens,
            "full_run_tokens": full_run_tokens,
            "cost_fraction": trial_tokens / full_run_tokens if full_run_tokens else math.nan,
            "wall_s": wall_s,
            "snippet": snippet,
        }
    )
    (out / "tune.json").write_text(json.dumps(data, indent=1))
    sp = result.space
    u = sp.unit
    lines = [
        "# slwdata tune",
        "",
        result.message,
        "",
        f"LR warmup {sp.lr_warmup}{u}; each trial trains {sp.trial_length}{u} and validates every "
        f"{sp.eval_interval}{u}; a fluctuation is a validation perplexity above {sp.ratio}x the best "
        "before it.",
        "",
        f"Cost: {trial_tokens:,} trained tokens over {len(unique)} trials = "
        f"{data['cost_fraction']:.1%} of the full run ({full_run_tokens:,} tokens).",
        "",
        "| # | stage | s | T | verdict | best val ppl | trained tokens | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(result.trials, 1):
        verdict = "passes" if t.passed else f"fluctuates at {t.fluctuation_at}{u}"
        best = min((v for _, v in t.curve.points), default=math.nan)
        lines.append(
            f"| {i} | {t.stage} | {t.start} | {t.duration}{u} | {verdict} (judged to {t.judged_until}{u}) | "
            f"{best:.2f} | {t.curve.trained_tokens:,} | {t.curve.wall_s:.1f}{' (cached)' if t.cached else ''} |"
        )
    if snippet:
        lines += ["", "```yaml", snippet, "```"]
    (out / "tune.md").write_text("\n".join(lines) + "\n")
    _plot(result, out / "tune.png")
    return data


def _plot(result: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    u = result.space.unit
    seen = set()
    for t in result.trials:
        if (t.start, t.duration) in seen or not t.curve.points:
            continue
        seen.add((t.start, t.duration))
        xs = [p for p, _ in t.curve.points]
        ys = [v for _, v in t.curve.points]
        (line,) = ax.plot(
            xs, ys, marker=".", label=f"s={t.start} T={t.duration}{u}" + ("" if t.passed else " (fluct.)")
        )
        best, thr = math.inf, []
        for v in ys:
            thr.append(result.space.ratio * best if math.isfinite(best) else math.nan)
            best = min(best, v)
        ax.plot(xs, thr, linestyle=":", color=line.get_color(), linewidth=0.8)
        if t.fluctuation_at is not None:
            ax.plot([t.fluctuation_at], [ys[xs.index(t.fluctuation_at)]], "x", color=line.get_color(), markersize=10)
    ax.set_yscale("log")
    ax.set_xlabel(f"trained {'tokens' if u == 'tok' else 'steps'}")
    ax.set_ylabel("validation perplexity")
    ax.set_title(f"slwdata tune: dotted = {result.space.ratio}x the best so far; x = first fluctuation")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    from slwdata.cli import main

    sys.exit(main(["tune", *sys.argv[1:]]))
