#!/usr/bin/env bash
# Create .venv-llmfoundry: llm-foundry 0.22.0 exactly as its users install it, plus slwdata
# installed the ordinary way (with its dependencies), then `pip check` must report no conflict.
# llm-foundry pins torch<2.7.1 and streaming<0.13, so it cannot share .venv (see README).
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
V=.venv-llmfoundry
[ -x "$V/bin/python" ] || "$PY" -m venv "$V"
export PIP_DISABLE_PIP_VERSION_CHECK=1
q() {
    local log rc=0
    log="$(mktemp)"
    "$V/bin/pip" install -q "$@" >"$log" 2>&1 || rc=$?
    grep -v "^WARNING: Location" "$log" || true
    rm -f "$log"
    return "$rc"
}
"$V/bin/python" -c "import llmfoundry" 2>/dev/null || q "llm-foundry==0.22.0"
q -e .
"$V/bin/pip" check
"$V/bin/python" -c "import llmfoundry, slwdata, streaming, composer, torch; print('llm-foundry env ready: llmfoundry', llmfoundry.__version__, 'streaming', streaming.__version__, 'composer', composer.__version__, 'torch', torch.__version__)"
