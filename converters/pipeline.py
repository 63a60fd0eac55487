"""``convert``: corpora -> fixed-length zstd MDS shards plus ``slwdata.json``.

``convert`` runs four named steps: ``_validate_inputs`` (settings, inputs, where things go),
``_reconcile_output`` (lock; reuse, refuse, clear or resume what is there), ``_tokenize_and_write``
and ``_publish``. The per-unit worker is :mod:`converters.units`, shared with the Spark engine.

Design (why it is exact, deterministic and resumable):

1. Inputs are expanded into ordered *work units* (files, parquet row groups, byte ranges of
   big uncompressed JSON-lines files) that depend only on the inputs. A compressed JSON-lines
   file is one *streamed* unit: the writer process decompresses it and cuts it into chunks of
   whole lines (about ``Unit.chunk_bytes``, fixed in the plan), each tokenized as a sub-unit,
   so a few big ``.jsonl.zst`` files still keep every worker busy to the end.
2. A process pool tokenizes units into token files in ``<out>/.slwdata-work/``. Each unit's
   token file and then its small JSON result are written to a temp name and renamed, so a
   unit is either complete or absent after ``kill -9``. Units are submitted a few at a time
   (at most the pool size + 2 running or queued), so the chunks in flight, and so memory, do
   not grow with the corpus.
3. ONE writer consumes the units strictly in order, appends them to a carry buffer and cuts
   rows of ``seq_len`` into a ``streaming.MDSWriter``. Only the corpus' last
   ``< seq_len`` tokens are left over. Shards never depend on ``workers``, the unit cut or
   timing (documents are tokenized one by one).
4. On rerun with the same settings, completed units are reused and the shards are rewritten
   (writing is cheap next to tokenizing). Shards are written into the work folder and moved
   into place at the end; ``slwdata.json`` is written last and marks the output complete.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import errno
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from converters.readers import ReadOptions, SkipLog, Source, Unit, expand_inputs, iter_chunks, plan_units
from converters.remote import Remote, timeout_from_env
from converters.units import ROW_CHUNK, atomic_write_bytes, init_worker, keep_tokenizer, load_done_unit, run_unit
from slwdata.errors import ConvertError, ConvertInterrupted, RemoteError
from slwdata.shards import META_NAME, ShardMeta, diff_config, dtype_for_vocab, meta_from_json, read_meta, write_meta
from slwdata.tokenizers import Tokenizer, load_tokenizer

__all__ = ["convert", "ConvertError", "WORK_DIR_NAME"]

WORK_DIR_NAME = ".slwdata-work"
LOCK_NAME = ".slwdata-lock"  # in a local --out while a conversion writes it
_PLAN = "plan.json"
_MDS_DIR = "mds"


# ---------------------------------------------------------------------------------------------
# helpers


def _is_remote(out: str) -> bool:
    return "://" in out and not out.startswith("file://")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# streaming's codecs and levels (streaming/base/compression.py). Checked here without importing
# streaming, which imports torch: pool workers are forked before that, so they stay small.
_CODEC_LEVELS = {"br": range(12), "bz2": range(1, 10), "gz": range(10), "snappy": range(0), "zstd": range(1, 23)}


def _parse_compression(compression: str | None) -> str | None:
    if compression in (None, "", "none", "None"):
        return None
    codec, _, level = str(compression).partition(":")
    ok = codec in _CODEC_LEVELS and (not level or (level.isdigit() and int(level) in _CODEC_LEVELS[codec]))
    if not ok:
        raise ConvertError(
            f"unknown --compression {compression!r}; e.g. zstd:3 (levels 1-22), gz:6, br:5, bz2:9, snappy, or 'none'"
        )
    return compression


def _check_hashes(hashes: list[str]) -> None:
    import xxhash

    known = set(hashlib.algorithms_available) | set(xxhash.algorithms_available)
    for h in hashes:
        if h not in known:
            raise ConvertError(f"unknown hash {h!r}; e.g. xxh64, xxh3_64, sha1, sha256, md5")


# ---------------------------------------------------------------------------------------------
# writer


def _make_writer() -> type:
    """``streaming.MDSWriter`` with a fast path for our one fixed-shape ndarray column.

    For a single fixed-size column MDS stores a sample as exactly the column's bytes (no size
    header), so ``arr.tobytes()`` is what ``MDSWriter.encode_sample`` would return; skipping its
    generic per-sample encoding keeps the single writer from becoming the bottleneck."""
    from streaming import MDSWriter

    class _TokenMDSWriter(MDSWriter):
        _fast: tuple[np.dtype, tuple[int]] | None = None

        def encode_sample(self, sample: dict[str, Any]) -> bytes:
            if self._fast is None:  # decided once: the per-row checks were half the writer's time
                enc = self.column_encodings[0].split(":")
                ok = (
                    len(self.column_names) == 1
                    and self.column_sizes[0] is not None
                    and len(enc) == 3
                    and enc[0] == "ndarray"
                )
                self._fast = (np.dtype(enc[1]), (int(enc[2]),)) if ok else (np.dtype("V1"), (-1,))
            arr = sample.get("tokens")
            if (
                type(arr) is np.ndarray
                and arr.dtype == self._fast[0]
                and arr.shape == self._fast[1]
                and arr.flags.c_contiguous
            ):
                return arr.tobytes()
            return super().encode_sample(sample)

    return _TokenMDSWriter


class _RowWriter:
    """Stitches unit token streams and cuts rows of ``seq_len`` into an MDSWriter."""

    def __init__(self, writer: Any, seq_len: int, dtype: str, eos_id: int) -> None:
        self.writer, self.seq_len, self.dtype, self.eos_id = writer, seq_len, np.dtype(dtype), eos_id
        self.carry = np.zeros(0, self.dtype)
        self.rows = 0

    def feed(self, arr: np.ndarray) -> None:
        buf = (
            np.concatenate([self.carry, arr.astype(self.dtype, copy=False)])
            if self.carry.size
            else np.ascontiguousarray(arr, dtype=self.dtype)
        )
        L = self.seq_len
        n = len(buf) // L
        write = self.writer.write
        for r in range(n):
            write({"tokens": buf[r * L : (r + 1) * L]})
        self.rows += n
        self.carry = buf[n * L :].copy()

    def feed_segments(self, work: Path, segments: Iterable[dict[str, Any]]) -> None:
        for seg in segments:
            if "eos" in seg:
                self.feed(np.full(int(seg["eos"]), self.eos_id, self.dtype))
                continue
            path = Path(seg["source"]) if "source" in seg else work / seg["path"]
            count, off = int(seg["count"]), int(seg["offset"])
            if count == 0:
                continue
            dt = np.dtype(seg["dtype"])
            data = np.memmap(path, dt, "r", off * dt.itemsize, (count,))
            for a in range(0, count, ROW_CHUNK):
                self.feed(np.asarray(data[a : a + ROW_CHUNK]))
            del data


# ---------------------------------------------------------------------------------------------
# output-state handling


def _our_files(names: Iterable[str]) -> list[str]:
    return [
        n for n in names if n in ("index.json", META_NAME, META_NAME + ".tmp", WORK_DIR_NAME) or n.startswith("shard.")
    ]


def _clear_output(out_dir: Path) -> None:
    """Remove what a previous conversion wrote; refuse when anything else is there."""
    if not out_dir.exists():
        return
    names = [n for n in os.listdir(out_dir) if n != LOCK_NAME]  # held by this run
    ours = set(_our_files(names))
    foreign = sorted(n for n in names if n not in ours)
    if foreign:
        raise ConvertError(
            f"{out_dir} holds files that slwdata did not write ({', '.join(foreign[:5])}); "
            "refusing to delete them with --overwrite: choose an empty output directory"
        )
    for n in ours:
        p = out_dir / n
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def _mismatch(what: str, where: str, old: dict[str, Any], new: dict[str, Any]) -> ConvertError:
    diffs = diff_config(old, new)
    shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    return ConvertError(
        f"{where} already holds {what} made with different settings ({shown}). "
        "Use the same settings, another output, or --overwrite to replace it."
    )


# ---------------------------------------------------------------------------------------------
# faults: the output lock, what a failed run says it kept


def _acquire_lock(path: Path, what: str) -> int:
    """An exclusive ``flock`` on ``path``, held until :func:`_release_lock` or process exit (so
    also after ``kill -9``); a second conversion into the same output is refused, naming the
    live one. The file holds the owner's pid, host and start time."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:
                owner = {}
            os.close(fd)
            raise ConvertError(
                f"{what} is being written by another conversion (pid {owner.get('pid', '?')} on "
                f"{owner.get('host', '?')}, started {owner.get('started', '?')}) — wait for it to finish "
                "or choose another --out; this run changed nothing"
            ) from None
        # The previous holder removes the file when it finishes: lock the file that is there now.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(
        fd,
        json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        ).encode(),
    )
    return fd


def _release_lock(path: Path, fd: int) -> None:
    try:
        path.unlink()  # before closing, so a waiter that opened this file re-opens the new one
    except OSError:
        pass
    os.close(fd)


def _progress_note(state: dict[str, Any]) -> str:
    """How far a failed or interrupted run got, and what a rerun does."""
    work = state.get("work")
    units = state.get("units")
    if work is None or units is None:
        return "nothing was written; rerun when fixed"
    done = len(list(Path(work).glob("unit-[0-9][0-9][0-9][0-9][0-9][0-9].json")))
    chunks = len(list(Path(work).glob("unit-*.*.json")))
    rows = state.get("rows")
    got = (
        f"{done} of {units} tokenized work units"
        + (f" and {chunks} tokenized chunks of compressed JSON-lines files" if chunks else "")
        + f" kept in {work}"
    )
    if state.get("phase") in ("writing shards", "writing the output") and rows is not None:
        got += f", {rows:,} rows written before it stopped"
    return f"{got}; rerun the same command to resume"


def _os_error_message(exc: OSError, state: dict[str, Any]) -> str:
    # A failed write() names no file; the folder being written is the useful part then.
    where = exc.filename or state.get("work") or "?"
    phase = state.get("phase", "preparing")
    if exc.errno == errno.ENOSPC:
        return f"disk full while {phase} ({where}) — free space, then {_progress_note(state)}"
    if exc.errno == errno.EROFS:
        return f"cannot write {where} while {phase}: {exc.strerror} — choose a writable --out (and --work-dir)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied: {where} while {phase} — fix its permissions, or choose another "
            f"--out / --work-dir; {_progress_note(state)}"
        )
    return f"{exc.strerror or exc} ({where}) while {phase} — fix it, then {_progress_note(state)}"


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel queued units and end the workers now (not after their current unit)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle on them
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)


def _check_out(out_dir: Path) -> None:
    """``--out`` must be a directory or not exist yet, and not lie under a file."""
    for p in (out_dir, *out_dir.parents):
        if p.exists() and not p.is_dir():
            what = "is an existing file" if p == out_dir else f"lies under {p}, which is a file"
            raise ConvertError(f"--out {out_dir} {what} — choose a directory")
        if p.exists():
            return


def _check_work_dir(work_dir: Path, inputs: list[str | Path], out_dir: Path | None) -> None:
    """Refuse a ``--work-dir`` that equals or contains the inputs or the output (or lies in an
    input directory, where a rerun would read it as input)."""
    for i in inputs:
        p = Path(i).expanduser().resolve()
        if p.is_relative_to(work_dir) or (p.is_dir() and work_dir.is_relative_to(p)):
            raise ConvertError(
                f"--work-dir {work_dir} overlaps the input {i} — choose a work dir outside the inputs and the output"
            )
    if out_dir is not None and (out_dir.is_relative_to(work_dir) or work_dir == out_dir):
        raise ConvertError(
            f"--work-dir {work_dir} equals or contains --out {out_dir} — choose a work dir "
            "outside the output (the default, <out>/.slwdata-work, is its own folder)"
        )


# ---------------------------------------------------------------------------------------------
# the public entry point


def convert(
    inputs: list[str | Path] | str | Path,
    out: str | Path,
    *,
    seq_len: int = 1024,
    tokenizer: str | Tokenizer = "gpt2",
    workers: int | None = None,
    fmt: str | None = None,
    on_error: str = "skip",
    overwrite: bool = False,
    compression: str | None = "zstd:3",
    text_key: str = "text",
    pile_sets: Iterable[str] | None = None,
    progress: bool = True,
    engine: str = "local",
    hashes: Iterable[str] = ("xxh64",),
    size_limit: int | str = "64mb",
    work_dir: str | Path | None = None,
    log: Any = None,
    allow_empty: bool = False,
    remote_timeout: float | None = None,
) -> dict[str, Any]:
    """Convert corpora to fixed-length MDS shards; return the ``slwdata.json`` contents.

    Example::

        >>> meta = convert(["../shared/data/corpora/pile-mini"], "/tmp/pile-gpt2",
        ...                seq_len=1024, tokenizer="gpt2")          # doctest: +SKIP
        >>> meta["counts"]["tokens"], meta["counts"]["documents"]   # doctest: +SKIP
        (5859234, 690)

    ``out`` may be a local directory or a remote URL (``s3://bucket/prefix``; shards are staged
    in ``work_dir`` and uploaded at the end, each remote call bounded by ``remote_timeout``
    seconds). ``work_dir`` is a folder in which the converter makes (and at the end removes)
    its own scratch folder. Raises :class:`ConvertError` (a ``slwdata.errors.UserError``) for bad
    input, settings or faults (disk full, read-only output, object store errors, an output
    locked by another run, a result of 0 rows unless ``allow_empty``), and
    :class:`ConvertInterrupted` on Ctrl-C; either way the message says what was kept.
    """
    state: dict[str, Any] = {}
    log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
    try:
        return _convert(
            inputs,
            out,
            state=state,
            seq_len=seq_len,
            tokenizer=tokenizer,
            workers=workers,
            fmt=fmt,
            on_error=on_error,
            overwrite=overwrite,
            compression=compression,
            text_key=text_key,
            pile_sets=pile_sets,
            progress=progress,
            engine=engine,
            hashes=hashes,
            size_limit=size_limit,
            work_dir=work_dir,
            log=log,
            allow_empty=allow_empty,
            remote_timeout=remote_timeout,
        )
    except KeyboardInterrupt:
        raise ConvertInterrupted(_progress_note(state)) from None
    except RemoteError as exc:
        state["remote_failed"] = True
        raise ConvertError(f"{exc}; {_progress_note(state)}") from None
    except OSError as exc:
        raise ConvertError(_os_error_message(exc, state)) from None
    finally:
        lease = state.pop("lease", None)
        if lease is not None:
            lease.release(delete=not state.get("remote_failed"))
        lock = state.pop("lock", None)
        if lock is not None:
            _release_lock(*lock)
        created = state.get("created_out")
        if created is not None:
            try:
                created.rmdir()  # only if this run made it and left nothing in it
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# the steps of convert


@dataclass
class _Job:
    """One conversion's checked settings and where it writes (what ``_validate_inputs`` returns)."""

    inputs: list[str | Path]
    out: str
    seq_len: int
    tok: Tokenizer
    dtype: str
    sources: list[Source]
    opts: ReadOptions
    workers: int
    on_error: str
    overwrite: bool
    compression: str | None
    hashes: list[str]
    size_limit: int | str
    engine: str
    allow_empty: bool
    progress: bool
    log: Callable[[str], None]
    remote: Remote | None
    out_dir: Path | None  # None for a remote --out
    work: Path  # the converter's own scratch folder
    user_work: Path | None
    # Set by _reconcile_output: the settings recorded in slwdata.json, and the work plan.
    config: dict[str, Any] = field(default_factory=dict)
    source_info: list[dict[str, Any]] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)


def _convert(
    inputs: list[str | Path] | str | Path, out: str | Path, *, state: dict[str, Any], **settings: Any
) -> dict[str, Any]:
    """``convert`` in its four steps; ``state`` tells the caller what a failure kept."""
    t0 = time.time()
    job = _validate_inputs(inputs, out, **settings)
    finished = _reconcile_output(job, state)
    if finished is not None:
        return finished
    counts = _tokenize_and_write(job, state)
    meta = ShardMeta(
        seq_len=job.seq_len,
        dtype=job.dtype,
        eos_id=job.tok.eos_id,
        tokenizer=job.tok.describe(),
        sources=[{k: s[k] for k in ("name", "size", "sha256")} for s in job.source_info],
        counts=counts,
        config=job.config,
    )
    _publish(job, meta, state)
    _log_summary(job, counts, time.time() - t0)
    return meta.to_dict()


def _validate_inputs(
    inputs: list[str | Path] | str | Path,
    out: str | Path,
    *,
    seq_len: int,
    tokenizer: str | Tokenizer,
    workers: int | None,
    fmt: str | None,
    on_error: str,
    overwrite: bool,
    compression: str | None,
    text_key: str,
    pile_sets: Iterable[str] | None,
    progress: bool,
    engine: str,
    hashes: Iterable[str],
    size_limit: int | str,
    work_dir: str | Path | None,
    log: Callable[[str], None],
    allow_empty: bool,
    remote_timeout: float | None,
) -> _Job:
    """Check every setting and input, load the tokenizer and decide where the output and the
    scratch folder go; raise :class:`ConvertError` naming the first bad one. Writes nothing."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if engine not in ("local", "spark"):
        raise ConvertError(f"unknown --engine {engine!r}; choose 'local' or 'spark'")
    if int(seq_len) < 1:
        raise ConvertError(f"--seq-len must be >= 1, got {seq_len}")
    if on_error not in ("skip", "fail"):
        raise ConvertError(f"--on-error must be 'skip' or 'fail', got {on_error!r}")
    if workers is not None and int(workers) < 1:
        raise ConvertError(f"--workers must be >= 1, got {workers}")
    compression = _parse_compression(compression)
    hashes = [h for h in hashes if h]
    _check_hashes(hashes)

    tok = load_tokenizer(tokenizer)
    sources = expand_inputs(list(inputs), fmt)
    out = str(out)
    remote = Remote(out, timeout_from_env(remote_timeout), log) if _is_remote(out) else None
    # The converter's scratch folder: the default is its own; in a user's --work-dir it makes a
    # subfolder of its own, and only that is ever removed.
    out_key = out if remote is not None else str(Path(out).expanduser().resolve())
    scratch_name = "slwdata-" + hashlib.sha1(out_key.encode()).hexdigest()[:16]
    user_work = Path(work_dir).expanduser().resolve() if work_dir else None
    out_dir: Path | None = None
    if remote is None:
        out_dir = Path(out).expanduser().resolve()
        _check_out(out_dir)
        for s in sources:
            if Path(s.path).is_relative_to(out_dir):
                raise ConvertError(f"input {s.name} lies inside the output directory {out_dir}")
        if user_work is not None:
            _check_work_dir(user_work, list(inputs), out_dir)
        work = user_work / scratch_name if user_work else out_dir / WORK_DIR_NAME
    else:
        if user_work is not None:
            _check_work_dir(user_work, list(inputs), None)
        work = (user_work or Path(tempfile.gettempdir()) / "slwdata-work") / scratch_name
    return _Job(
        inputs=list(inputs),
        out=out,
        seq_len=int(seq_len),
        tok=tok,
        dtype=dtype_for_vocab(tok.vocab_size),
        sources=sources,
        opts=ReadOptions(text_key=text_key, pile_sets=tuple(sorted(pile_sets)) if pile_sets else None),
        workers=int(workers) if workers else (os.cpu_count() or 1),
        on_error=on_error,
        overwrite=overwrite,
        compression=compression,
        hashes=hashes,
        size_limit=size_limit,
        engine=engine,
        allow_empty=allow_empty,
        progress=progress,
        log=log,
        remote=remote,
        out_dir=out_dir,
        work=work,
        user_work=user_work,
    )


def _reconcile_output(job: _Job, state: dict[str, Any]) -> dict[str, Any] | None:
    """Lock the output, then compare it with the request: return the existing metadata when it
    is already complete with these settings; else clear it (``--overwrite``), refuse it, or keep
    the work of an interrupted run with the same settings, and leave the work plan on disk."""
    remote, out_dir, work, overwrite = job.remote, job.out_dir, job.work, job.overwrite
    if out_dir is not None:
        if not out_dir.exists():
            out_dir.mkdir(parents=True)
            state["created_out"] = out_dir
        lock_path = out_dir / LOCK_NAME
    else:
        work.parent.mkdir(parents=True, exist_ok=True)
        lock_path = work.with_name(work.name + ".lock")
    state["lock"] = (lock_path, _acquire_lock(lock_path, job.out))

    job.source_info = [
        {"name": s.name, "format": s.fmt, "size": os.path.getsize(s.path), "sha256": _sha256(s.path)}
        for s in job.sources
    ]
    job.config = config = {
        "seq_len": job.seq_len,
        "dtype": job.dtype,
        "column": "tokens",
        "tokenizer": {**job.tok.describe(), "eos_id": job.tok.eos_id, "fingerprint": job.tok.fingerprint()},
        "compression": job.compression,
        "hashes": job.hashes,
        "size_limit": job.size_limit,
        "text_key": job.opts.text_key,
        "pile_sets": list(job.opts.pile_sets) if job.opts.pile_sets else None,
        "sources": [{k: v for k, v in s.items()} for s in job.source_info],
    }

    # A remote output is checked before any work: missing bucket, 403.
    if remote is None:
        assert out_dir is not None
        try:
            existing = read_meta(out_dir)
        except ValueError as exc:
            raise ConvertError(f"{exc}; fix or remove it, or pass --overwrite") from exc
    else:
        remote.check_bucket()
        # Renewed every ttl/4; the ttl outlasts a renewal that has to retry for remote.timeout.
        state["lease"] = remote.acquire_lease(ttl=max(300.0, 3 * remote.timeout))
        text = remote.read_text(META_NAME)
        try:
            existing = meta_from_json(text) if text is not None else None
        except (ValueError, TypeError) as exc:
            raise ConvertError(
                f"{remote.name(META_NAME)}: unreadable ({exc}) — fix or remove it, or pass --overwrite"
            ) from None
    if existing is not None:
        if overwrite:
            if out_dir is not None:
                _clear_output(out_dir)
        elif existing.config == config:
            job.log(f"slwdata convert: {job.out} is already complete with these settings; nothing to do")
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
            return existing.to_dict()
        else:
            raise _mismatch("a finished conversion", job.out, existing.config, config)
    plan_path = work / _PLAN
    if plan_path.exists():
        try:
            old_plan = json.loads(plan_path.read_text())
        except ValueError:
            old_plan = {}
        if old_plan.get("config") != config:
            if not overwrite:
                raise _mismatch("an interrupted conversion", str(work), old_plan.get("config", {}), config)
            shutil.rmtree(work)
    if (
        remote is not None
        and existing is None
        and not work.exists()
        and not overwrite
        and remote.read_text("index.json") is not None
    ):
        raise ConvertError(
            f"{remote.url} already holds an MDS dataset without {META_NAME} (not a finished slwdata "
            "conversion); choose another prefix or pass --overwrite"
        )
    if out_dir is not None and out_dir.exists() and not work.exists():
        names = [n for n in os.listdir(out_dir) if n != LOCK_NAME]
        if names:
            if not overwrite:
                raise ConvertError(
                    f"output directory {out_dir} is not empty and holds no slwdata "
                    "conversion to resume; choose an empty directory or pass --overwrite"
                )
            _clear_output(out_dir)

    units: list[Unit] | None = None
    if plan_path.exists():  # resume: the units of the interrupted run, whatever the splitting rule now
        try:
            units = [Unit(**d) for d in json.loads(plan_path.read_text())["units"]]
        except (ValueError, KeyError, TypeError):
            units = None
    if units is None:
        units = plan_units(job.sources)
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            plan_path, json.dumps({"config": config, "units": [asdict(u) for u in units]}, indent=1).encode()
        )
    job.units = units
    state.update(work=work, units=len(units), phase="tokenizing")
    for stale in work.glob("*.tmp"):  # half-written files of a killed run
        stale.unlink()
    return None


class _UnitFeed:
    """Hands out the units' results strictly in order: done ones from disk, the rest from the pool
    (or run inline without one). Units are submitted a few at a time, so the chunks held here
    (and queued to the pool) stay a bounded number whatever the corpus size; finished units
    wait on disk."""

    def __init__(
        self,
        job: _Job,
        units: list[Unit],
        done: dict[int, dict[str, Any]],
        pool: cf.ProcessPoolExecutor | None,
        n_proc: int,
        threads: int,
        progress_vals: tuple[Any, Any],
        bar: Any,
    ) -> None:
        self.job, self.units, self.done, self.pool, self.threads = job, units, done, pool, threads
        self.progress_vals, self.bar = progress_vals, bar
        self.base = [sum(r["documents"] for r in done.values()), sum(r["tokens"] for r in done.values())]
        self.max_running, self.max_pending = n_proc + 2, 16 * n_proc + 16
        self.pending: collections.deque[tuple[Unit, Any]] = collections.deque()
        self.source = self._jobs()
        self.exhausted = False

    def refresh(self) -> None:
        """Move the progress bar to the tokens and documents counted so far."""
        n_tok = self.base[1] + self.progress_vals[1].value
        self.bar.update(max(0, n_tok - self.bar.n))
        self.bar.set_postfix_str(f"{self.base[0] + self.progress_vals[0].value:,} docs", refresh=False)

    def _jobs(self) -> Iterator[tuple[Unit, dict[str, Any] | None, bytes | None, tuple[str, str] | None]]:
        """(unit or chunk, its result if already done, chunk lines, chunk stream failure), in order."""
        work = self.job.work
        for u in self.units:
            if u.index in self.done:
                yield u, self.done[u.index], None, None
            elif not u.chunk_bytes:
                yield u, None, None, None
            else:
                for sub, lines, failure in iter_chunks(u):
                    res = load_done_unit(work, sub)
                    if res is not None:
                        self.base[0] += res["documents"]
                        self.base[1] += res["tokens"]
                    yield sub, res, None if res is not None else lines, failure

    def _run_args(self) -> tuple[Any, ...]:
        job = self.job
        return job.tok.spec, job.dtype, job.opts, job.on_error, str(job.work), self.threads

    def top_up(self) -> None:
        """Queue units until the pool has ``max_running`` running or ``max_pending`` are held."""
        while not self.exhausted and len(self.pending) < self.max_pending:
            if self.pool is None:
                if self.pending:
                    return
            elif sum(1 for _, f in self.pending if isinstance(f, cf.Future) and not f.done()) >= self.max_running:
                return
            try:
                u, res, lines, failure = next(self.source)
            except StopIteration:
                self.exhausted = True
                return
            if res is not None:
                self.pending.append((u, res))
            elif self.pool is not None:
                self.pending.append((u, self.pool.submit(run_unit, u, *self._run_args(), lines, failure)))
            else:
                self.pending.append((u, (lines, failure)))

    def next_result(self) -> dict[str, Any] | None:
        """The next unit's result in order (waiting for it), or None after the last."""
        self.top_up()
        if not self.pending:
            return None
        u, item = self.pending.popleft()
        if isinstance(item, cf.Future):
            while not item.done():
                running = [f for _, f in self.pending if isinstance(f, cf.Future) and not f.done()]
                cf.wait([item, *running], timeout=0.5, return_when=cf.FIRST_COMPLETED)
                self.refresh()
                self.top_up()  # keep the other workers fed while this unit finishes
            res = item.result()
        elif isinstance(item, tuple):
            res = run_unit(u, *self._run_args(), *item)
        else:
            res = item
        self.top_up()  # before the writer's own work on this unit
        self.refresh()
        return res


def _tokenize_and_write(job: _Job, state: dict[str, Any]) -> dict[str, Any]:
    """Tokenize the units not done yet (pool or Spark) and cut their tokens, in unit order, into
    rows of ``seq_len`` in MDS shards in the work folder; return the counts for ``slwdata.json``.
    Raises :class:`ConvertError` when no row came out (unless ``allow_empty``)."""
    work, seq_len, dtype, tok = job.work, job.seq_len, job.dtype, job.tok
    units = job.units
    done: dict[int, dict[str, Any]] = {}
    for u in units:
        r = load_done_unit(work, u)
        if r is not None:
            done[u.index] = r
    todo = [u for u in units if u.index not in done]
    done_chunks = sum(1 for u in todo if u.chunk_bytes for _ in work.glob(f"unit-{u.index:06d}.*.json"))
    if done or done_chunks:
        job.log(
            f"slwdata convert: resuming: {len(done)} of {len(units)} work units already tokenized"
            + (f", and {done_chunks} chunks of compressed JSON-lines files" if done_chunks else "")
        )
    if job.engine == "spark" and todo:
        from converters.spark import tokenize_units_spark

        for res in tokenize_units_spark(todo, tok.spec, dtype, job.opts, job.on_error, work):
            done[int(res["unit"])] = res
        todo = [u for u in units if u.index not in done]

    keep_tokenizer(tok)
    # fork is cheap and inherits the loaded tokenizer; only safe while no other thread runs.
    method = "fork" if ("fork" in mp.get_all_start_methods() and threading.active_count() == 1) else "spawn"
    ctx = mp.get_context(method)
    progress_vals = (ctx.Value("q", 0), ctx.Value("q", 0))
    pool: cf.ProcessPoolExecutor | None = None
    # Streamed files are cut at run time; their compressed size (at most the text's) bounds
    # the chunk count from below, enough to decide how many processes are worth starting.
    expected = sum(max(1, -(-os.path.getsize(u.path) // u.chunk_bytes)) if u.chunk_bytes else 1 for u in todo)
    n_proc = max(1, min(job.workers, expected))
    threads = max(1, job.workers // n_proc)
    if n_proc > 1:
        pool = cf.ProcessPoolExecutor(
            max_workers=n_proc, mp_context=ctx, initializer=init_worker, initargs=(progress_vals, os.getpid())
        )
    else:
        init_worker(progress_vals)

    from tqdm import tqdm

    mds_local = work / _MDS_DIR
    if mds_local.exists():
        shutil.rmtree(mds_local)
    skip = SkipLog("skip")
    docs = tokens = 0
    bar = tqdm(
        total=None,
        unit="tok",
        unit_scale=True,
        desc="slwdata convert",
        disable=not job.progress,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    feed = _UnitFeed(job, units, done, pool, n_proc, threads, progress_vals, bar)
    rows: _RowWriter | None = None
    try:
        # Submit (and so fork the pool) before _make_writer imports streaming and torch: forking
        # a process holding torch copies its page tables per worker, and the import overlaps tokenizing.
        feed.top_up()
        # Shards are written locally and uploaded at the end (see converters.remote), so every
        # remote call is bounded in time and named when it fails.
        writer = _make_writer()(
            out=str(mds_local),
            columns={"tokens": f"ndarray:{dtype}:{seq_len}"},
            compression=job.compression,
            hashes=job.hashes,
            size_limit=job.size_limit,
        )
        rows = _RowWriter(writer, seq_len, dtype, tok.eos_id)
        while (res := feed.next_result()) is not None:
            state["phase"] = "writing shards"
            rows.feed_segments(work, res["segments"])
            state.update(rows=rows.rows, phase="tokenizing")
            docs += int(res["documents"])
            tokens += int(res["tokens"])
            skip.merge(res)
        state["phase"] = "writing shards"
        writer.finish()
    except BaseException:
        if pool is not None:
            _stop_pool(pool)
        bar.close()
        raise
    if pool is not None:
        pool.shutdown(wait=True)
    feed.refresh()
    bar.close()

    leftover = int(rows.carry.size)
    assert tokens == rows.rows * seq_len + leftover, "token accounting mismatch"
    counts = {
        "documents": docs,
        "tokens": tokens,
        "rows": rows.rows,
        "leftover_tokens": leftover,
        "skipped": dict(sorted(skip.counts.items())),
        "filtered": skip.filtered,
        "skip_examples": skip.examples,
    }
    skipped = sum(skip.counts.values())
    if rows.rows == 0 and not job.allow_empty:
        shutil.rmtree(work, ignore_errors=True)  # nothing worth resuming; a rerun may change settings
        why = (
            f"every record was rejected ({', '.join(f'{k}={v:,}' for k, v in sorted(skip.counts.items()))})"
            if docs == 0 and skipped
            else f"the corpus has {tokens:,} tokens in {docs:,} documents, fewer than one row of {seq_len}"
        )
        for m in skip.examples:
            job.log(f"  skipped: {m}")
        raise ConvertError(
            f"no rows produced: {why}; {skipped:,} records skipped — check the inputs or lower "
            "--seq-len (or pass --allow-empty to write the empty output); nothing was written"
        )
    return counts


def _publish(job: _Job, meta: ShardMeta, state: dict[str, Any]) -> None:
    """Move (local) or upload (remote) the shards and ``index.json`` into the output, then write
    ``slwdata.json`` last, which marks the output complete; remove the work folder."""
    state["phase"] = "writing the output"
    mds_local = job.work / _MDS_DIR
    index = json.loads((mds_local / "index.json").read_text())
    names = [(shard.get("zip_data") or shard["raw_data"])["basename"] for shard in index["shards"]]
    if job.remote is None:
        out_dir = job.out_dir
        assert out_dir is not None
        out_dir.mkdir(parents=True, exist_ok=True)
        for n in os.listdir(out_dir):  # shards of an interrupted publish step
            if n.startswith("shard.") or n == "index.json":
                (out_dir / n).unlink()
        for name in names:  # shutil.move: the work dir may be on another file system
            shutil.move(mds_local / name, out_dir / name)
        shutil.move(mds_local / "index.json", out_dir / "index.json")
        write_meta(out_dir, meta)
        state.pop("created_out", None)
    else:
        write_meta(mds_local, meta)
        lease = state["lease"]
        for name in [*names, "index.json", META_NAME]:  # slwdata.json last: it marks the output complete
            lease.check()
            job.remote.upload(str(mds_local / name), name)
    shutil.rmtree(job.work, ignore_errors=True)


def _log_summary(job: _Job, counts: dict[str, Any], elapsed: float) -> None:
    """One line of what was converted and skipped, then the first skipped records."""
    skipped_by = counts["skipped"]
    skipped = sum(skipped_by.values())
    rows, tokens, seq_len = counts["rows"], counts["tokens"], job.seq_len
    job.log(
        f"slwdata convert: {counts['documents']:,} documents, {tokens:,} tokens -> {rows:,} rows of {seq_len} "
        f"({counts['leftover_tokens']} tokens left over) in {elapsed:.1f}s"
        + (
            f"; skipped {skipped:,} records: " + ", ".join(f"{k}={v}" for k, v in sorted(skipped_by.items()))
            if skipped
            else ""
        )
        + (f"; {counts['filtered']:,} filtered out by --pile-sets" if counts["filtered"] else "")
    )
    for m in counts["skip_examples"]:
        job.log(f"  skipped: {m}")
    if rows == 0:
        job.log(
            f"slwdata convert: warning: no full row of {seq_len} tokens was produced (the corpus has {tokens} tokens)"
        )
