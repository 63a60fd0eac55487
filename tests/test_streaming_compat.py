"""streaming's private internals are reached through ``slwdata.dataset.streaming_compat`` only,
and both supported streaming series (this environment's and the llm-foundry environment's) still
have every internal slwdata uses, with the same parameters where slwdata overrides a method.
The checks themselves are in ``helpers_streaming_compat.py``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import streaming

import helpers_streaming_compat as checks

REPO = Path(__file__).resolve().parents[1]
CHECKS = (
    'installed_streaming_is_supported_and_matches_pyproject',
    'overridden_hooks_keep_their_parameters',
    'every_wrapped_internal_exists',
    'no_other_module_reaches_streaming_internals',
    'shm_names_follow_streamings_convention',
)


@pytest.mark.parametrize('name', CHECKS)
def test_streaming_compat(name):
    getattr(checks, 'check_' + name)()


OTHER_VENV = REPO / '.venv-llmfoundry'  # llm-foundry pins streaming 0.12 (scripts/setup_llmfoundry.sh)


@pytest.mark.skipif(
    not (OTHER_VENV / 'bin' / 'python').exists(),
    reason='.venv-llmfoundry is absent: run `bash scripts/setup_llmfoundry.sh` (.ci/run does)',
)
def test_the_other_supported_streaming_passes_the_same_checks():
    """The same checks, run by the interpreter of the llm-foundry environment, whose
    streaming is the other supported series: the compat module imports there and every
    internal it wraps or overrides is still there."""
    code = (
        'import sys, streaming; sys.path.insert(0, "tests")\n'
        'import helpers_streaming_compat as checks\n'
        f'for name in {CHECKS!r}:\n'
        '    getattr(checks, "check_" + name)()\n'
        'print("streaming", streaming.__version__)\n'
    )
    out = subprocess.run(
        [str(OTHER_VENV / 'bin' / 'python'), '-c', code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    other = out.stdout.split()[-1]
    assert other.rsplit('.', 1)[0] != '.'.join(streaming.__version__.split('.')[:2]), (
        f'both environments have streaming {other}: only one series is checked'
    )
