"""The per-unit worker of ``convert``: one work unit (or chunk) -> a token file and its result.

``run_unit`` tokenizes a text unit, or copies a nanoGPT / Megatron unit's tokens, into the
work folder; the pool in ``converters.pipeline`` and the Spark tasks in ``converters.spark``
both call it, so neither imports the other. A unit's token file and then its small JSON
result are written to a temp name and renamed, so after ``kill -9`` a unit is whole or absent.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.readers import ReadOptions, SkipLog, Unit, iter_unit_documents, read_megatron_index
from slwdata.errors import ConvertError
from slwdata.tokenizers import Tokenizer, load_tokenizer

__all__ = ["run_unit", "load_done_unit", "init_worker", "keep_tokenizer", "atomic_write_bytes", "ROW_CHUNK"]

_BATCH_DOCS = 256
_BATCH_CHARS = 4 << 20
ROW_CHUNK = 1 << 22  # tokens read per step (bounded memory)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp name and a rename: the file is whole or absent."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


_WORKER_TOK: dict[str, Tokenizer] = {}
_PROGRESS: Any = None  # (docs, tokens) shared counters, inherited by pool workers


def init_worker(progress: Any, parent_pid: int | None = None) -> None:
    """Set this process' (docs, tokens) progress counters; a pool worker also ends with ``parent_pid``."""
    global _PROGRESS
    _PROGRESS = progress
    if parent_pid is not None:
        _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """Make a pool worker end with the main process, however that ends (even ``kill -9``), and
    keep it off the caller's stdout: an orphaned worker would hold a pipe open for ever."""
    # Ctrl-C reaches the whole process group; the main process stops the pool and says what was kept.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The CLI's SIGTERM handler is inherited through fork; the pool's own shutdown sends SIGTERM,
    # which must end a worker quietly.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    if sys.platform.startswith("linux"):
        import ctypes

        # Fires when the forking *thread* ends: the pool forks from the main thread on submit.
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    else:  # no parent-death signal: watch the parent pid instead

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _bump(docs: int, tokens: int) -> None:
    if _PROGRESS is not None:
        with _PROGRESS[0].get_lock():
            _PROGRESS[0].value += docs
        with _PROGRESS[1].get_lock():
            _PROGRESS[1].value += tokens


def keep_tokenizer(tok: Tokenizer) -> None:
    """Cache ``tok`` for its spec in this process: reused inline and by forked pool workers."""
    _WORKER_TOK[json.dumps(tok.spec, sort_keys=True)] = tok


def _worker_tokenizer(spec: dict[str, Any]) -> Tokenizer:
    key = json.dumps(spec, sort_keys=True)
    if key not in _WORKER_TOK:
        _WORKER_TOK[key] = load_tokenizer(spec)
    return _WORKER_TOK[key]


def _unit_paths(work: Path, unit: Unit) -> tuple[Path, Path]:
    stem = f"unit-{unit.index:06d}" + ("" if unit.chunk is None else f".{unit.chunk:06d}")
    return work / f"{stem}.tok", work / f"{stem}.json"


def _finish_unit(work: Path, unit: Unit, result: dict[str, Any]) -> dict[str, Any]:
    result.update({"unit": unit.index, "chunk": unit.chunk, "label": unit.label})
    _, res_path = _unit_paths(work, unit)
    atomic_write_bytes(res_path, json.dumps(result, sort_keys=True).encode())
    return result


def _array_encoder(
    tok: Tokenizer, threads: int
) -> tuple[Callable[[list[str]], list[np.ndarray]] | None, cf.ThreadPoolExecutor | None]:
    """For tiktoken: an encoder of a batch into uint32 arrays (``encode_to_numpy``), which skips
    building a Python list per document (about a third of the single-core tokenizing time
    on pile-mini). Same ids as ``encode_ordinary``: no special token is allowed, so
    ``<|endoftext|>`` in the text stays text. (None, None) for other tokenizers."""
    enc = getattr(tok, "enc", None)
    if tok.kind != "tiktoken" or not hasattr(enc, "encode_to_numpy"):
        return None, None

    def one(text: str) -> np.ndarray:
        try:
            return enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
        except UnicodeEncodeError:  # lone surrogates: encode_ordinary repairs them the same way
            return np.asarray(enc.encode_ordinary(text), np.uint32)

    if threads <= 1:
        return (lambda texts: [one(t) for t in texts]), None
    ex = cf.ThreadPoolExecutor(threads)  # tiktoken releases the GIL while encoding
    return (lambda texts: list(ex.map(one, texts))), ex


def _tokenize_text_unit(
    unit: Unit,
    tok_spec: dict[str, Any],
    dtype: str,
    opts: ReadOptions,
    on_error: str,
    work: str,
    threads: int = 1,
    lines: bytes | None = None,
    failure: tuple[str, str] | None = None,
) -> dict[str, Any]:
    workp = Path(work)
    tok = _worker_tokenizer(tok_spec)
    eos = tok.eos_id
    eos_arr = np.array([eos], np.uint32)
    skip = SkipLog(on_error)
    tok_path, _ = _unit_paths(workp, unit)
    tmp = tok_path.with_name(tok_path.name + ".tmp")
    docs = tokens = 0
    encode_arrays, pool = _array_encoder(tok, threads)
    try:
        with open(tmp, "wb") as out:
            batch: list[str] = []
            chars = 0

            def flush() -> None:
                nonlocal docs, tokens, chars
                if not batch:
                    return
                # A TextPiece that does not end its document gets no EOS (and is no document).
                ends = [getattr(t, "doc_end", True) for t in batch]
                if encode_arrays is not None:
                    parts: list[np.ndarray] = []
                    for ids, end in zip(encode_arrays(batch), ends):
                        parts.append(ids)
                        if end:
                            parts.append(eos_arr)
                    # ids < vocab_size, which the dtype was chosen to hold
                    arr = np.concatenate(parts, dtype=dtype, casting="unsafe")
                else:
                    flat: list[int] = []
                    for ids, end in zip(tok.encode_batch(batch, num_threads=threads), ends):
                        flat.extend(ids)
                        if end:
                            flat.append(eos)
                    arr = np.asarray(flat, dtype=dtype)
                out.write(arr.tobytes())
                n_docs = sum(ends)
                docs += n_docs
                tokens += len(arr)
                _bump(n_docs, len(arr))
                batch.clear()
                chars = 0

            split = tok.kind in ("tiktoken", "bytes")  # see readers._SAFE_CUT
            for text in iter_unit_documents(unit, opts, skip, lines, failure, split_txt=split):
                batch.append(text)
                chars += len(text)
                if len(batch) >= _BATCH_DOCS * threads or chars >= _BATCH_CHARS * threads:
                    flush()
            flush()
    finally:
        if pool is not None:
            pool.shutdown()
    os.replace(tmp, tok_path)
    return _finish_unit(
        workp,
        unit,
        {
            "documents": docs,
            "tokens": tokens,
            "skipped": skip.counts,
            "skip_examples": skip.examples,
            "filtered": skip.filtered,
            "segments": [{"path": tok_path.name, "dtype": dtype, "offset": 0, "count": tokens}],
        },
    )


def _check_ids(arr: np.ndarray, vocab: int, where: str) -> None:
    if arr.size and (int(arr.max()) >= vocab or int(arr.min()) < 0):
        bad = int(arr.max()) if int(arr.max()) >= vocab else int(arr.min())
        raise ConvertError(
            f"{where}: token id {bad} is outside the tokenizer's vocabulary "
            f"(0..{vocab - 1}); pass the --tokenizer the data was made with"
        )


def _nanogpt_unit(unit: Unit, tok_spec: dict[str, Any], dtype: str, work: str) -> dict[str, Any]:
    """nanoGPT ``train.bin``: headerless uint16 tokens, each document followed by EOT."""
    tok = _worker_tokenizer(tok_spec)
    size = os.path.getsize(unit.path)
    if size % 2:
        raise ConvertError(f"{unit.name}: nanoGPT .bin size {size} is not a multiple of 2 (uint16 tokens)")
    n = size // 2
    data = np.memmap(unit.path, np.uint16, "r") if n else np.zeros(0, np.uint16)
    eos_count = 0
    for a in range(0, n, ROW_CHUNK):
        chunk = np.asarray(data[a : a + ROW_CHUNK])
        _check_ids(chunk, tok.vocab_size, f"{unit.name} (tokens {a}..{a + len(chunk)})")
        eos_count += int(np.count_nonzero(chunk == tok.eos_id))
    segments: list[dict[str, Any]] = [{"source": unit.path, "dtype": "uint16", "offset": 0, "count": n}] if n else []
    added = 0
    if n and int(data[n - 1]) != tok.eos_id:  # last document without its EOT: keep the invariant
        segments.append({"eos": 1})
        added = 1
    _bump(eos_count + added, n + added)
    return _finish_unit(
        Path(work),
        unit,
        {
            "documents": eos_count + added,
            "tokens": n + added,
            "skipped": {},
            "skip_examples": [],
            "filtered": 0,
            "eos_added": added,
            "segments": segments,
        },
    )


def _megatron_unit(unit: Unit, tok_spec: dict[str, Any], dtype: str, work: str) -> dict[str, Any]:
    """Megatron ``.bin``/``.idx``: documents (``doc_idx`` ranges of sequences) copied in order,
    with EOS appended to any document that does not already end with it."""
    tok = _worker_tokenizer(tok_spec)
    idx = read_megatron_index(Path(unit.path).with_suffix(".idx"))
    sizes, pointers, doc_idx = idx["sizes"], idx["pointers"], idx["doc_idx"]
    n_seq = idx["n_sequences"]
    src_dtype = idx["dtype"]
    bin_size = os.path.getsize(unit.path)
    if n_seq:
        end = int(pointers[-1]) + int(sizes[-1]) * src_dtype.itemsize
        if end > bin_size or int(sizes.min()) < 0:
            raise ConvertError(f"{unit.name}: index points past the end of the .bin ({end} > {bin_size} bytes)")
    data = np.memmap(unit.path, src_dtype, "r") if bin_size else np.zeros(0, src_dtype)
    if len(doc_idx) >= 2 and int(doc_idx[0]) == 0 and int(doc_idx[-1]) == n_seq:
        bounds = [int(x) for x in doc_idx]
    else:  # no usable document index: every sequence is a document
        bounds = list(range(n_seq + 1))
    workp = Path(work)
    tok_path, _ = _unit_paths(workp, unit)
    tmp = tok_path.with_name(tok_path.name + ".tmp")
    docs = tokens = added = 0
    with open(tmp, "wb") as out:
        pending: list[np.ndarray] = []
        pending_n = 0
        for d in range(len(bounds) - 1):
            parts = []
            for s in range(bounds[d], bounds[d + 1]):
                start = int(pointers[s]) // src_dtype.itemsize
                parts.append(np.asarray(data[start : start + int(sizes[s])]))
            doc = np.concatenate(parts) if parts else np.zeros(0, src_dtype)
            if doc.size == 0:
                continue  # an empty document has nothing to keep, not even an EOS
            _check_ids(doc, tok.vocab_size, f"{unit.name} document {d}")
            doc = doc.astype(dtype)
            if int(doc[-1]) != tok.eos_id:
                doc = np.append(doc, np.array([tok.eos_id], dtype))
                added += 1
            pending.append(doc)
            pending_n += len(doc)
            docs += 1
            tokens += len(doc)
            if pending_n >= ROW_CHUNK:
                out.write(np.concatenate(pending).tobytes())
                _bump(len(pending), pending_n)
                pending, pending_n = [], 0
        if pending:
            out.write(np.concatenate(pending).tobytes())
            _bump(len(pending), pending_n)
    os.replace(tmp, tok_path)
    return _finish_unit(
        workp,
        unit,
        {
            "documents": docs,
            "tokens": tokens,
            "skipped": {},
            "skip_examples": [],
            "filtered": 0,
            "eos_added": added,
            "segments": [{"path": tok_path.name, "dtype": dtype, "offset": 0, "count": tokens}],
        },
    )


def run_unit(
    unit: Unit,
    tok_spec: dict[str, Any],
    dtype: str,
    opts: ReadOptions,
    on_error: str,
    work: str,
    threads: int = 1,
    lines: bytes | None = None,
    failure: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Process one unit (or chunk: ``lines``/``failure`` from ``iter_chunks``) into ``work`` and
    return its result (also saved as JSON). A streamed unit without ``lines`` is read whole.

    ``threads`` > 1 lets tiktoken encode a batch on several threads (it releases the GIL):
    used when there are fewer units than workers. It never changes the tokens."""
    if unit.fmt == "nanogpt":
        return _nanogpt_unit(unit, tok_spec, dtype, work)
    if unit.fmt == "megatron":
        return _megatron_unit(unit, tok_spec, dtype, work)
    return _tokenize_text_unit(unit, tok_spec, dtype, opts, on_error, work, threads, lines, failure)


def load_done_unit(work: Path, unit: Unit) -> dict[str, Any] | None:
    """A completed unit's result, if its files are intact (else None: redo it)."""
    _, res_path = _unit_paths(work, unit)
    if not res_path.exists():
        return None
    try:
        res = json.loads(res_path.read_text())
        for seg in res["segments"]:
            if "eos" in seg:
                continue
            p = Path(seg["source"]) if "source" in seg else work / seg["path"]
            need = (seg["offset"] + seg["count"]) * np.dtype(seg["dtype"]).itemsize
            if not p.exists() or p.stat().st_size < need:
                return None
        return res
    except (ValueError, KeyError, TypeError, OSError):
        return None
