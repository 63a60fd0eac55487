"""slwdata inspect / verify on converted shards, including a corrupted shard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from converters import convert
from converters.inspect import verify
from slwdata.cli import main


@pytest.fixture()
def shards(tmp_path) -> Path:
    docs = [f"document number {i} " * (i % 7 + 1) for i in range(300)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = tmp_path / "out"
    convert(
        [tmp_path / "a.jsonl"],
        str(out),
        seq_len=32,
        tokenizer="bytes",
        size_limit=8192,
        progress=False,
        log=lambda m: None,
    )
    return out


def test_inspect_prints_counts_and_decoded_sample(shards, capsys):
    assert main(["inspect", str(shards)]) == 0
    out = capsys.readouterr().out
    meta = json.loads((shards / "slwdata.json").read_text())
    assert f"documents: 300  tokens: {meta['counts']['tokens']:,}" in out
    assert "dtype: uint16  seq_len: 32" in out
    assert "tokenizer: bytes" in out
    assert "row 0 decoded: 'document number 0 \\x00" not in out  # EOS is not decoded as a byte
    assert "row 0 decoded: 'document number 0 " in out


def test_verify_ok_then_names_flipped_shard(shards, capsys):
    assert main(["verify", str(shards)]) == 0
    assert "OK" in capsys.readouterr().out
    index = json.loads((shards / "index.json").read_text())
    assert len(index["shards"]) >= 3
    victim = shards / index["shards"][1]["zip_data"]["basename"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    assert main(["verify", str(shards)]) == 1
    err = capsys.readouterr().err
    assert f"{victim.name}: xxh64 hash mismatch" in err
    assert index["shards"][0]["zip_data"]["basename"] not in err
    assert verify(shards) == [f"{victim.name}: xxh64 hash mismatch (file is corrupt or was modified)"]


def test_verify_missing_shard_and_count_mismatch(shards, capsys):
    index = json.loads((shards / "index.json").read_text())
    last = index["shards"][-1]["zip_data"]["basename"]
    (shards / last).unlink()
    assert verify(shards) == [f"{last}: missing"]
    meta = json.loads((shards / "slwdata.json").read_text())
    meta["counts"]["rows"] += 1
    (shards / "slwdata.json").write_text(json.dumps(meta))
    assert any("counts.rows" in p for p in verify(shards))
    assert main(["verify", str(shards)]) == 1


def test_inspect_on_non_dataset_is_user_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "no index.json" in capsys.readouterr().err
