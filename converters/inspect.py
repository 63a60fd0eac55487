"""``slwdata inspect`` and ``slwdata verify``: read back converted shards.

Example::

    >>> problems = verify("/tmp/pile-gpt2")        # doctest: +SKIP
    >>> problems
    []
    >>> read_rows("/tmp/pile-gpt2").shape           # doctest: +SKIP
    (5721, 1024)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from slwdata.errors import ConvertError
from slwdata.shards import META_NAME, read_meta

__all__ = ["load_index", "iter_shard_rows", "read_rows", "verify", "inspect_summary"]


def load_index(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "index.json"
    if not path.exists():
        raise ConvertError(f"{directory}: no index.json (not an MDS dataset, or the conversion did not finish)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConvertError(f"{path}: invalid JSON: {exc}") from exc


def _column(shard: dict[str, Any]) -> tuple[str, np.dtype, int]:
    names, encs = shard["column_names"], shard["column_encodings"]
    col = "tokens" if "tokens" in names else names[0]
    enc = encs[names.index(col)]
    parts = enc.split(":")
    if parts[0] != "ndarray" or len(parts) != 3:
        raise ConvertError(f"column {col!r} is {enc!r}; expected fixed-shape 'ndarray:<dtype>:<len>'")
    return col, np.dtype(parts[1]), int(parts[2])


def _raw_shard(directory: Path, shard: dict[str, Any]) -> bytes:
    from streaming.base.compression import decompress

    zinfo = shard.get("zip_data")
    info = zinfo or shard["raw_data"]
    path = directory / info["basename"]
    try:
        data = path.read_bytes()
        raw = decompress(shard["compression"], data) if zinfo else data
    except Exception as exc:  # noqa: BLE001 - zstd and the other codecs raise their own types
        raise ConvertError(
            f"{path}: cannot read this shard ({type(exc).__name__}: {exc}) — run 'slwdata verify "
            f"{directory}' to list the damaged shards, then reconvert or re-download"
        ) from None
    if len(raw) < 4 or len(raw) < 4 + 4 * (int(np.frombuffer(raw, "<u4", 1)[0]) + 1):
        raise ConvertError(
            f"{path}: shard is truncated ({len(raw)} bytes) — run 'slwdata verify {directory}' "
            "to list the damaged shards, then reconvert or re-download"
        )
    return raw


def iter_shard_rows(directory: str | Path) -> Iterator[np.ndarray]:
    """Yield each shard's rows as a ``[samples, seq_len]`` array, in index order."""
    directory = Path(directory)
    for shard in load_index(directory)["shards"]:
        _, dtype, L = _column(shard)
        raw = _raw_shard(directory, shard)
        n = int(np.frombuffer(raw, "<u4", 1)[0])
        offsets = np.frombuffer(raw, "<u4", n + 1, 4)
        # Fixed-size single column: samples are contiguous, so the body is one matrix.
        body = raw[int(offsets[0]) : int(offsets[-1])]
        try:
            rows = np.frombuffer(body, dtype).reshape(n, L)
        except ValueError as exc:
            name = (shard.get("zip_data") or shard["raw_data"])["basename"]
            raise ConvertError(
                f"{directory / name}: shard does not hold {n} rows of {L} tokens ({exc}) — run "
                f"'slwdata verify {directory}', then reconvert or re-download"
            ) from None
        yield rows


def read_rows(directory: str | Path) -> np.ndarray:
    """All rows of a (small) dataset as one ``[rows, seq_len]`` array."""
    parts = list(iter_shard_rows(directory))
    if not parts:
        return np.zeros((0, 0), np.uint16)
    return np.concatenate(parts)


def verify(directory: str | Path) -> list[str]:
    """Check every shard's size and hashes against ``index.json`` and the counts against
    ``slwdata.json``. Returns problems (each naming its shard); empty when all is well."""
    from streaming.base.hashing import get_hash

    directory = Path(directory)
    index = load_index(directory)
    meta = read_meta(directory)
    problems: list[str] = []
    # index.json's row total vs slwdata.json; bad shard files are reported one by one below.
    total_rows = sum(int(s["samples"]) for s in index["shards"])
    hashed = False
    for shard in index["shards"]:
        zinfo = shard.get("zip_data")
        info = zinfo or shard["raw_data"]
        name = info["basename"]
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
            continue
        data = path.read_bytes()
        if len(data) != info["bytes"]:
            problems.append(f"{name}: size {len(data)} bytes, index.json says {info['bytes']}")
            continue
        bad = False
        for algo, want in (info.get("hashes") or {}).items():
            hashed = True
            if get_hash(algo, data) != want:
                problems.append(f"{name}: {algo} hash mismatch (file is corrupt or was modified)")
                bad = True
        if bad:
            continue
        try:
            if zinfo:
                from streaming.base.compression import decompress

                raw = decompress(shard["compression"], data)
            else:
                raw = data
        except Exception as exc:  # noqa: BLE001 - zstd raises its own error type
            problems.append(f"{name}: cannot decompress ({exc})")
            continue
        rinfo = shard["raw_data"]
        if len(raw) != rinfo["bytes"]:
            problems.append(f"{name}: decompressed size {len(raw)}, index.json says {rinfo['bytes']}")
            continue
        for algo, want in (rinfo.get("hashes") or {}).items():
            if get_hash(algo, raw) != want:
                problems.append(f"{name}: decompressed {algo} hash mismatch")
        n = int(np.frombuffer(raw, "<u4", 1)[0])
        if n != shard["samples"]:
            problems.append(f"{name}: holds {n} samples, index.json says {shard['samples']}")
        try:
            _, dtype, L = _column(shard)
            offsets = np.frombuffer(raw, "<u4", n + 1, 4)
            if int(offsets[-1]) != len(raw) or int(offsets[-1] - offsets[0]) != n * L * dtype.itemsize:
                problems.append(f"{name}: size does not match {n} rows of {L} {dtype} tokens")
        except ConvertError as exc:
            problems.append(f"{name}: {exc}")
    if meta is None:
        problems.append(
            f"no {META_NAME}: the conversion did not finish (rerun it to resume) or these are not slwdata shards"
        )
    else:
        c = meta.counts
        if total_rows != c.get("rows"):
            problems.append(f"{META_NAME}: counts.rows={c.get('rows')} but index.json lists {total_rows} rows")
        if c.get("tokens") != c.get("rows", 0) * meta.seq_len + c.get("leftover_tokens", 0):
            problems.append(f"{META_NAME}: counts.tokens != rows * seq_len + leftover_tokens")
        for shard in index["shards"]:
            try:
                _, dtype, L = _column(shard)
            except ConvertError:
                continue
            if (str(dtype), L) != (meta.dtype, meta.seq_len):
                problems.append(
                    f"{shard['raw_data']['basename']}: column is {dtype}[{L}] but "
                    f"{META_NAME} says {meta.dtype}[{meta.seq_len}]"
                )
                break
    if not hashed and index["shards"]:
        problems.append("index.json records no hashes: only sizes and counts were checked")
    return problems


def inspect_summary(directory: str | Path, sample_tokens: int = 64) -> str:
    """A human-readable summary: counts, dtype, shards, and a decoded sample."""
    directory = Path(directory)
    index = load_index(directory)
    meta = read_meta(directory)
    shards = index["shards"]
    lines = [f"dataset: {directory}"]
    rows = sum(s["samples"] for s in shards)
    zbytes = sum((s.get("zip_data") or s["raw_data"])["bytes"] for s in shards)
    rbytes = sum(s["raw_data"]["bytes"] for s in shards)
    lines.append(
        f"shards: {len(shards)}  rows: {rows:,}  size: {zbytes / 1e6:.2f} MB on disk "
        f"({rbytes / 1e6:.2f} MB raw)  compression: {shards[0]['compression'] if shards else '-'}"
    )
    if shards:
        col, dtype, L = _column(shards[0])
        lines.append(
            f"column: {col}  dtype: {dtype}  seq_len: {L}  hashes: {', '.join(shards[0].get('hashes') or []) or 'none'}"
        )
    if meta is None:
        lines.append(f"no {META_NAME}: plain MDS shards (counts unknown)")
    else:
        c = meta.counts
        tok = meta.tokenizer
        lines.append(
            f"tokenizer: {tok.get('name')} ({tok.get('kind')}, vocab {tok.get('vocab_size')})  eos_id: {meta.eos_id}"
        )
        lines.append(
            f"documents: {c.get('documents', 0):,}  tokens: {c.get('tokens', 0):,}  "
            f"rows: {c.get('rows', 0):,}  leftover tokens: {c.get('leftover_tokens', 0):,}"
        )
        skipped = c.get("skipped") or {}
        lines.append(
            "skipped: "
            + (", ".join(f"{k}={v:,}" for k, v in skipped.items()) if skipped else "none")
            + (f"  filtered: {c['filtered']:,}" if c.get("filtered") else "")
        )
        for ex in c.get("skip_examples", [])[:5]:
            lines.append(f"  e.g. {ex}")
        lines.append(
            "sources: "
            + ", ".join(f"{s['name']} ({s['size']:,} B)" for s in meta.sources[:8])
            + (f", ... ({len(meta.sources)} in all)" if len(meta.sources) > 8 else "")
        )
    if rows:
        first = next(iter_shard_rows(directory))[0][:sample_tokens]
        lines.append(f"row 0, first {len(first)} ids: {first.tolist()}")
        text = None
        if meta is not None:
            try:
                from slwdata.tokenizers import load_tokenizer

                text = load_tokenizer(meta.tokenizer.get("name", "")).decode(first.tolist())
            except Exception:  # noqa: BLE001 - decoding is a courtesy
                text = None
        lines.append(f"row 0 decoded: {text!r}" if text is not None else "row 0 decoded: (tokenizer not available)")
    return "\n".join(lines)
