"""An embedded default corpus, built offline from the running interpreter's standard library.

``slwdata quickstart`` needs text on a fresh machine with no network. Every CPython install
carries a few tens of MB of real, English-documented Python: its standard-library sources.
``build_corpus`` walks them in sorted order (deterministic for a given Python version) and
writes them in The Pile's on-disk layout, so the real converter reads them like any Pile shard:

- each ``.py`` source file -> ``{"text": source, "meta": {"pile_set_name": "Github"}}``
- the docstrings of that file -> ``{"text": docstrings, "meta": {"pile_set_name": "Pile-CC"}}``

Example::

    >>> from slwdata.demo.corpus import build_corpus
    >>> info = build_corpus("/tmp/corpus", max_mb=1.0)   # doctest: +SKIP
    >>> info["files"]                                      # doctest: +SKIP
    ['/tmp/corpus/00.jsonl.zst', '/tmp/corpus/01.jsonl.zst']
"""

from __future__ import annotations

import ast
import json
import os
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

import zstandard

# Third-party packages and CPython's own test suites (which hold deliberately broken and
# oddly encoded files) are not standard-library prose.
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3"})


def stdlib_dir() -> Path:
    """The standard-library directory of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def iter_source_files(root: Path) -> Iterator[Path]:
    """``.py`` files under ``root`` in sorted (deterministic) order, excluded folders skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name


def docstrings(source: str) -> str:
    """Module, class and function docstrings of ``source``, separated by blank lines."""
    tree = ast.parse(source)
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) > 40:  # one-liners like "Return x." are noise
                parts.append(doc)
    return "\n\n".join(parts)


def build_corpus(
    out_dir: str | os.PathLike,
    *,
    max_mb: float = 2.0,
    num_files: int = 2,
    root: str | os.PathLike | None = None,
    level: int = 3,
) -> dict:
    """Write the standard-library corpus as ``NN.jsonl.zst`` files into ``out_dir``.

    Stops once ``max_mb`` MB (10**6 bytes, UTF-8) of text has been written; documents are
    dealt round-robin over ``num_files`` files. Returns the counts, including files skipped
    (undecodable or unparsable sources are counted in ``skipped``, never silently dropped).
    """
    if max_mb <= 0:
        raise ValueError(f"max_mb must be positive, got {max_mb}")
    root = Path(root) if root is not None else stdlib_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"standard-library directory not found: {root}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    budget = int(max_mb * 1e6)
    paths = [out / f"{i:02d}.jsonl.zst" for i in range(num_files)]
    counts = {"Github": 0, "Pile-CC": 0}
    skipped = {"undecodable": 0, "unparsable_docstrings": 0}
    written = 0
    docs = 0
    # One compressor per stream: a ZstdCompressor holds one frame's state at a time.
    writers = [zstandard.ZstdCompressor(level=level).stream_writer(open(p, "wb")) for p in paths]
    try:
        for path in iter_source_files(root):
            if written >= budget:
                break
            try:
                source = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                skipped["undecodable"] += 1
                continue
            records = [(source, "Github")]
            try:
                doc = docstrings(source)
            except (SyntaxError, ValueError):
                skipped["unparsable_docstrings"] += 1
                doc = ""
            if doc:
                records.append((doc, "Pile-CC"))
            for text, label in records:
                if not text.strip() or written >= budget:
                    continue
                line = json.dumps({"text": text, "meta": {"pile_set_name": label}}) + "\n"
                writers[docs % num_files].write(line.encode("utf-8"))
                written += len(text.encode("utf-8"))
                counts[label] += 1
                docs += 1
    finally:
        for w in writers:
            w.close()  # also closes the underlying file
    return {
        "files": [str(p) for p in paths],
        "documents": docs,
        "text_bytes": written,
        "by_set": counts,
        "skipped": skipped,
        "source": str(root),
        "python": sys.version.split()[0],
    }
