"""The embedded standard-library corpus: deterministic, capped, Pile layout."""

import io
import json

import pytest
import zstandard

from slwdata.demo.corpus import build_corpus, docstrings


def _records(path):
    with open(path, "rb") as f:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), encoding="utf-8").read()
    return [json.loads(line) for line in text.splitlines()]


def test_deterministic_capped_pile_layout(tmp_path):
    a = build_corpus(tmp_path / "a", max_mb=0.2, num_files=2)
    b = build_corpus(tmp_path / "b", max_mb=0.2, num_files=2)
    for fa, fb in zip(a["files"], b["files"]):
        assert open(fa, "rb").read() == open(fb, "rb").read()
    records = [r for f in a["files"] for r in _records(f)]
    assert len(records) == a["documents"] > 2
    assert {r["meta"]["pile_set_name"] for r in records} == {"Github", "Pile-CC"}
    text_bytes = sum(len(r["text"].encode()) for r in records)
    assert text_bytes == a["text_bytes"]
    # The cap stops the build once reached: at most one document over it.
    assert 0.2e6 <= text_bytes < 0.2e6 + max(len(r["text"].encode()) for r in records)


def test_docstrings_and_bad_sources_are_counted(tmp_path):
    assert "Explain this module at some length, with detail." in docstrings(
        '"""Explain this module at some length, with detail."""\nx = 1\n'
    )
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_ok.py").write_text('"""A module docstring long enough to be kept in the corpus."""\n')
    (src / "b_latin1.py").write_bytes(b"s = '\xe9'\n")
    (src / "c_syntax.py").write_text("def broken(:\n")
    (src / "test").mkdir()
    (src / "test" / "skipped.py").write_text("x = 1\n")
    info = build_corpus(tmp_path / "out", max_mb=1, num_files=1, root=src)
    assert info["skipped"] == {"undecodable": 1, "unparsable_docstrings": 1}
    assert info["by_set"] == {"Github": 2, "Pile-CC": 1}
    with pytest.raises(ValueError, match="max_mb"):
        build_corpus(tmp_path / "x", max_mb=0)
