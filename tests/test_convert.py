"""slwdata convert: exact token stream, formats, determinism, metadata, bad input, safety."""

from __future__ import annotations

import io
import json
import lzma
import tarfile
from pathlib import Path

import numpy as np
import pytest
import zstandard

from converters import ConvertError, convert
from converters.inspect import read_rows
from slwdata.shards import read_meta

from helpers_convert import all_bytes

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PILE = SHARED / "data" / "corpora" / "pile-mini"
OWT = SHARED / "data" / "corpora" / "openwebtext-mini" / "openwebtext"

KW = dict(tokenizer="bytes", progress=False, log=lambda m: None)


def stream_of(docs: list[str]) -> np.ndarray:
    """Reference token stream for the bytes tokenizer: each doc's UTF-8 bytes, then EOS 256."""
    out: list[int] = []
    for d in docs:
        out.extend(d.encode("utf-8"))
        out.append(256)
    return np.array(out, np.int64)


def check_rows(out: Path, docs: list[str], seq_len: int) -> dict:
    ref = stream_of(docs)
    rows = read_rows(out)
    n = len(ref) // seq_len
    assert rows.shape == (n, seq_len)
    assert np.array_equal(rows.reshape(-1).astype(np.int64), ref[: n * seq_len])
    meta = read_meta(out)
    assert meta.counts["tokens"] == len(ref)
    assert meta.counts["rows"] == n
    assert meta.counts["leftover_tokens"] == len(ref) - n * seq_len < seq_len
    assert meta.counts["documents"] == len(docs)
    return meta.counts


def write_zst(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(line + b"\n" for line in lines)))


def jl(text, **extra) -> bytes:
    return json.dumps({"text": text, **extra}).encode()


def make_docs(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "délta", "ε", "<|endoftext|>", "zeta\n", "日本"]
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 60)))) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# the real corpus


@pytest.fixture(scope="module")
def pile_gpt2(tmp_path_factory):
    out = tmp_path_factory.mktemp("pile") / "gpt2"
    meta = convert([PILE], str(out), seq_len=1024, tokenizer="gpt2", workers=2, progress=False, log=lambda m: None)
    return out, meta


def test_pile_mini_exact_gpt2_counts(pile_gpt2):
    out, meta = pile_gpt2
    c = meta["counts"]
    assert c["documents"] == 690
    assert c["tokens"] == 5_859_234
    assert c["rows"] == 5_859_234 // 1024 and c["leftover_tokens"] == 5_859_234 % 1024
    assert meta["dtype"] == "uint16" and meta["eos_id"] == 50256 and meta["seq_len"] == 1024
    assert [s["name"] for s in meta["sources"]] == ["pile-mini/00.jsonl.zst", "pile-mini/01.jsonl.zst"]
    assert all(len(s["sha256"]) == 64 and s["size"] > 0 for s in meta["sources"])
    assert json.loads((out / "slwdata.json").read_text()) == meta
    assert not (out / ".slwdata-work").exists()
    rows = read_rows(out)
    flat = rows.reshape(-1)
    assert 600 < int((flat == 50256).sum()) <= 690  # "<|endoftext|>" inside documents stays text
    # first document of the first file, tokenized independently, starts row 0
    from converters.readers import open_decompressed

    with open_decompressed(PILE / "00.jsonl.zst") as f:
        first = json.loads(f.readline())
    from slwdata.tokenizers import load_tokenizer

    ids = load_tokenizer("gpt2").encode(first["text"])
    k = min(len(ids), 1024)
    assert rows[0, :k].tolist() == ids[:k]


def test_shards_load_in_plain_streaming_dataset(pile_gpt2, tmp_path):
    from streaming import StreamingDataset

    out, meta = pile_gpt2
    ds = StreamingDataset(local=str(out), shuffle=False, batch_size=1)
    assert len(ds) == meta["counts"]["rows"]
    rows = read_rows(out)
    for i in (0, 1, len(ds) - 1):
        t = ds[i]["tokens"]
        assert t.dtype == np.uint16 and t.shape == (1024,)
        assert np.array_equal(t, rows[i])


def test_pile_sets_filter(tmp_path):
    lines = [
        jl("cc one", meta={"pile_set_name": "Pile-CC"}),
        jl("gh", meta={"pile_set_name": "Github"}),
        jl("cc two", meta={"pile_set_name": "Pile-CC"}),
    ]
    write_zst(tmp_path / "00.jsonl.zst", lines)
    meta = convert([tmp_path / "00.jsonl.zst"], str(tmp_path / "o"), seq_len=4, pile_sets=["Pile-CC"], **KW)
    check_rows(tmp_path / "o", ["cc one", "cc two"], 4)
    assert meta["counts"]["filtered"] == 1


# --------------------------------------------------------------------------------------------
# exactness and determinism


def synthetic_corpus(root: Path, n_files: int = 5, docs_per_file: int = 40) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    docs_all: list[str] = []
    for f in range(n_files):
        docs = make_docs(docs_per_file, seed=f)
        if f % 2:
            write_zst(root / f"{f:02d}.jsonl.zst", [jl(d) for d in docs])
        else:
            (root / f"{f:02d}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        docs_all += docs
    return docs_all


def test_token_stream_is_documents_in_order_plus_eos(tmp_path):
    docs = synthetic_corpus(tmp_path / "in")
    check_rows_out = tmp_path / "o"
    convert([tmp_path / "in"], str(check_rows_out), seq_len=37, workers=2, **KW)
    check_rows(check_rows_out, docs, 37)


def test_bytes_identical_whatever_workers_and_on_rerun(tmp_path):
    synthetic_corpus(tmp_path / "in", n_files=6)
    outs = []
    for i, w in enumerate([1, 2, 3, 2]):
        out = tmp_path / f"o{i}"
        convert([tmp_path / "in"], str(out), seq_len=64, workers=w, size_limit=4096, **KW)
        outs.append(all_bytes(out))
    assert len(outs[0]) > 3  # several shards, index.json, slwdata.json
    for o in outs[1:]:
        assert o == outs[0]


def test_documents_far_longer_than_seq_len_span_rows(tmp_path):
    docs = ["x" * 10_000, "short", "y" * 777]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    convert([tmp_path / "a.jsonl"], str(tmp_path / "o"), seq_len=16, **KW)
    counts = check_rows(tmp_path / "o", docs, 16)
    assert counts["rows"] > 600


# --------------------------------------------------------------------------------------------
# formats


def test_txt_files_and_text_key(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "b.txt").write_text("second doc")
    (tmp_path / "t" / "a.txt").write_text("first doc")
    convert([tmp_path / "t"], str(tmp_path / "o1"), seq_len=5, **KW)
    check_rows(tmp_path / "o1", ["first doc", "second doc"], 5)
    (tmp_path / "c.jsonl").write_text(json.dumps({"body": "custom key"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    meta = convert([tmp_path / "c.jsonl"], str(tmp_path / "o2"), seq_len=3, text_key="body", **KW)
    check_rows(tmp_path / "o2", ["custom key"], 3)
    assert meta["counts"]["skipped"] == {"missing_text": 1}


def test_parquet_by_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = make_docs(50, seed=3)
    table = pa.table({"text": docs + [None, ""], "id": list(range(52))})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=7)
    meta = convert([tmp_path / "d.parquet"], str(tmp_path / "o"), seq_len=32, workers=2, **KW)
    check_rows(tmp_path / "o", docs, 32)
    assert meta["counts"]["skipped"] == {"empty_document": 1, "missing_text": 1}


def owt_docs() -> list[str]:
    docs = []
    for f in sorted(OWT.iterdir()):
        with tarfile.open(f, "r:xz") as t:
            for m in t:
                if m.isfile() and m.name.endswith(".txt"):
                    docs.append(t.extractfile(m).read().decode())
    return docs


def test_openwebtext_dir_and_outer_tar_xz(tmp_path):
    docs = owt_docs()
    assert len(docs) == 480
    convert([OWT], str(tmp_path / "dir"), seq_len=1024, workers=2, **KW)
    check_rows(tmp_path / "dir", docs, 1024)
    # The original download: openwebtext.tar.xz holding openwebtext/urlsf_subset*.xz.
    outer = tmp_path / "openwebtext.tar.xz"
    with tarfile.open(outer, "w:xz") as t:
        for f in sorted(OWT.iterdir()):
            t.add(f, arcname=f"openwebtext/{f.name}")
    meta = convert([outer], str(tmp_path / "outer"), seq_len=1024, **KW)
    check_rows(tmp_path / "outer", docs, 1024)
    assert meta["counts"]["skipped"] == {}


def test_nanogpt_bin_rechunked_without_retokenizing(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 50256, size=int(rng.integers(1, 300))) for _ in range(30)]
    stream = np.concatenate([np.append(d, 50256) for d in docs]).astype(np.uint16)
    stream.tofile(tmp_path / "train.bin")
    meta = convert(
        [tmp_path / "train.bin"], str(tmp_path / "o"), seq_len=100, tokenizer="gpt2", progress=False, log=lambda m: None
    )
    rows = read_rows(tmp_path / "o")
    n = len(stream) // 100
    assert np.array_equal(rows.reshape(-1), stream[: n * 100])
    assert meta["counts"]["documents"] == 30 and meta["counts"]["tokens"] == len(stream)
    # a last document without EOT gets one, so every document ends with EOS
    stream[:-1].tofile(tmp_path / "val.bin")
    meta2 = convert(
        [tmp_path / "val.bin"], str(tmp_path / "o2"), seq_len=100, tokenizer="gpt2", progress=False, log=lambda m: None
    )
    assert meta2["counts"]["tokens"] == len(stream) and meta2["counts"]["documents"] == 30


def write_megatron(prefix: Path, docs: list[np.ndarray], dtype=np.uint16, code=8) -> None:
    """Megatron MMIDIDX layout: magic, version u64, dtype code u8, n_seq u64, n_docs u64,
    int32 sizes, int64 byte pointers, int64 doc_idx."""
    sizes = np.array([len(d) for d in docs], np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes[:-1], dtype=np.int64) * np.dtype(dtype).itemsize]).astype(np.int64)
    doc_idx = np.arange(len(docs) + 1, dtype=np.int64)
    np.concatenate(docs).astype(dtype).tofile(prefix.with_suffix(".bin"))
    with open(prefix.with_suffix(".idx"), "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(np.array([1], "<u8").tobytes())
        f.write(bytes([code]))
        f.write(np.array([len(docs)], "<u8").tobytes())
        f.write(np.array([len(doc_idx)], "<u8").tobytes())
        f.write(sizes.tobytes() + pointers.tobytes() + doc_idx.tobytes())


def test_megatron_bin_idx(tmp_path):
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 50256, size=int(rng.integers(1, 200))) for _ in range(25)]
    # half the documents already end with EOD (--append-eod), half do not
    docs = [np.append(d, 50256) if i % 2 else d for i, d in enumerate(docs)]
    write_megatron(tmp_path / "corpus_text_document", docs)
    meta = convert(
        [tmp_path / "corpus_text_document.idx"],
        str(tmp_path / "o"),
        seq_len=64,
        tokenizer="gpt2",
        workers=2,
        progress=False,
        log=lambda m: None,
    )
    stream = np.concatenate([d if d[-1] == 50256 else np.append(d, 50256) for d in docs]).astype(np.uint16)
    rows = read_rows(tmp_path / "o")
    n = len(stream) // 64
    assert np.array_equal(rows.reshape(-1), stream[: n * 64])
    assert meta["counts"]["documents"] == 25 and meta["counts"]["tokens"] == len(stream)
    # ids outside the vocabulary mean the wrong tokenizer: a clear error
    write_megatron(tmp_path / "bad", [np.array([1, 2, 60000])])
    with pytest.raises(ConvertError, match="token id 60000 is outside"):
        convert(
            [tmp_path / "bad.bin"],
            str(tmp_path / "o3"),
            seq_len=4,
            tokenizer="gpt2",
            progress=False,
            log=lambda m: None,
        )


# --------------------------------------------------------------------------------------------
# bad input


def test_bad_jsonl_records_are_counted_and_reported(tmp_path):
    lines = [
        jl("good one"),
        b"{not json",
        json.dumps({"txt": "no text key"}).encode(),
        jl(42),
        jl(""),
        b'{"text": "bad \xff utf8"}',
        jl("good two"),
        b"[1, 2]",
    ]
    write_zst(tmp_path / "bad.jsonl.zst", lines)
    messages = []
    meta = convert(
        [tmp_path / "bad.jsonl.zst"],
        str(tmp_path / "o"),
        seq_len=4,
        tokenizer="bytes",
        progress=False,
        log=messages.append,
    )
    check_rows(tmp_path / "o", ["good one", "good two"], 4)
    assert meta["counts"]["skipped"] == {"empty_document": 1, "invalid_json": 1, "invalid_utf8": 1, "missing_text": 3}
    ex = meta["counts"]["skip_examples"]
    assert ex[0].startswith("bad.jsonl.zst:2: invalid json")
    assert any("bad.jsonl.zst:6: invalid utf8" in e for e in ex)
    assert any("skipped" in m and "invalid_json=1" in m for m in messages)


def test_on_error_fail_stops_with_file_and_line(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "ok"}) + "\n{oops\n")
    with pytest.raises(ConvertError, match=r"a\.jsonl:2: invalid json"):
        convert([tmp_path / "a.jsonl"], str(tmp_path / "o"), seq_len=4, on_error="fail", **KW)


def test_truncated_zst_and_xz_are_reported(tmp_path):
    docs = make_docs(3000, seed=5)  # > one 128 KiB zstd block, so a prefix is decodable
    full = zstandard.ZstdCompressor().compress("".join(json.dumps({"text": d}) + "\n" for d in docs).encode())
    (tmp_path / "t.jsonl.zst").write_bytes(full[: len(full) // 2])
    meta = convert([tmp_path / "t.jsonl.zst"], str(tmp_path / "o"), seq_len=8, **KW)
    sk = meta["counts"]["skipped"]
    assert sk.get("truncated_input") == 1
    assert 0 < meta["counts"]["documents"] < 3000
    # every document that was kept is a real prefix of the corpus
    n = meta["counts"]["documents"]
    check_rows(tmp_path / "o", docs[:n], 8)

    xz = lzma.compress("".join(json.dumps({"text": d}) + "\n" for d in docs).encode())
    (tmp_path / "t.jsonl.xz").write_bytes(xz[: len(xz) // 2])
    meta = convert([tmp_path / "t.jsonl.xz"], str(tmp_path / "o2"), seq_len=8, **KW)
    assert meta["counts"]["skipped"].get("truncated_input") == 1
    trunc_owt = tmp_path / "urlsf_subset99-1_data.xz"
    data = (OWT / "urlsf_subset00-1_data.xz").read_bytes()
    trunc_owt.write_bytes(data[: len(data) // 2])
    meta = convert([trunc_owt], str(tmp_path / "o3"), seq_len=64, **KW)
    assert sum(meta["counts"]["skipped"].values()) >= 1
    assert set(meta["counts"]["skipped"]) <= {"truncated_input", "corrupt_input"}
    assert meta["counts"]["documents"] > 0


def _tar_xz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w:xz") as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)


def test_unsafe_and_non_utf8_tar_members_are_refused(tmp_path):
    def reg(name):
        return tarfile.TarInfo(name)

    sym = tarfile.TarInfo("link.txt")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
    dev = tarfile.TarInfo("dev.txt")
    dev.type = tarfile.CHRTYPE
    hard = tarfile.TarInfo("hard.txt")
    hard.type, hard.linkname = tarfile.LNKTYPE, "ok.txt"
    members = [
        (reg("ok.txt"), b"fine doc"),
        (reg("../escape.txt"), b"evil"),
        (reg("/abs.txt"), b"evil"),
        (sym, None),
        (dev, None),
        (hard, None),
        (reg("latin1.txt"), "caf\xe9".encode("latin-1")),
        (reg("sub/ok2.txt"), b"second fine doc"),
    ]
    arch = tmp_path / "in" / "urlsf_subset00-1_data.xz"
    arch.parent.mkdir()
    _tar_xz(arch, members)
    out = tmp_path / "out"
    meta = convert([arch], str(out), seq_len=4, **KW)
    check_rows(out, ["fine doc", "second fine doc"], 4)
    assert meta["counts"]["skipped"] == {"unsafe_archive_member": 5, "invalid_utf8": 1}
    ex = "\n".join(meta["counts"]["skip_examples"])
    assert "../escape.txt" in ex and "absolute path" in ex
    # nothing was written anywhere but the output directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["urlsf_subset00-1_data.xz"]


def test_non_utf8_txt_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_bytes(b"caf\xe9")
    (tmp_path / "d" / "b.txt").write_text("ok")
    meta = convert([tmp_path / "d"], str(tmp_path / "o"), seq_len=2, **KW)
    assert meta["counts"]["skipped"] == {"invalid_utf8": 1}
    check_rows(tmp_path / "o", ["ok"], 2)


def test_unknown_format_and_missing_input(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ConvertError, match=r"data\.csv: unknown input format.*--format"):
        convert([tmp_path / "data.csv"], str(tmp_path / "o"), **KW)
    with pytest.raises(ConvertError, match="unknown --format 'xml'"):
        convert([tmp_path / "data.csv"], str(tmp_path / "o"), fmt="xml", **KW)
    with pytest.raises(ConvertError, match="input not found"):
        convert([tmp_path / "nope.jsonl"], str(tmp_path / "o"), **KW)
    # --format forces a reader: a csv read as txt is one document
    convert([tmp_path / "data.csv"], str(tmp_path / "o"), fmt="txt", seq_len=2, **KW)
    check_rows(tmp_path / "o", ["a,b\n"], 2)


# --------------------------------------------------------------------------------------------
# existing outputs


def test_finished_output_is_never_silently_overwritten(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hello there"}) + "\n")
    out = tmp_path / "o"
    convert([tmp_path / "a.jsonl"], str(out), seq_len=4, **KW)
    before = all_bytes(out)
    with pytest.raises(ConvertError, match="seq_len: existing 4, requested 5"):
        convert([tmp_path / "a.jsonl"], str(out), seq_len=5, **KW)
    with pytest.raises(ConvertError, match="tokenizer"):
        convert([tmp_path / "a.jsonl"], str(out), seq_len=4, tokenizer="gpt2", progress=False, log=lambda m: None)
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "changed input"}) + "\n")
    with pytest.raises(ConvertError, match=r"sources\[0\]\.(size|sha256)"):
        convert([tmp_path / "a.jsonl"], str(out), seq_len=4, **KW)
    assert all_bytes(out) == before
    meta = convert([tmp_path / "a.jsonl"], str(out), seq_len=5, overwrite=True, **KW)
    assert meta["seq_len"] == 5
    check_rows(out, ["changed input"], 5)
    # the same settings again: nothing to do, same bytes
    after = all_bytes(out)
    convert([tmp_path / "a.jsonl"], str(out), seq_len=5, **KW)
    assert all_bytes(out) == after


def test_refuses_foreign_nonempty_output(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hi"}) + "\n")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.md").write_text("mine")
    with pytest.raises(ConvertError, match="not empty"):
        convert([tmp_path / "a.jsonl"], str(tmp_path / "o"), **KW)
    with pytest.raises(ConvertError, match="notes.md"):
        convert([tmp_path / "a.jsonl"], str(tmp_path / "o"), overwrite=True, **KW)
    assert (tmp_path / "o" / "notes.md").read_text() == "mine"


def test_cli_convert_and_user_errors(tmp_path, capsys):
    from slwdata.cli import main

    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hello cli"}) + "\n")
    rc = main(
        [
            "convert",
            str(tmp_path / "a.jsonl"),
            "--out",
            str(tmp_path / "o"),
            "--seq-len",
            "3",
            "--tokenizer",
            "bytes",
            "--no-progress",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    assert "1 documents, 10 tokens, 3 rows of 3" in capsys.readouterr().out
    rc = main(
        [
            "convert",
            str(tmp_path / "a.jsonl"),
            "--out",
            str(tmp_path / "o"),
            "--seq-len",
            "4",
            "--tokenizer",
            "bytes",
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "seq_len: existing 3, requested 4" in capsys.readouterr().err


def test_every_convert_option_has_help(capsys):
    from slwdata.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("convert", "inspect", "verify"):
        for action in sub.choices[name]._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_on_error_fail_inside_worker_pool(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name, body in [
        ("a.jsonl", '{"text": "one"}\n'),
        ("b.jsonl", '{"text": "two"}\n{"text": 3}\n'),
        ("c.jsonl", '{"text": "three"}\n'),
    ]:
        (src / name).write_text(body)
    with pytest.raises(ConvertError, match=r"in/b\.jsonl:2: missing text .*--on-error fail"):
        convert([src], str(tmp_path / "o"), seq_len=2, workers=2, on_error="fail", **KW)
    assert not (tmp_path / "o" / "slwdata.json").exists()
    # the same input with the default policy: the record is skipped and counted
    meta = convert([src], str(tmp_path / "o2"), seq_len=2, workers=2, **KW)
    assert meta["counts"]["skipped"] == {"missing_text": 1}
    check_rows(tmp_path / "o2", ["one", "two", "three"], 2)


def test_vocab_above_65536_writes_int32(tmp_path):
    import base64
    import itertools
    import string

    # A synthetic BPE with 256 byte tokens + 2- and 3-letter merges: 70,000 ranks > uint16.
    alphabet = (string.ascii_letters + string.digits).encode()
    toks = [bytes([b]) for b in range(256)]
    toks += [bytes(p) for p in itertools.product(alphabet, repeat=2)]
    toks += [bytes(p) for p in itertools.islice(itertools.product(alphabet, repeat=3), 70_000 - len(toks))]
    path = tmp_path / "big.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(toks)))
    docs = ["abc xyz 123", "zzz Zz9 <|endoftext|>"]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    meta = convert(
        [tmp_path / "a.jsonl"], str(tmp_path / "o"), seq_len=4, tokenizer=str(path), progress=False, log=lambda m: None
    )
    assert meta["dtype"] == "int32" and meta["eos_id"] == 70_000
    from slwdata.tokenizers import load_tokenizer

    tok = load_tokenizer(str(path))
    ref = [i for d in docs for i in tok.encode(d) + [70_000]]
    assert max(ref[:-1]) >= 65536 or 70_000 in ref  # ids that need more than 16 bits
    rows = read_rows(tmp_path / "o")
    assert rows.dtype == np.int32
    n = len(ref) // 4
    assert rows.reshape(-1).tolist() == ref[: n * 4]


def test_big_jsonl_split_into_byte_ranges_gives_same_bytes(tmp_path, monkeypatch):
    import converters.readers as readers

    docs = make_docs(400, seed=11)
    lines = [json.dumps({"text": d}) for d in docs]
    lines[57] = "{broken"
    (tmp_path / "big.jsonl").write_text("\n".join(lines) + "\n")
    kw = dict(seq_len=50, size_limit=4096, **KW)
    whole = convert([tmp_path / "big.jsonl"], str(tmp_path / "whole"), workers=1, **kw)
    monkeypatch.setattr(readers, "UNIT_BYTES", 997)  # ranges that cut records mid-line
    assert len(readers.plan_units(readers.expand_inputs([tmp_path / "big.jsonl"]))) > 10
    split = convert([tmp_path / "big.jsonl"], str(tmp_path / "split"), workers=2, **kw)
    assert all_bytes(tmp_path / "split") == all_bytes(tmp_path / "whole")
    assert split == whole and whole["counts"]["skipped"] == {"invalid_json": 1}
    check_rows(tmp_path / "split", docs[:57] + docs[58:], 50)
