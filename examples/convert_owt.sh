#!/usr/bin/env bash
# OpenWebText in its original layout -> GPT-2 shards.
# Accepts the directory of urlsf_subset*.xz (one work unit per file: parallel) or the outer
# openwebtext.tar.xz itself (read as one stream; tiktoken threads still use every core).
# Usage: examples/convert_owt.sh [OWT_DIR_OR_TAR] [OUT]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OWT="${1:-$ROOT/../shared/data/corpora/openwebtext-mini/openwebtext}"
OUT="${2:-$ROOT/out/owt-gpt2-1024}"
slwdata convert "$OWT" --out "$OUT" --seq-len 1024 --tokenizer gpt2 --workers "$(nproc)"
slwdata inspect "$OUT"
