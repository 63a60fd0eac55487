#!/usr/bin/env bash
# Create .venv and install slwdata with everything its tests and quickstart need.
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip, quiet, minus this machine's noise about unused local index folders; returns pip's status.
q() {
    local log rc=0
    log="$(mktemp)"
    pip install -q "$@" >"$log" 2>&1 || rc=$?
    grep -v "^WARNING: Location" "$log" || true
    rm -f "$log"
    return "$rc"
}
# torch + a matching torchvision (streaming imports torchvision at import time).
# These exact releases are on the local disk of this workplace's machines; elsewhere pip downloads them.
q "torch==2.14.1" "torchvision==0.29.1"
q -e ".[dev,spark]"
# Composer 0.32.1 pins torch<2.7.1; it runs on the torch above, so install it without its pins.
q --no-deps "mosaicml==0.32.1"
q -r requirements/composer-runtime.txt "torch==2.14.1" "torchvision==0.29.1"
python -c "import slwdata, converters, streaming, composer, torch; print('slwdata env ready: torch', torch.__version__, 'streaming', streaming.__version__, 'composer', composer.__version__)"
