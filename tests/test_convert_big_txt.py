"""A .txt document larger than the piece size is read in pieces with the same tokens."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import zstandard

import converters.readers as readers
from converters import convert

from helpers_convert import all_bytes

PILE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpora" / "pile-mini"


@pytest.fixture(scope="module")
def big_text() -> str:
    """~300 KB of real text (pile-mini documents joined): words, numbers, code, newlines."""
    path = sorted(PILE.glob("*.jsonl.zst"))[0]
    with open(path, "rb") as f:
        lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8")
        docs = []
        for line in lines:
            docs.append(json.loads(line)["text"])
            if sum(map(len, docs)) > 300_000:
                break
    return "\n\n".join(docs) + " ünïcödé  double  spaces\tand tabs\n"


@pytest.mark.parametrize("tokenizer", ["gpt2", "bytes"])
def test_big_txt_in_pieces_gives_the_same_shards(tmp_path, big_text, monkeypatch, tokenizer):
    src = tmp_path / "in"
    src.mkdir()
    (src / "big.txt").write_text(big_text, encoding="utf-8")
    kw = dict(seq_len=256, tokenizer=tokenizer, workers=1, progress=False, log=lambda m: None)
    whole = convert([src], str(tmp_path / "whole"), **kw)  # 300 KB < 8 MiB: one piece
    monkeypatch.setattr(readers, "TXT_PIECE_BYTES", 4096)
    (unit,) = readers.plan_units(readers.expand_inputs([src / "big.txt"]))
    pieces = list(readers.iter_unit_documents(unit, readers.ReadOptions(), readers.SkipLog("skip"), split_txt=True))
    assert len(pieces) > 20 and "".join(pieces) == big_text
    assert [p.doc_end for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert max(map(len, pieces)) < 3 * 4096
    split = convert([src], str(tmp_path / "split"), **kw)
    assert split["counts"] == whole["counts"] and split["counts"]["documents"] == 1
    assert all_bytes(tmp_path / "split") == all_bytes(tmp_path / "whole")


def test_big_txt_with_invalid_utf8_is_skipped_whole(tmp_path, big_text, monkeypatch):
    monkeypatch.setattr(readers, "TXT_PIECE_BYTES", 4096)
    src = tmp_path / "in"
    src.mkdir()
    (src / "bad.txt").write_bytes(big_text.encode() + b"\xff tail")
    (src / "good.txt").write_text("a small good document", encoding="utf-8")
    # the one good document is shorter than a row: allow the empty output, the counts are the point
    meta = convert(
        [src],
        str(tmp_path / "out"),
        seq_len=16,
        tokenizer="gpt2",
        workers=1,
        progress=False,
        log=lambda m: None,
        allow_empty=True,
    )
    assert meta["counts"]["documents"] == 1
    assert meta["counts"]["skipped"]["invalid_utf8"] == 1
