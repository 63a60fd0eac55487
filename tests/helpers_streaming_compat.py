"""Checks that streaming's private internals are reached through
``slwdata.dataset.streaming_compat`` only, and that the running streaming is one of the versions
that module supports. Plain functions without pytest, so that ``tests/test_streaming_compat.py``
runs them here and in the llm-foundry environment (the other supported streaming)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import streaming
from streaming import StreamingDataset

from slwdata.dataset import streaming_compat
from slwdata.dataset.streaming_compat import OVERRIDDEN_HOOKS, SUPPORTED_STREAMING

REPO = Path(__file__).resolve().parents[1]
COMPAT = REPO / 'slwdata' / 'dataset' / 'streaming_compat.py'


def _py_files() -> list[Path]:
    return sorted(p for p in (REPO / 'slwdata').rglob('*.py') if p != COMPAT)


def check_installed_streaming_is_supported_and_matches_pyproject():
    """The installed release series is one the compat module was written for, and pyproject's
    requirement admits exactly those series."""
    series = '.'.join(streaming.__version__.split('.')[:2])
    assert series in SUPPORTED_STREAMING, (streaming.__version__, SUPPORTED_STREAMING)
    pin = re.search(r'"mosaicml-streaming>=([\d.]+),<([\d.]+)"', (REPO / 'pyproject.toml').read_text())
    assert pin, 'pyproject.toml: no mosaicml-streaming>=X,<Y requirement'
    low, high = (tuple(int(x) for x in v.split('.')[:2]) for v in pin.groups())
    admitted = {f'{low[0]}.{m}' for m in range(low[1], high[1])} if low[0] == high[0] else None
    assert admitted == set(SUPPORTED_STREAMING), (pin.groups(), SUPPORTED_STREAMING)


def check_overridden_hooks_keep_their_parameters():
    """A streaming that renamed or re-shaped a method slwdata overrides would silently stop
    calling the override: each hook still exists with the same parameters."""
    for qualname, method, params in OVERRIDDEN_HOOKS:
        module, cls = qualname.rsplit('.', 1)
        fn = getattr(getattr(importlib.import_module(module), cls), method, None)
        assert fn is not None, f'{qualname}.{method} is gone'
        got = tuple(inspect.signature(fn).parameters)[1:]
        assert got == params, f'{qualname}.{method}{got}, slwdata overrides it as {params}'


def check_every_wrapped_internal_exists():
    """Each private attribute the compat module reaches is one this streaming still sets."""
    source = COMPAT.read_text()
    methods = {'_resume', '_resume_incr_epoch', '_download_file'}
    attrs = set(re.findall(r'(?:dataset|stream)\._([a-z][a-z_]*)\b', source)) - {m[1:] for m in methods}
    init_src = inspect.getsource(StreamingDataset)
    for name in sorted(attrs):
        if name in ('downloader',):  # a Stream's, made on first download
            assert "_downloader" in inspect.getsource(streaming.Stream), name
            continue
        assert f'self._{name}' in init_src, f'StreamingDataset no longer sets _{name}'
    for name in methods:
        owner = streaming.Stream if name == '_download_file' else StreamingDataset
        assert callable(getattr(owner, name, None)), f'{owner.__name__}.{name} is gone'


def _private_names() -> set[str]:
    """streaming's private names: ``_``-prefixed attributes its dataset, stream and barrier
    set or define, and ``streaming.base`` module paths."""
    names = set()
    for cls in (StreamingDataset, streaming.Stream):
        src = inspect.getsource(cls)
        names |= set(re.findall(r'self\.(_[a-z][a-z_]+)\b', src))
        names |= {n for n in dir(cls) if n.startswith('_') and not n.startswith('__')}
    return names


def check_no_other_module_reaches_streaming_internals():
    """Only streaming_compat imports from ``streaming.base`` or touches a private attribute of
    a streaming object (methods slwdata overrides excepted: they are listed in
    ``OVERRIDDEN_HOOKS``)."""
    overrides = {m for _, m, _ in OVERRIDDEN_HOOKS}
    private = _private_names() - overrides
    offenders = []
    for path in _py_files():
        text = path.read_text()
        # `self._x` is streaming's only in a module that subclasses a streaming class.
        subclasses = re.search(r'^class \w+\((StreamingDataset|S3Downloader)\)', text, re.M)
        for lineno, line in enumerate(text.splitlines(), 1):
            code = line.split('#', 1)[0]
            if re.search(r'\bstreaming\.base\b', code) and ('import' in code):
                offenders.append(f'{path.relative_to(REPO)}:{lineno}: {line.strip()}')
            for owner, name in re.findall(r'(\w*)\.(_[a-z][a-z_]+)\b', code):
                if name in private and (owner != 'self' or subclasses):
                    offenders.append(f'{path.relative_to(REPO)}:{lineno}: {line.strip()}')
    assert not offenders, 'streaming internals outside streaming_compat:\n' + '\n'.join(offenders)


def check_shm_names_follow_streamings_convention():
    """``slwdata.dataset.shm`` finds a run's segments by the name streaming gives them
    (``/dev/shm/<prefix:06>_<name>``); the compat module builds them with streaming's own
    function, so this pins that convention."""
    assert streaming_compat.shm_path(7, 'barrier') == '000007_barrier'
