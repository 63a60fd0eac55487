"""--engine spark (pyspark local mode) gives the same bytes as the local engine."""

from __future__ import annotations

import json

import pytest

from converters import convert
from converters.spark import spark_available

from helpers_convert import all_bytes

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_spark_engine_matches_local_engine(tmp_path):
    reason = spark_available()
    if reason:
        pytest.skip(reason)
    src = tmp_path / "in"
    src.mkdir()
    for f in range(4):
        (src / f"{f}.jsonl").write_text(
            "".join(json.dumps({"text": f"file {f} document {i} " * (1 + i % 5)}) + "\n" for i in range(60))
        )
    kw = dict(seq_len=40, tokenizer="gpt2", size_limit=4096, progress=False, log=lambda m: None)
    local = convert([src], str(tmp_path / "local"), workers=1, **kw)
    spark = convert([src], str(tmp_path / "spark"), engine="spark", **kw)
    assert spark == local
    assert all_bytes(tmp_path / "spark") == all_bytes(tmp_path / "local")
