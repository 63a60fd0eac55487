"""Input formats: detection, expansion into ordered work units, and document iteration.

A *source* is one input file; a *unit* is an ordered slice of the corpus that one process
tokenizes (a file, a parquet row group, a byte range, a chunk of a compressed JSON-lines
stream). Units depend only on the inputs, never on the number of workers, so the token stream
(and the shards) are the same whatever ``--workers`` is.

Text formats yield documents (``str``); pre-tokenized formats (nanoGPT ``.bin``, Megatron
``.bin``/``.idx``) are handled in :mod:`converters.pipeline` without re-tokenizing.
"""

from __future__ import annotations

import codecs
import io
import json
import lzma
import os
import re
import tarfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from slwdata.errors import ConvertError

__all__ = [
    "FORMATS",
    "ConvertError",
    "Source",
    "Unit",
    "detect_format",
    "expand_inputs",
    "plan_units",
    "iter_chunks",
    "unit_size",
    "iter_unit_documents",
    "TextPiece",
    "SkipLog",
    "open_decompressed",
    "TruncatedInput",
    "read_megatron_index",
    "MEGATRON_DTYPES",
]

# Format names accepted by --format (aliases map onto the handler names).
FORMATS = {
    "jsonl": "jsonl",
    "pile": "jsonl",
    "json": "jsonl",
    "txt": "txt",
    "text": "txt",
    "parquet": "parquet",
    "tar": "tar",
    "owt": "tar",
    "openwebtext": "tar",
    "nanogpt": "nanogpt",
    "megatron": "megatron",
}
PRETOKENIZED = {"nanogpt", "megatron"}

# Megatron indexed-dataset dtype codes (megatron/core/datasets/indexed_dataset.py).
MEGATRON_DTYPES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
MEGATRON_MAGIC = b"MMIDIDX\x00\x00"


class TruncatedInput(Exception):
    """A compressed stream ended before its end marker (truncated or corrupt download)."""


# ---------------------------------------------------------------------------------------------
# Decompression with truncation detection. zstandard's stream_reader silently stops at a
# truncated frame, so every codec goes through a decompressobj whose ``eof`` we check.

_CHUNK = 1 << 20


def _codec_for(name: str) -> str | None:
    n = name.lower()
    if n.endswith((".zst", ".zstd")):
        return "zst"
    if n.endswith((".xz", ".txz", ".lzma")) or n.startswith("urlsf_subset"):
        return "xz"
    if n.endswith((".gz", ".tgz")):
        return "gz"
    return None


def _decompress_chunks(fh: Any, codec: str) -> Iterator[bytes]:
    def new() -> Any:
        if codec == "zst":
            import zstandard

            return zstandard.ZstdDecompressor().decompressobj()
        if codec == "xz":
            return lzma.LZMADecompressor()
        return zlib.decompressobj(wbits=47)  # gzip or zlib header

    d = new()
    started = False
    while True:
        chunk = fh.read(_CHUNK)
        if not chunk:
            break
        while chunk:
            if d.eof:  # concatenated frames / streams
                d = new()
            started = True
            out = d.decompress(chunk)
            if out:
                yield out
            chunk = d.unused_data if d.eof else b""
            if d.eof and not chunk:
                break
    if started and not d.eof:
        raise TruncatedInput("compressed stream ended before its end marker (truncated file?)")


class _ChunkStream(io.RawIOBase):
    """A read-only raw stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def open_decompressed(path: str | Path, codec: str | None = "auto") -> io.BufferedReader:
    """Open a possibly compressed file as a buffered binary stream (by suffix: .zst .xz .gz).

    Reading past a truncated stream raises :class:`TruncatedInput`.
    """
    if codec == "auto":
        codec = _codec_for(Path(path).name)
    if codec is None:
        return open(path, "rb", buffering=_CHUNK)  # type: ignore[return-value]
    fh = open(path, "rb")
    return io.BufferedReader(_ChunkStream(_decompress_chunks(fh, codec)), _CHUNK)


def _bytes_stream(data: bytes, codec: str | None) -> io.BufferedReader:
    if codec is None:
        return io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    return io.BufferedReader(_ChunkStream(_decompress_chunks(io.BytesIO(data), codec)), _CHUNK)


# ---------------------------------------------------------------------------------------------
# Sources and units


@dataclass(frozen=True)
class Source:
    path: str  # absolute path
    name: str  # stable display name recorded in slwdata.json
    fmt: str


@dataclass(frozen=True)
class Unit:
    index: int
    source: int  # index into the source list
    path: str
    name: str
    fmt: str
    part: int | None = None  # parquet row group; None = whole file
    start: int | None = None  # byte range of a big uncompressed JSON-lines file
    end: int | None = None
    # Compressed JSON-lines: the writer process decompresses the file and cuts it into chunks of
    # about this many bytes (whole lines), each tokenized as its own sub-unit (``chunk``, with
    # ``line0`` lines before it). A compressed stream cannot be entered mid-way, so this is how
    # one big .jsonl.zst still uses every worker.
    chunk_bytes: int | None = None
    chunk: int | None = None
    line0: int = 0

    @property
    def label(self) -> str:
        if self.chunk is not None:
            return f"{self.name}[chunk {self.chunk} from line {self.line0 + 1}]"
        if self.start is not None:
            return f"{self.name}[from byte {self.start}]"
        return self.name if self.part is None else f"{self.name}[row group {self.part}]"


def detect_format(path: str | Path) -> str | None:
    """Format handler name from a file name, or None when unknown."""
    p = Path(path)
    n = p.name.lower()
    for comp in (".zst", ".zstd", ".xz", ".gz"):
        if n.endswith(comp):
            base = n[: -len(comp)]
            break
    else:
        base, comp = n, ""
    if base.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if base.endswith(".txt"):
        return "txt"
    if n.endswith(".parquet"):
        return "parquet"
    if n.startswith("urlsf_subset") or n.endswith((".tar", ".tar.xz", ".tar.gz", ".tgz", ".txz", ".tar.zst")):
        return "tar"
    if n.endswith(".idx"):
        return "megatron"
    if n.endswith(".bin"):
        return "megatron" if p.with_suffix(".idx").exists() else "nanogpt"
    return None


def expand_inputs(inputs: list[str | Path], fmt: str | None = None) -> list[Source]:
    """Expand files and directories (sorted, recursive) into sources with a format each.

    Raises :class:`ConvertError` for a missing path or a file whose format is unknown.
    """
    if not inputs:
        raise ConvertError("no input given")
    forced = None
    if fmt:
        forced = FORMATS.get(fmt.lower())
        if forced is None:
            raise ConvertError(f"unknown --format {fmt!r}; choose from {', '.join(sorted(FORMATS))}")
    sources: list[Source] = []
    seen: set[str] = set()
    for raw in inputs:
        p = Path(raw).expanduser()
        if not p.exists():
            raise ConvertError(f"input not found: {raw}")
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            pairs = [(f, f"{p.name}/{f.relative_to(p).as_posix()}") for f in files]
            if not pairs:
                raise ConvertError(f"input directory is empty: {raw}")
        else:
            pairs = [(p, p.name)]
        for f, name in pairs:
            kind = forced or detect_format(f)
            if kind is None:
                raise ConvertError(
                    f"{f}: unknown input format; expected .jsonl[.zst|.xz|.gz], .txt, .parquet, "
                    "a tar archive (urlsf_subset*.xz, *.tar.xz), nanoGPT .bin or Megatron .bin/.idx; "
                    "use --format to say which"
                )
            if kind == "megatron":
                f = f.with_suffix(".bin")
                name = name[: -len(".idx")] + ".bin" if name.endswith(".idx") else name
                if not f.with_suffix(".idx").exists():
                    raise ConvertError(f"{f}: Megatron data needs its index {f.with_suffix('.idx').name}")
            key = str(f.resolve())
            if key in seen:  # a .bin and its .idx, or the same file given twice
                continue
            seen.add(key)
            sources.append(Source(key, name, kind))
    return sources


# JSON-lines inputs are cut into units of about ``unit_bytes`` so that a few big files still keep
# every worker busy up to the end: byte ranges of uncompressed files, streamed chunks of
# compressed ones. The size is 1/64 of the whole input, within [MIN_UNIT_BYTES, UNIT_BYTES]
# (small units cost a little per-unit work; large ones leave cores idle at the end and hold
# more memory per worker). The cut never changes the token stream (documents are tokenized
# one by one), and resume reads the units back from the plan.
UNIT_BYTES = 16 << 20
MIN_UNIT_BYTES = 1 << 20


def unit_size(sources: list[Source]) -> int:
    """Bytes per JSON-lines work unit for these inputs (see ``UNIT_BYTES``)."""
    total = sum(os.path.getsize(s.path) for s in sources)
    return min(UNIT_BYTES, max(MIN_UNIT_BYTES, total // 64))


def plan_units(sources: list[Source], unit_bytes: int | None = None) -> list[Unit]:
    """Ordered work units: one per file, one per parquet row group, byte ranges of uncompressed
    JSON-lines files larger than ``unit_bytes`` (a record belongs to the range holding its
    first byte), and one streamed unit (cut into chunks at run time) per compressed JSON-lines
    file."""
    unit_bytes = unit_bytes or unit_size(sources)
    units: list[Unit] = []
    for si, s in enumerate(sources):
        size = os.path.getsize(s.path)
        if s.fmt == "jsonl" and _codec_for(Path(s.path).name) is None:
            if size > unit_bytes:
                for a in range(0, size, unit_bytes):
                    units.append(Unit(len(units), si, s.path, s.name, s.fmt, None, a, min(a + unit_bytes, size)))
            else:
                units.append(Unit(len(units), si, s.path, s.name, s.fmt))
        elif s.fmt == "jsonl":
            units.append(Unit(len(units), si, s.path, s.name, s.fmt, chunk_bytes=unit_bytes))
        elif s.fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                n = pq.ParquetFile(s.path).num_row_groups
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
                raise ConvertError(f"{s.name}: not a readable parquet file: {exc}") from exc
            for rg in range(n):
                units.append(Unit(len(units), si, s.path, s.name, s.fmt, rg))
        else:
            units.append(Unit(len(units), si, s.path, s.name, s.fmt))
    return units


def iter_chunks(unit: Unit) -> Iterator[tuple[Unit, bytes, tuple[str, str] | None]]:
    """Cut a streamed unit (compressed JSON-lines) into its chunks, in order: ``(sub-unit,
    lines, failure)``. A chunk is whole lines, ending with the first line that brings it to
    ``unit.chunk_bytes`` bytes, so the cut depends only on the file. When the stream breaks
    (truncated or corrupt), the last chunk holds the lines read before it and ``failure`` is
    the (reason, detail) that reading the whole file would have reported after them."""
    assert unit.chunk_bytes, unit
    k = line0 = size = 0
    lines: list[bytes] = []
    failure = None
    with open_decompressed(unit.path) as stream:
        try:
            for line in stream:
                lines.append(line)
                size += len(line)
                if size >= unit.chunk_bytes:
                    yield replace(unit, chunk=k, line0=line0), b"".join(lines), None
                    k, line0, lines, size = k + 1, line0 + len(lines), [], 0
        except Exception as exc:  # noqa: BLE001 - classified exactly as the one-unit reader does
            failure = _stream_failure(exc)
            if failure is None:
                raise
    if lines or failure or k == 0:
        yield replace(unit, chunk=k, line0=line0), b"".join(lines), failure


# ---------------------------------------------------------------------------------------------
# Skips


class SkipLog:
    """Counts skipped records by reason and keeps the first few messages.

    With ``on_error="fail"`` the first problem raises :class:`ConvertError` instead.
    """

    KEEP = 5

    def __init__(self, on_error: str = "skip") -> None:
        if on_error not in ("skip", "fail"):
            raise ConvertError(f"--on-error must be 'skip' or 'fail', got {on_error!r}")
        self.on_error = on_error
        self.counts: dict[str, int] = {}
        self.examples: list[str] = []
        self.filtered = 0

    def __call__(self, reason: str, where: str, detail: str = "") -> None:
        msg = f"{where}: {reason.replace('_', ' ')}" + (f" ({detail})" if detail else "")
        if self.on_error == "fail":
            raise ConvertError(msg + " [--on-error fail]")
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.examples) < self.KEEP:
            self.examples.append(msg)

    def merge(self, other: dict[str, Any]) -> None:
        for k, v in other.get("skipped", {}).items():
            self.counts[k] = self.counts.get(k, 0) + int(v)
        for m in other.get("skip_examples", []):
            if len(self.examples) < self.KEEP:
                self.examples.append(m)
        self.filtered += int(other.get("filtered", 0))


# ---------------------------------------------------------------------------------------------
# Document iteration


@dataclass(frozen=True)
class ReadOptions:
    text_key: str = "text"
    pile_sets: tuple[str, ...] | None = None


def _short(exc: BaseException) -> str:
    s = str(exc)
    return s if len(s) <= 120 else s[:117] + "..."


def _stream_failure(exc: BaseException) -> tuple[str, str] | None:
    """(skip reason, detail) for an exception that breaks a compressed or read stream, else None."""
    if isinstance(exc, TruncatedInput):
        return "truncated_input", f"{exc}; the rest of the file is lost"
    if isinstance(exc, (lzma.LZMAError, zlib.error, OSError, EOFError)):
        return "corrupt_input", f"{type(exc).__name__}: {_short(exc)}; the rest of the file is lost"
    if type(exc).__name__ == "ZstdError":  # zstandard.ZstdError has no stable import path across versions
        return "corrupt_input", f"{_short(exc)}; the rest of the file is lost"
    return None


def _iter_jsonl(
    stream: Iterable[bytes],
    where: str,
    opts: ReadOptions,
    skip: SkipLog,
    line_base: Callable[[], int] | None = None,
    failure: tuple[str, str] | None = None,
) -> Iterator[str]:
    """Records of a JSON-lines stream. ``line_base`` gives the number of lines before the stream
    (byte-range units and chunks); it is only called when a problem must be reported with its
    line. ``failure`` is a stream break found by whoever read the lines (a chunk's reader),
    reported after the last line as if this stream had raised it."""
    lineno = 0
    base: list[int] = []

    def at(n: int) -> str:
        if line_base is not None and not base:
            base.append(line_base())
        return f"{where}:{(base[0] if base else 0) + n}"

    try:
        for raw in stream:
            lineno += 1
            if not raw.strip():
                continue  # blank lines are separators, not records
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                skip("invalid_utf8", at(lineno), _short(exc))
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                skip("invalid_json", at(lineno), _short(exc))
                continue
            if not isinstance(rec, dict):
                skip("missing_text", at(lineno), f"record is a {type(rec).__name__}, not an object")
                continue
            if opts.pile_sets is not None:
                meta = rec.get("meta")
                set_name = meta.get("pile_set_name") if isinstance(meta, dict) else None
                if set_name not in opts.pile_sets:
                    skip.filtered += 1
                    continue
            text = rec.get(opts.text_key)
            if not isinstance(text, str):
                skip(
                    "missing_text",
                    at(lineno),
                    f"{opts.text_key!r} is " + ("missing" if opts.text_key not in rec else f"a {type(text).__name__}"),
                )
                continue
            if not text:
                skip("empty_document", at(lineno))
                continue
            yield text
    except Exception as exc:  # noqa: BLE001 - only stream breaks are caught, the rest re-raised
        failure = _stream_failure(exc)
        if failure is None:
            raise
    if failure is not None:
        skip(failure[0], at(lineno + 1), failure[1])


def _decode_txt(data: bytes, loc: str, skip: SkipLog) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        skip("invalid_utf8", loc, _short(exc))
        return None
    if not text:
        skip("empty_document", loc)
        return None
    return text


def _unsafe_member(m: tarfile.TarInfo) -> str | None:
    name = m.name
    if m.issym() or m.islnk():
        return f"link to {m.linkname!r}"
    if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
        return "device or fifo"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "path with '..'"
    return None


def _iter_tar(stream: Any, where: str, skip: SkipLog, depth: int = 0) -> Iterator[str]:
    """Documents from a tar stream: ``.txt`` members, and nested compressed tars (OpenWebText's
    outer ``openwebtext.tar.xz`` holds ``urlsf_subset*.xz`` tars). Members are read in memory via
    ``extractfile``; nothing is extracted to disk."""
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for m in tar:
                loc = f"{where}!{m.name}"
                bad = _unsafe_member(m)
                if bad:
                    skip("unsafe_archive_member", loc, bad)
                    continue
                if m.isdir():
                    continue
                if not m.isreg():
                    skip("unsafe_archive_member", loc, "not a regular file")
                    continue
                f = tar.extractfile(m)
                data = f.read() if f is not None else b""
                base = Path(m.name).name
                if depth == 0 and detect_format(base) == "tar":
                    yield from _iter_tar(_bytes_stream(data, _codec_for(base)), loc, skip, depth + 1)
                elif base.lower().endswith(".txt"):
                    text = _decode_txt(data, loc, skip)
                    if text is not None:
                        yield text
                else:
                    skip("unsupported_archive_member", loc, "only .txt documents and nested tar archives are read")
    except TruncatedInput as exc:
        skip("truncated_input", where, f"{exc}; the rest of the archive is lost")
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError, OSError) as exc:
        skip("corrupt_input", where, f"{type(exc).__name__}: {_short(exc)}; the rest of the archive is lost")


def _iter_parquet(unit: Unit, opts: ReadOptions, skip: SkipLog) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(unit.path)
    if opts.text_key not in pf.schema_arrow.names:
        raise ConvertError(
            f"{unit.name}: parquet file has no column {opts.text_key!r} "
            f"(columns: {', '.join(pf.schema_arrow.names)}); use --text-key"
        )
    md = pf.metadata
    row0 = sum(md.row_group(i).num_rows for i in range(unit.part or 0))
    row = row0
    for batch in pf.iter_batches(batch_size=1024, row_groups=[unit.part or 0], columns=[opts.text_key]):
        col = batch.column(0)
        for value in col.to_pylist():
            row += 1
            loc = f"{unit.name}:row {row}"
            if not isinstance(value, str):
                skip("missing_text", loc, f"{opts.text_key!r} is {'null' if value is None else type(value).__name__}")
            elif not value:
                skip("empty_document", loc)
            else:
                yield value


def _range_lines(f: Any, start: int, end: int) -> Iterator[bytes]:
    """Lines whose first byte lies in ``[start, end)``."""
    pos = start
    if start > 0:
        f.seek(start - 1)
        if f.read(1) != b"\n":  # mid-line: that record belongs to the previous range
            pos += len(f.readline())
    while pos < end:
        line = f.readline()
        if not line:
            break
        pos += len(line)
        yield line


TXT_PIECE_BYTES = 8 << 20  # a .txt document larger than this is read and yielded in pieces

# "x y" with ASCII letters around one space: the pre-tokenizers of the tiktoken encodings (GPT-2,
# cl100k, o200k) end a match before that space and start the next one at it, from the text after
# it alone, so encoding the two sides apart gives the tokens of encoding them together.
_SAFE_CUT = re.compile(r"[A-Za-z](?= [A-Za-z])")


class TextPiece(str):
    """Part of a document read in pieces (see ``split_txt``); ``doc_end`` marks its last one."""

    doc_end: bool = True


def _piece(text: str, doc_end: bool) -> TextPiece:
    piece = TextPiece(text)
    piece.doc_end = doc_end
    return piece


def _safe_cut(text: str) -> int:
    """The last position where ``text`` may be split without changing its tokens (0: none)."""
    window = max(0, len(text) - (1 << 16))
    while True:
        last = None
        for last in _SAFE_CUT.finditer(text, window):
            pass
        if last is not None:
            return last.end()
        if window == 0:
            return 0
        window = max(0, window - (1 << 20))


def _iter_txt(unit: Unit, skip: SkipLog, split: bool) -> Iterator[str]:
    """A ``.txt`` file as one document. With ``split`` a document larger than
    ``TXT_PIECE_BYTES`` is yielded as :class:`TextPiece` s cut at safe points, so memory stays
    bounded: a first pass checks it (UTF-8, truncation) without keeping it, a second yields.
    A smaller one is read once, whole."""
    piece_bytes = TXT_PIECE_BYTES
    try:
        with open_decompressed(unit.path) as stream:
            # BufferedReader.read(n) returns n bytes unless the stream ends first.
            data = stream.read(piece_bytes + 1) if split else stream.read()
            big = split and len(data) > piece_bytes
            if big:
                decoder = codecs.getincrementaldecoder("utf-8")()
                decoder.decode(data)
                del data
                while block := stream.read(piece_bytes):
                    decoder.decode(block)
                decoder.decode(b"", final=True)
    except TruncatedInput as exc:
        skip("truncated_input", unit.name, str(exc))
        return
    except UnicodeDecodeError as exc:
        skip("invalid_utf8", unit.name, _short(exc))
        return
    if not big:
        text = _decode_txt(data, unit.name, skip)
        if text is not None:
            yield text
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    carry = ""
    with open_decompressed(unit.path) as stream:
        while block := stream.read(piece_bytes):
            text = carry + decoder.decode(block)
            cut = _safe_cut(text)
            if cut:
                yield _piece(text[:cut], False)
                carry = text[cut:]
            else:
                carry = text  # no safe point yet: keep reading (a space-free text grows)
    yield _piece(carry + decoder.decode(b"", final=True), True)


def iter_unit_documents(
    unit: Unit,
    opts: ReadOptions,
    skip: SkipLog,
    lines: bytes | None = None,
    failure: tuple[str, str] | None = None,
    split_txt: bool = False,
) -> Iterator[str]:
    """Documents of one unit, in order; problems go to ``skip`` (file and line named).

    ``lines``/``failure``: a chunk's content and stream break, from :func:`iter_chunks`.
    ``split_txt``: a big ``.txt`` document comes as :class:`TextPiece` s (only for tokenizers
    whose pre-tokenizer makes the cut invisible: tiktoken encodings, bytes)."""
    if lines is not None:
        line0 = unit.line0
        # BytesIO splits on b"\n" only, exactly like the file reader (bytes.splitlines would not).
        yield from _iter_jsonl(io.BytesIO(lines), unit.name, opts, skip, line_base=lambda: line0, failure=failure)
    elif unit.fmt == "jsonl" and unit.start is not None:
        path, start = unit.path, unit.start

        def lines_before() -> int:  # only paid when a problem in this range is reported
            n = 0
            with open(path, "rb") as g:
                left = start
                while left > 0:
                    block = g.read(min(_CHUNK * 8, left))
                    if not block:
                        break
                    n += block.count(b"\n")
                    left -= len(block)
                if start > 0:
                    g.seek(start - 1)
                    if g.read(1) != b"\n":
                        n += 1  # the straddling line belongs to the previous range
            return n

        with open(unit.path, "rb", buffering=_CHUNK) as f:
            yield from _iter_jsonl(
                _range_lines(f, unit.start, unit.end or 0), unit.name, opts, skip, line_base=lines_before
            )
    elif unit.fmt == "jsonl":
        with open_decompressed(unit.path) as stream:
            yield from _iter_jsonl(stream, unit.name, opts, skip)
    elif unit.fmt == "txt":
        yield from _iter_txt(unit, skip, split_txt)
    elif unit.fmt == "tar":
        codec = _codec_for(Path(unit.path).name)
        with open_decompressed(unit.path, codec) as stream:
            yield from _iter_tar(stream, unit.name, skip)
    elif unit.fmt == "parquet":
        yield from _iter_parquet(unit, opts, skip)
    else:
        raise ConvertError(f"{unit.name}: format {unit.fmt!r} has no text reader")


# ---------------------------------------------------------------------------------------------
# Megatron index


def read_megatron_index(idx_path: str | Path) -> dict[str, Any]:
    """Parse a Megatron ``.idx``: ``MMIDIDX\\0\\0``, version u64, dtype code u8, n_sequences u64,
    n_docs u64, int32 sizes, int64 pointers (byte offsets into .bin), int64 doc_idx."""
    idx_path = Path(idx_path)
    with open(idx_path, "rb") as f:
        magic = f.read(9)
        if magic != MEGATRON_MAGIC:
            raise ConvertError(f"{idx_path}: not a Megatron index (bad magic {magic!r})")
        header = f.read(8 + 1 + 8 + 8)
        if len(header) < 25:
            raise ConvertError(f"{idx_path}: truncated Megatron index header")
        version = int(np.frombuffer(header[:8], "<u8")[0])
        code = header[8]
        n_seq = int(np.frombuffer(header[9:17], "<u8")[0])
        n_doc = int(np.frombuffer(header[17:25], "<u8")[0])
    if version != 1:
        raise ConvertError(f"{idx_path}: unsupported Megatron index version {version}")
    if code not in MEGATRON_DTYPES:
        raise ConvertError(f"{idx_path}: unknown Megatron dtype code {code}")
    offset = 9 + 25
    need = offset + n_seq * 4 + n_seq * 8 + n_doc * 8
    if os.path.getsize(idx_path) < need:
        raise ConvertError(f"{idx_path}: truncated Megatron index ({os.path.getsize(idx_path)} < {need} bytes)")
    sizes = np.memmap(idx_path, "<i4", "r", offset, (n_seq,)) if n_seq else np.zeros(0, "<i4")
    offset += n_seq * 4
    pointers = np.memmap(idx_path, "<i8", "r", offset, (n_seq,)) if n_seq else np.zeros(0, "<i8")
    offset += n_seq * 8
    doc_idx = np.memmap(idx_path, "<i8", "r", offset, (n_doc,)) if n_doc else np.zeros(0, "<i8")
    return {
        "dtype": np.dtype(MEGATRON_DTYPES[code]),
        "sizes": sizes,
        "pointers": pointers,
        "doc_idx": doc_idx,
        "n_sequences": n_seq,
    }


Reporter = Callable[[str, str, str], None]
