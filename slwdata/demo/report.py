"""Tables, plots and report files for comparing training runs (quickstart and benchmarks).

A *run* is a plain dict (JSON-serialisable) with at least ``name`` and any of the metric keys in
``COLUMNS``, plus optional per-step ``history``: ``{"step": [...], "loss": [...],
"loss_ratio": [...], "seq_len": [...]}``.

Example::

    >>> runs = [{"name": "baseline", "trained_tokens": 1000, "final_val_loss": 5.0}]
    >>> print(format_table(runs, columns=["trained_tokens", "final_val_loss"]))
    run       trained tokens  final val loss
    --------  --------------  --------------
    baseline  1,000           5.000
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from slwdata.stability import LOSS_RATIO_THRESHOLD, loss_ratios  # noqa: F401 - re-exported

# key -> (header, format). Order is the table order.
COLUMNS: dict[str, tuple[str, str]] = {
    "steps": ("steps", "{:,}"),
    "trained_tokens": ("trained tokens", "{:,}"),
    "reserved_tokens": ("tokens re-served from tails", "{:,}"),
    "dropped_tokens": ("tokens cut", "{:,}"),
    "loss_ratio_spikes_1.5": ("steps loss ratio > 1.5", "{:,}"),
    "loss_ratio_spikes": ("steps loss ratio > 1.2", "{:,}"),
    "max_loss_ratio": ("max loss ratio", "{:.3f}"),
    "adam_var_max": ("Adam var max", "{:.3g}"),
    "final_val_loss": ("final val loss", "{:.3f}"),
    "final_val_ppl": ("final val ppl", "{:.1f}"),
    "wall_s": ("wall time (s)", "{:.1f}"),
}


def _cell(run: dict, key: str) -> str:
    value = run.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    fmt = COLUMNS.get(key, (key, "{}"))[1]
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def format_table(runs: Sequence[dict], columns: Iterable[str] | None = None, markdown: bool = False) -> str:
    """A fixed-width (or markdown) table with one row per run; missing values print as ``-``."""
    keys = [k for k in (columns or COLUMNS) if any(k in r for r in runs)]
    header = ["run"] + [COLUMNS.get(k, (k,))[0] for k in keys]
    rows = [[str(r.get("name", "?"))] + [_cell(r, k) for k in keys] for r in runs]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def plot_runs(runs: Sequence[dict], out_dir: str | os.PathLike) -> list[str]:
    """Write ``seq_len.png`` (paced length per step) and ``loss.png`` (training loss and loss
    ratio per step, every run) into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on CI or servers
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for run in runs:
        h = run.get("history") or {}
        if h.get("seq_len"):
            ax.plot(h["step"][: len(h["seq_len"])], h["seq_len"], label=run["name"], drawstyle="steps-post")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("sequence length")
    ax.set_title("Paced sequence length")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(str(out / "seq_len.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6, 6), sharex=False)
    for run in runs:
        h = run.get("history") or {}
        if h.get("loss"):
            x = h.get("tokens") or h["step"]
            ax1.plot(x[: len(h["loss"])], h["loss"], label=run["name"], lw=1)
            ratio = h.get("loss_ratio") or loss_ratios(h["loss"])
            ax2.plot(x[: len(ratio)], ratio, label=run["name"], lw=1)
    xlabel = "trained tokens" if any((r.get("history") or {}).get("tokens") for r in runs) else "step"
    ax1.set_ylabel("training loss")
    ax1.set_title("Training loss")
    ax2.axhline(LOSS_RATIO_THRESHOLD, color="grey", ls="--", lw=1, label="1.2")
    ax2.set_ylabel("loss ratio")
    ax2.set_xlabel(xlabel)
    ax2.set_title("Loss ratio (loss / min previous loss)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    paths.append(str(out / "loss.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write_report(
    runs: Sequence[dict],
    out_dir: str | os.PathLike,
    *,
    title: str,
    notes: Sequence[str] = (),
    config: dict[str, Any] | None = None,
    plots: Sequence[str] = (),
) -> dict[str, str]:
    """Write ``report.md`` (table, notes, plots) and ``report.json`` (config + runs with
    histories) into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", "", format_table(runs, markdown=True), ""]
    md += [f"- {n}" for n in notes]
    if config:
        md += ["", "## Configuration", "", "```json", json.dumps(config, indent=2, default=str), "```"]
    if plots:
        md += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n")
    with open(out / "report.json", "w") as f:
        json.dump(
            {"title": title, "notes": list(notes), "config": config or {}, "runs": list(runs)}, f, indent=1, default=str
        )
    return {"markdown": str(out / "report.md"), "json": str(out / "report.json")}
