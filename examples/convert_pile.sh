#!/usr/bin/env bash
# The Pile (*.jsonl.zst) -> GPT-2 shards of 1024 tokens; then inspect and verify them.
# Usage: examples/convert_pile.sh [PILE_DIR] [OUT]   (defaults: the pile-mini sample in ../shared)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PILE="${1:-$ROOT/../shared/data/corpora/pile-mini}"
OUT="${2:-$ROOT/out/pile-gpt2-1024}"
slwdata convert "$PILE" --out "$OUT" --seq-len 1024 --tokenizer gpt2
# Keep only some subsets:   --pile-sets Pile-CC,Github
# Stop at the first bad record instead of counting it:   --on-error fail
slwdata inspect "$OUT"
slwdata verify "$OUT"
