"""Shared by the converter tests: compare outputs byte for byte, kill a conversion mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def all_bytes(d: Path) -> dict[str, bytes]:
    """Every file below ``d`` by relative path."""
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def kill_when(child: str, src: Path, out: Path, workers: int, marker: Path) -> int:
    """Run ``python -c child src out workers``, SIGKILL it and its pool once ``marker`` exists
    (or it ended, or 120 s passed); check it died mid-run. Returns the finished work files."""
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(src), str(out), str(workers)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the child and its pool workers, mid-run
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "slwdata.json").exists()
    return len(list((out / ".slwdata-work").glob("unit-*.json")))
