"""Write small token shards for tests, scripts and benchmarks (no converter needed).

Example::

    from slwdata.dataset.testing import write_token_shards
    tokens = write_token_shards('/tmp/shards', num_rows=64, seq_len=32, rows_per_shard=16)
    tokens.shape          # (64, 32): row i is global sample i
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from slwdata.shards import write_meta

__all__ = ['write_token_shards', 'random_tokens']


def random_tokens(num_rows: int, seq_len: int, vocab: int = 50257, seed: int = 0, dtype: str = 'uint16') -> np.ndarray:
    """Deterministic random token rows ``[num_rows, seq_len]``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=(num_rows, seq_len)).astype(dtype)


def write_token_shards(
    out: Union[str, tuple[str, str]],
    num_rows: int = 64,
    seq_len: int = 32,
    rows_per_shard: int = 16,
    tokens: Optional[np.ndarray] = None,
    dtype: str = 'uint16',
    compression: Optional[str] = 'zstd',
    hashes: tuple[str, ...] = ('xxh64',),
    meta: bool = True,
    encoding: Optional[str] = None,
    eos_id: int = 50256,
    seed: int = 0,
) -> np.ndarray:
    """Write ``tokens`` (or random rows) as MDS shards with a ``tokens`` column.

    ``out`` is a directory or ``(local, remote)`` as ``MDSWriter`` takes it. ``encoding``
    overrides the column encoding (default ``ndarray:<dtype>:<seq_len>``; ``"ndarray"`` or
    ``"bytes"`` write llm-foundry style variable-size columns). Shards hold ``rows_per_shard``
    rows each. Writes ``slwdata.json`` beside ``index.json`` if ``meta``. Returns the rows.
    """
    from streaming import MDSWriter

    if tokens is None:
        tokens = random_tokens(num_rows, seq_len, seed=seed, dtype=dtype)
    tokens = np.ascontiguousarray(tokens)
    num_rows, seq_len = tokens.shape
    encoding = encoding or f'ndarray:{tokens.dtype.name}:{seq_len}'
    local = out[0] if isinstance(out, tuple) else out
    samples = [{'tokens': row.tobytes() if encoding == 'bytes' else row} for row in tokens]
    extra = {'keep_local': True} if isinstance(out, tuple) else {}
    with MDSWriter(
        out=out, columns={'tokens': encoding}, compression=compression, hashes=list(hashes), **extra
    ) as writer:
        # Exactly rows_per_shard rows a shard: the limit counts the shard header and 4 bytes of
        # offset per sample on top of the encoded sample.
        per_sample = len(writer.encode_sample(samples[0])) + writer.extra_bytes_per_sample
        writer.size_limit = writer.extra_bytes_per_shard + rows_per_shard * per_sample
        for sample in samples:
            writer.write(sample)
    if meta:
        info = {
            'format': 'slwdata-shards',
            'version': 1,
            'column': 'tokens',
            'seq_len': seq_len,
            'dtype': tokens.dtype.name,
            'eos_id': eos_id,
            'counts': {'rows': int(num_rows), 'tokens': int(tokens.size)},
        }
        write_meta(local, info)
        if isinstance(out, tuple) and not out[1].startswith(('s3://', 'gs://', 'oci://')):
            write_meta(out[1], info)
    return tokens
