"""Compressed JSON-lines files cut into several work units (chunks) give exactly what one unit gives:
the same shard bytes, counts and skipped-record reports (file and line), and resume after kill -9."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pytest
import zstandard

import converters.readers as readers
from converters import convert
from converters.units import _array_encoder
from slwdata.tokenizers import load_tokenizer

from helpers_convert import all_bytes, kill_when

REPO = Path(__file__).resolve().parents[1]
KW = dict(tokenizer="bytes", progress=False, log=lambda m: None)
COMPRESS = {"zst": lambda b: zstandard.ZstdCompressor().compress(b), "xz": lzma.compress, "gz": gzip.compress}


def make_lines(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "délta", "ε", "<|endoftext|>", "zeta\n", "日本"]
    return [json.dumps({"text": " ".join(rng.choice(words, size=int(rng.integers(1, 60))))}).encode() for _ in range(n)]


def bad_corpus(n: int = 400, seed: int = 3) -> list[bytes]:
    lines = make_lines(n, seed)
    lines[57] = b"{broken"
    lines[130] = b'{"text": "bad \xff utf8"}'
    lines[131] = b""  # a blank line is a separator, not a record
    lines[250] = json.dumps({"txt": "no text"}).encode()
    lines[n - 1] = json.dumps({"text": ""}).encode()
    return lines


@pytest.mark.parametrize("codec", ["zst", "xz", "gz"])
def test_chunks_give_the_bytes_and_reports_of_one_unit(tmp_path, monkeypatch, codec):
    f = tmp_path / f"c.jsonl.{codec}"
    f.write_bytes(COMPRESS[codec](b"\n".join(bad_corpus()) + b"\n"))
    kw = dict(seq_len=50, size_limit=4096, **KW)
    whole = convert([f], str(tmp_path / "whole"), workers=1, **kw)
    (unit,) = readers.plan_units(readers.expand_inputs([f]))
    assert len(list(readers.iter_chunks(unit))) == 1  # small input: one chunk at the 1 MiB minimum

    monkeypatch.setattr(readers, "UNIT_BYTES", 997)
    (unit,) = readers.plan_units(readers.expand_inputs([f]))
    assert unit.chunk_bytes == 997 and len(list(readers.iter_chunks(unit))) > 10
    for workers in (1, 2):
        split = convert([f], str(tmp_path / f"split{workers}"), workers=workers, **kw)
        assert all_bytes(tmp_path / f"split{workers}") == all_bytes(tmp_path / "whole")
        assert split == whole
    c = whole["counts"]
    assert c["skipped"] == {"empty_document": 1, "invalid_json": 1, "invalid_utf8": 1, "missing_text": 1}
    assert c["documents"] == 400 - 5
    assert [e.split(": ")[0] for e in c["skip_examples"]] == [
        f"c.jsonl.{codec}:58",
        f"c.jsonl.{codec}:131",
        f"c.jsonl.{codec}:251",
        f"c.jsonl.{codec}:400",
    ]


def test_chunks_are_whole_lines_in_order(tmp_path):
    lines = make_lines(300, seed=4)
    data = b"\n".join(lines)  # no final newline: the last line is still a record
    f = tmp_path / "c.jsonl.zst"
    f.write_bytes(COMPRESS["zst"](data))
    unit = readers.plan_units(readers.expand_inputs([f]), unit_bytes=2000)[0]
    chunks = list(readers.iter_chunks(unit))
    assert b"".join(c for _, c, _ in chunks) == data
    line0 = 0
    for k, (sub, content, failure) in enumerate(chunks):
        assert (sub.chunk, sub.line0, failure) == (k, line0, None)
        assert sub.index == unit.index and sub.path == unit.path
        if k < len(chunks) - 1:
            assert content.endswith(b"\n") and len(content) >= 2000
            assert content[:-1].rfind(b"\n") + 1 < 2000  # cut after the first line that reaches 2000 bytes
        line0 += content.count(b"\n")
    empty = tmp_path / "e.jsonl.zst"
    empty.write_bytes(COMPRESS["zst"](b""))
    ((sub, content, failure),) = readers.iter_chunks(readers.plan_units(readers.expand_inputs([empty]))[0])
    assert (sub.chunk, content, failure) == (0, b"", None)


@pytest.mark.parametrize("codec", ["zst", "xz"])
def test_truncated_file_in_chunks_reports_what_one_unit_reports(tmp_path, monkeypatch, codec):
    full = COMPRESS[codec](b"\n".join(make_lines(3000, seed=5)) + b"\n")
    f = tmp_path / f"t.jsonl.{codec}"
    f.write_bytes(full[: len(full) // 2])
    kw = dict(seq_len=8, size_limit=1 << 16, **KW)
    whole = convert([f], str(tmp_path / "whole"), workers=1, **kw)
    assert whole["counts"]["skipped"].get("truncated_input") == 1
    monkeypatch.setattr(readers, "UNIT_BYTES", 4096)
    (unit,) = readers.plan_units(readers.expand_inputs([f]))
    chunks = list(readers.iter_chunks(unit))
    assert len(chunks) > 10 and chunks[-1][2][0] == "truncated_input"
    split = convert([f], str(tmp_path / "split"), workers=2, **kw)
    assert split == whole
    assert all_bytes(tmp_path / "split") == all_bytes(tmp_path / "whole")


CHILD = """
import sys
import converters.readers as readers
from converters import convert
readers.UNIT_BYTES = 4096
convert([sys.argv[1]], sys.argv[2], seq_len=128, tokenizer="gpt2", workers=int(sys.argv[3]),
        size_limit=1 << 16, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_mid_chunks_then_rerun_is_byte_identical(tmp_path, workers):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        (src / f"{i:02d}.jsonl.zst").write_bytes(COMPRESS["zst"](b"\n".join(make_lines(1500, seed=10 + i)) + b"\n"))
    kw = dict(seq_len=128, tokenizer="gpt2", size_limit=1 << 16, progress=False, log=lambda m: None)
    convert([src], str(tmp_path / "ref"), workers=1, **kw)  # one unit per file (inputs under 1 MiB)
    out = tmp_path / "out"
    marker = out / ".slwdata-work" / "unit-000000.000005.json"
    kill_when(CHILD, src, out, workers, marker)
    done_before = len(list((out / ".slwdata-work").glob("unit-*.*.json")))
    assert done_before >= 1  # chunk 5 is done; with a pool, earlier ones may still be in flight
    messages: list[str] = []
    # Without the small UNIT_BYTES here: the chunk size comes from the interrupted run's plan.
    convert([src], str(out), workers=workers, **{**kw, "log": messages.append})
    assert any(f"resuming: 0 of 2 work units already tokenized, and {done_before} chunks" in m for m in messages), (
        messages
    )
    assert all_bytes(out) == all_bytes(tmp_path / "ref")


@pytest.mark.parametrize("threads", [1, 3])
def test_array_encoder_gives_encode_ordinary_ids(threads):
    tok = load_tokenizer("gpt2")
    encode, pool = _array_encoder(tok, threads)
    texts = ["hello world", "<|endoftext|> stays text", "", "lone \ud800 surrogate", "😀  \n\n  x\t", "日本語 " * 500]
    try:
        got = [a.tolist() for a in encode(texts)]
    finally:
        if pool is not None:
            pool.shutdown()
    assert got == tok.encode_batch(texts)
    assert got[1][:3] != [tok.eos_id] and tok.eos_id not in got[1]
    assert _array_encoder(load_tokenizer("bytes"), 1) == (None, None)


@pytest.mark.parametrize("dtype", ["uint16", "int32"])
def test_token_writer_writes_what_mdswriter_writes(tmp_path, dtype):
    from streaming import MDSWriter

    from converters.pipeline import _make_writer

    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 60000, 16).astype(dtype) for _ in range(300)]
    for name, cls in (("ours", _make_writer()), ("plain", MDSWriter)):
        with cls(
            out=str(tmp_path / name),
            columns={"tokens": f"ndarray:{dtype}:16"},
            compression="zstd:3",
            hashes=["xxh64"],
            size_limit=2048,
        ) as w:
            for r in rows:
                w.write({"tokens": r})
            w.write({"tokens": rows[0][::2].repeat(2)})  # built another way
    assert all_bytes(tmp_path / "ours") == all_bytes(tmp_path / "plain")
    assert len(all_bytes(tmp_path / "ours")) > 3  # several shards
    ours = _make_writer()(out=str(tmp_path / "bad"), columns={"tokens": f"ndarray:{dtype}:16"})
    with pytest.raises(ValueError, match="Wrong shape"):  # a wrong-length row still gets MDSWriter's checks
        ours.encode_sample({"tokens": np.zeros(15, dtype)})
