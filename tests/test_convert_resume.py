"""Resume after kill -9: rerunning gives shards byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from converters import ConvertError, convert

from helpers_convert import all_bytes, kill_when

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("resume")
    src = root / "in"
    src.mkdir()
    for f in range(16):
        text = "".join(
            json.dumps({"text": f"file {f} doc {i} " + "lorem ipsum dolor sit amet " * (5 + i % 13)}) + "\n"
            for i in range(150)
        )
        (src / f"{f:02d}.jsonl").write_text(text)
    ref = root / "ref"
    convert(
        [src],
        str(ref),
        seq_len=128,
        tokenizer="gpt2",
        workers=1,
        size_limit=1 << 16,
        progress=False,
        log=lambda m: None,
    )
    return src, all_bytes(ref)


CHILD = """
import sys
from converters import convert
convert([sys.argv[1]], sys.argv[2], seq_len=128, tokenizer="gpt2", workers=int(sys.argv[3]),
        size_limit=1 << 16, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_units,workers", [(1, 1), (9, 2)])
def test_kill_9_then_rerun_is_byte_identical(corpus, tmp_path, kill_after_units, workers):
    src, ref = corpus
    out = tmp_path / "out"
    marker = out / ".slwdata-work" / f"unit-{kill_after_units:06d}.json"
    done_before = kill_when(CHILD, src, out, workers, marker)
    assert done_before >= 1
    messages: list[str] = []
    convert(
        [src],
        str(out),
        seq_len=128,
        tokenizer="gpt2",
        workers=workers,
        size_limit=1 << 16,
        progress=False,
        log=messages.append,
    )
    assert any(f"resuming: {done_before} of 16" in m for m in messages), messages
    assert all_bytes(out) == ref


def test_interrupted_output_with_other_settings_is_refused(corpus, tmp_path):
    src, _ = corpus
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(src), str(out), "1"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    marker = out / ".slwdata-work" / "unit-000001.json"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises(ConvertError, match="interrupted conversion.*seq_len: existing 128, requested 64"):
        convert([src], str(out), seq_len=64, tokenizer="gpt2", size_limit=1 << 16, progress=False, log=lambda m: None)
    meta = convert(
        [src],
        str(out),
        seq_len=64,
        tokenizer="gpt2",
        size_limit=1 << 16,
        overwrite=True,
        progress=False,
        log=lambda m: None,
    )
    assert meta["seq_len"] == 64 and meta["counts"]["documents"] == 16 * 150
