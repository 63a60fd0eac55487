"""The README's "Convert a corpus" and "Train with SLW" blocks, run as written from a folder laid
out like the checkout (``../shared`` beside it, ``.venv`` inside). The "Tune s and T" block is run
by ``tests/test_tune.py``; the two set-up commands by ``.ci/run``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def blocks(heading: str, lang: str) -> list[str]:
    """The ``lang`` code blocks of the README section under ``## heading``."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(f"## {heading}\n") :]
    end = section.find("\n## ", 5)
    section = section if end < 0 else section[:end]
    return re.findall(rf"^```{lang}\n(.*?)^```", section, flags=re.S | re.M)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("readme")
    work = base / "slwdata"
    work.mkdir()
    (base / "shared").symlink_to(ROOT.parent / "shared")
    (work / ".venv").symlink_to(Path(sys.executable).parents[1])
    return work


@pytest.mark.slow
def test_readme_convert_and_train_blocks_run_as_written(checkout):
    (convert,) = blocks("Convert a corpus", "bash")
    outputs = []
    for line in convert.strip().splitlines():
        cmd = shlex.split(line, comments=True)
        run = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        outputs.append(run.stdout)
    # The figures the README states for pile-mini.
    meta = json.loads((checkout / "out" / "pile" / "slwdata.json").read_text())
    assert meta["counts"]["tokens"] == 5_859_234
    assert meta["counts"]["rows"] == 5_721 and meta["counts"]["leftover_tokens"] == 930
    assert "5,721" in outputs[1] or "5721" in outputs[1]

    (train,) = blocks("Train with SLW", "python")
    script = checkout / "train.py"
    script.write_text(train + "\nprint('TRAINED', int(trainer.state.timestamp.token))\n")
    run = subprocess.run([sys.executable, str(script)], cwd=checkout, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    line = next(x for x in run.stdout.splitlines() if x.startswith("TRAINED "))
    tokens = int(line.split()[1])
    # max_duration counts trained tokens: the run stops within one full-length batch past 100,000.
    assert 100_000 <= tokens < 100_000 + 8 * 1024, line
