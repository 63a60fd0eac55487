#!/usr/bin/env bash
# Re-chunk pre-tokenized corpora without re-tokenizing: nanoGPT train.bin (uint16, docs separated
# by EOT) or Megatron-LM corpus_text_document.bin/.idx. --tokenizer names the tokenizer the data
# was made with (for the EOS id and the vocabulary check), --seq-len the new row length.
# Usage: examples/convert_pretokenized.sh FILE.bin OUT [SEQ_LEN]
set -euo pipefail
slwdata convert "$1" --out "$2" --seq-len "${3:-2048}" --tokenizer gpt2
slwdata verify "$2"
