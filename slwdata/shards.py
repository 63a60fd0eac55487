"""The shard metadata file ``slwdata.json`` (written beside ``index.json`` by the converter).

Plain stdlib so the dataset, the CLI and tests can read it without heavy imports.

Example::

    >>> meta = read_meta("shards/")          # doctest: +SKIP
    >>> meta.seq_len, meta.dtype, meta.counts["tokens"]
    (1024, 'uint16', 5859234)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "META_NAME",
    "FORMAT",
    "VERSION",
    "ShardMeta",
    "read_meta",
    "write_meta",
    "dtype_for_vocab",
    "diff_config",
    "meta_from_json",
    "meta_to_json",
    "read_meta_file",
    "read_meta_fields",
]

META_NAME = "slwdata.json"
FORMAT = "slwdata-shards"
VERSION = 1


def dtype_for_vocab(vocab_size: int) -> str:
    """``"uint16"`` when every id fits (``vocab_size <= 65536``), else ``"int32"``."""
    return "uint16" if vocab_size <= 65536 else "int32"


@dataclass
class ShardMeta:
    """Contents of ``slwdata.json``; see docs/DESIGN.md for the meaning of each field."""

    seq_len: int
    dtype: str
    eos_id: int
    tokenizer: dict[str, Any]
    sources: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    column: str = "tokens"
    format: str = FORMAT
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Keep the documented key order at the top of the file for humans.
        order = [
            "format",
            "version",
            "column",
            "seq_len",
            "dtype",
            "eos_id",
            "tokenizer",
            "sources",
            "counts",
            "config",
        ]
        return {k: d[k] for k in order}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShardMeta":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a slwdata metadata file (format={d.get('format')!r})")
        if int(d.get("version", 0)) > VERSION:
            raise ValueError(f"slwdata.json version {d.get('version')} is newer than this library ({VERSION})")
        known = {f for f in cls.__dataclass_fields__}  # ignore unknown keys from newer writers
        return cls(**{k: v for k, v in d.items() if k in known})


def meta_to_json(meta: ShardMeta | dict[str, Any]) -> str:
    """Deterministic JSON text (same metadata -> same bytes)."""
    d = meta.to_dict() if isinstance(meta, ShardMeta) else meta
    return json.dumps(d, indent=1, sort_keys=False) + "\n"


def meta_from_json(text: str) -> ShardMeta:
    return ShardMeta.from_dict(json.loads(text))


def read_meta(directory: str | os.PathLike[str]) -> ShardMeta | None:
    """Read ``<directory>/slwdata.json``; ``None`` when the file is absent (plain MDS shards)."""
    path = Path(directory) / META_NAME
    if not path.exists():
        return None
    try:
        return meta_from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: invalid slwdata metadata: {exc}") from exc


def read_meta_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The fields of one ``slwdata.json`` file as a dict, without checking its format (for readers
    that take partial metadata, e.g. only ``seq_len`` and ``dtype``). Raises OSError or ValueError."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_meta_fields(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fields of ``<directory>/slwdata.json`` as a dict, unchecked; None when the file is absent."""
    path = Path(directory) / META_NAME
    return read_meta_file(path) if path.is_file() else None


def write_meta(directory: str | os.PathLike[str], meta: ShardMeta | dict[str, Any]) -> Path:
    """Write ``slwdata.json`` atomically (temp file + rename) and return its path."""
    path = Path(directory) / META_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(meta_to_json(meta), encoding="utf-8")
    os.replace(tmp, path)
    return path


def diff_config(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two config values, e.g.
    ``["seq_len: existing 1024, requested 2048"]``."""
    out: list[str] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in list(old) + [k for k in new if k not in old]:
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old:
                out.append(f"{key}: absent in existing output, requested {new[k]!r}")
            elif k not in new:
                out.append(f"{key}: existing {old[k]!r}, absent in request")
            else:
                out.extend(diff_config(old[k], new[k], key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            out.extend(diff_config(a, b, f"{prefix}[{i}]"))
    elif old != new:
        out.append(f"{prefix}: existing {old!r}, requested {new!r}")
    return out
