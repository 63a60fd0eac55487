#!/usr/bin/env bash
# Convert straight to S3 (or an S3-compatible store such as MinIO / R2 via S3_ENDPOINT_URL);
# shards are staged in --work-dir and uploaded by streaming.MDSWriter as they are finished.
# Rerunning the same command after an interruption resumes from the same --work-dir.
# Usage: examples/convert_s3.sh INPUT s3://bucket/prefix [WORK_DIR]
set -euo pipefail
INPUT="$1"; REMOTE="$2"; WORK="${3:-/tmp/slwdata-work-$(echo -n "$REMOTE" | sha1sum | cut -c1-12)}"
# export S3_ENDPOINT_URL=http://127.0.0.1:9000   # for MinIO and friends
slwdata convert "$INPUT" --out "$REMOTE" --seq-len 1024 --tokenizer gpt2 --work-dir "$WORK"
