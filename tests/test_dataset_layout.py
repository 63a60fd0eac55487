"""The dataset package's modules: each opens with a docstring stating its job, and their
module-level imports form no circle (the planner, the ledger and the account stay below the
transport and the dataset)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / 'slwdata' / 'dataset'


def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports at module level (not under ``if``)."""
    graph = {}
    for path in PKG.glob('*.py'):
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('slwdata.dataset'):
                if node.module == 'slwdata.dataset':
                    deps |= {a.name for a in node.names}
                else:
                    deps.add(node.module.rsplit('.', 1)[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.rsplit('.', 1)[1] for a in node.names if a.name.startswith('slwdata.dataset.')}
        graph[path.stem] = deps
    return graph


def test_every_module_states_its_job():
    for path in sorted(PKG.glob('*.py')):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc.split('\n', 1)[0]) > 20, f'{path.name}: no opening docstring'


def test_no_import_circle_and_the_planner_stays_below_transport():
    graph = _graph()
    graph.pop('__init__')

    def below(module: str, seen: tuple[str, ...] = ()) -> set[str]:
        assert module not in seen, 'import circle: ' + ' -> '.join(seen + (module,))
        out = set()
        for dep in graph.get(module, ()):
            out |= {dep} | below(dep, seen + (module,))
        return out

    for module in graph:
        below(module)
    for pure in ('plan', 'ledger', 'accounting', 'epochs'):
        assert not below(pure) & {'transport', 'dataset', 'streaming_compat'}, pure
    assert 'dataset' not in below('transport')
