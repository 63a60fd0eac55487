"""``slwdata convert``, ``slwdata inspect`` and ``slwdata verify`` (registered by slwdata.cli)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]

_CONVERT_EPILOG = """\
formats (auto-detected from the file name; --format overrides):
  jsonl     The Pile *.jsonl.zst and any JSON-lines file (.jsonl, .jsonl.zst/.xz/.gz); text in --text-key
  txt       plain .txt files, one document per file
  parquet   Hugging Face parquet with a text column (read by row groups)
  tar       OpenWebText: urlsf_subset*.xz (xz tar of .txt docs) or the outer openwebtext.tar.xz
  nanogpt   nanoGPT train.bin/val.bin (headerless uint16, documents separated by EOT)
  megatron  Megatron-LM .bin + .idx (MMIDIDX); re-chunked without re-tokenizing

examples:
  slwdata convert ../shared/data/corpora/pile-mini --out shards/pile --seq-len 1024
  slwdata convert data/openwebtext --out s3://bucket/owt-gpt2 --workers 16
  slwdata inspect shards/pile && slwdata verify shards/pile
"""


def _cmd_convert(args: argparse.Namespace) -> int:
    from converters import convert

    pile_sets = [s.strip() for s in args.pile_sets.split(",") if s.strip()] if args.pile_sets else None
    meta = convert(
        args.inputs,
        args.out,
        seq_len=args.seq_len,
        tokenizer=args.tokenizer,
        workers=args.workers,
        fmt=args.format,
        on_error=args.on_error,
        overwrite=args.overwrite,
        compression=args.compression,
        text_key=args.text_key,
        pile_sets=pile_sets,
        progress=not args.no_progress,
        engine=args.engine,
        hashes=args.hashes.split(","),
        size_limit=args.size_limit,
        work_dir=args.work_dir,
        allow_empty=args.allow_empty,
        remote_timeout=args.remote_timeout,
    )
    c = meta["counts"]
    print(
        f"{args.out}: {c['documents']:,} documents, {c['tokens']:,} tokens, {c['rows']:,} rows of "
        f"{meta['seq_len']} ({meta['dtype']}), {c['leftover_tokens']:,} tokens left over, "
        f"{sum(c['skipped'].values()):,} records skipped"
    )
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from converters.inspect import inspect_summary

    print(inspect_summary(args.dir, sample_tokens=args.sample_tokens))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from converters.inspect import verify

    problems = verify(args.dir)
    hard = [p for p in problems if not p.startswith("index.json records no hashes")]
    for p in problems:
        print(f"{args.dir}: {p}", file=sys.stderr)
    if hard:
        print(f"verify FAILED: {len(hard)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.dir}: OK (all shards match their sizes and hashes; counts agree)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the convert / inspect / verify subcommands."""
    p = subparsers.add_parser(
        "convert",
        help="corpora -> fixed-length zstd MDS shards + slwdata.json",
        description=(
            "Tokenize corpora (or re-chunk pre-tokenized ones) into rows of exactly --seq-len "
            "tokens: documents in input order, each followed by EOS, written by "
            "streaming.MDSWriter. Output is byte-identical whatever --workers is, and an "
            "interrupted run resumes when rerun with the same settings. A second conversion "
            "into an --out that another one is writing is refused (not queued), naming the "
            "running one."
        ),
        epilog=_CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="input files or directories (directories are read recursively in sorted order; "
        "files are processed in the order given)",
    )
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="output directory, or a remote URL such as s3://bucket/prefix (set S3_ENDPOINT_URL "
        "for S3-compatible stores); shards, index.json and slwdata.json go there",
    )
    p.add_argument(
        "--seq-len", type=int, default=1024, help="tokens per row (the final full training length); default 1024"
    )
    p.add_argument(
        "--tokenizer",
        default="gpt2",
        help="'gpt2' (works offline from ../shared or $SLWDATA_GPT2_TIKTOKEN), another tiktoken "
        "encoding name, a .tiktoken file, 'hf:NAME' or a local Hugging Face tokenizer "
        "directory, or 'bytes' (UTF-8 bytes, EOS 256); for pre-tokenized input it gives "
        "the EOS id and vocabulary size; default gpt2",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="tokenizer processes (default: all CPU cores); does not change the output bytes",
    )
    p.add_argument(
        "--format",
        default=None,
        help="override format detection for every input: jsonl (alias pile), txt, parquet, "
        "tar (alias owt), nanogpt, megatron",
    )
    p.add_argument(
        "--on-error",
        choices=["skip", "fail"],
        default="skip",
        help="bad records (invalid JSON/UTF-8, missing or empty text, truncated archives, unsafe "
        "tar members): 'skip' counts them by reason in slwdata.json and reports the first "
        "few with file and line; 'fail' stops at the first with that message; default skip",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (finished, or interrupted with other settings); without "
        "it such an output is never overwritten or mixed",
    )
    p.add_argument(
        "--compression", default="zstd:3", help="shard compression, e.g. zstd:3 (default), zstd:19, or 'none'"
    )
    p.add_argument(
        "--hashes",
        default="xxh64",
        help="comma-separated shard hashes recorded in index.json and checked by 'verify' "
        "(xxh64, sha1, ...); default xxh64",
    )
    p.add_argument(
        "--size-limit",
        default="64mb",
        help="uncompressed bytes per shard before a new shard starts (streaming size_limit); default 64mb",
    )
    p.add_argument(
        "--text-key", default="text", help="JSON field / parquet column holding the document text; default 'text'"
    )
    p.add_argument(
        "--pile-sets",
        default=None,
        help="comma-separated Pile subsets to keep (meta.pile_set_name), e.g. 'Pile-CC,Github'; "
        "others are counted as filtered; default: keep all",
    )
    p.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="'local' process pool (default) or 'spark' (pyspark tokenizes the work units; same bytes)",
    )
    p.add_argument(
        "--work-dir",
        default=None,
        help="folder in which the converter keeps its own scratch folder of per-unit token files "
        "(default <out>/.slwdata-work, or a temp folder for remote outputs); needs about 2-4 "
        "bytes per token; reuse it to resume. Only the scratch folder is ever removed; a work "
        "dir that equals or contains the inputs or the output is refused",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="write the output even when it has 0 rows (corpus shorter than --seq-len, or every "
        "record rejected); without it such a run exits 1 with the counts and writes nothing",
    )
    p.add_argument(
        "--remote-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="bound on each object-store call, retries with backoff included (default "
        "$SLWDATA_REMOTE_TIMEOUT or 120); a store that stops answering ends the run with an "
        "error naming the object",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bar (tokens/s, documents)")
    p.set_defaults(func=_cmd_convert)

    q = subparsers.add_parser(
        "inspect",
        help="summarize converted shards (counts, dtype, a decoded sample)",
        description="Print counts, dtype, shard sizes and the first row decoded "
        "(when the tokenizer is available) of a converted dataset.",
    )
    q.add_argument("dir", help="a local directory with index.json (and slwdata.json)")
    q.add_argument("--sample-tokens", type=int, default=64, help="how many ids of row 0 to show and decode; default 64")
    q.set_defaults(func=_cmd_inspect)

    v = subparsers.add_parser(
        "verify",
        help="check shard sizes/hashes and counts; non-zero exit on a bad shard",
        description="Recompute every shard's size and hashes against index.json and "
        "check the counts in slwdata.json; exit 1 naming each bad shard.",
    )
    v.add_argument("dir", help="a local directory with index.json (and slwdata.json)")
    v.set_defaults(func=_cmd_verify)
