"""The package layout: no import circle among the modules of ``slwdata`` and ``converters``.

Edges are read from the source (``ast``), so a circle is found even where Python would
tolerate it at run time: every ``import`` counts, also those inside functions (a lazy import
still ties the two modules together), and so do the subcommand modules that ``slwdata.cli``
loads by name; a ``if __name__ == "__main__":`` block does not (it runs only as a script), nor
does ``if TYPE_CHECKING:`` (annotations only).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("slwdata", "converters")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _edges(name: str, path: Path, mods: dict[str, Path], top_level_only: bool) -> set[str]:
    """The project modules that ``name`` imports."""
    tree = ast.parse(path.read_text(), str(path))
    # A `__main__` block runs only as a script, when the module is not itself in the graph.
    tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]
    # An `if TYPE_CHECKING:` block never runs: its imports name types for annotations only.
    tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
    is_pkg = path.name == "__init__.py"
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level includes `if`/`try` blocks, not function bodies
        todo, nodes = list(tree.body), []
        while todo:
            n = todo.pop()
            nodes.append(n)
            if isinstance(n, (ast.If, ast.Try)):
                todo.extend(
                    n.body
                    + n.orelse
                    + getattr(n, "finalbody", [])
                    + [s for h in getattr(n, "handlers", []) for s in h.body]
                )
    out: set[str] = set()
    for n in nodes:
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            if n.level:  # relative: resolve against this module's package
                base = name.split(".")[: len(name.split(".")) - n.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            for a in n.names:
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod)
    if name == "slwdata.cli" and not top_level_only:  # subcommands loaded with importlib by name
        for n in ast.walk(tree):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AnnAssign) else []
            if any(getattr(t, "id", "") == "SUBCOMMANDS" for t in targets):
                out.update(e.elts[0].value for e in n.value.elts)
    return {m for m in out if m in mods and m != name}


def _cycles(top_level_only: bool) -> list[list[str]]:
    """One circle per strongly connected component of the import graph (Tarjan)."""
    mods = _modules()
    graph = {m: _edges(m, p, mods, top_level_only) for m, p in mods.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for m in sorted(graph):
        if m not in index:
            visit(m)
    return found


def test_no_import_circle_at_module_level() -> None:
    assert _cycles(top_level_only=True) == []


def test_no_import_circle_even_through_lazy_imports() -> None:
    assert _cycles(top_level_only=False) == []


@pytest.mark.parametrize(
    "module",
    [
        "converters.units",
        "converters.spark",
        "converters.readers",
        "converters.pipeline",
        "slwdata.errors",
        "slwdata.cli",
    ],
)
def test_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    """Each module imports first, on its own (a circle shows up as an ImportError here)."""
    run = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_core_never_imports_the_demo() -> None:
    """``slwdata/demo/`` (quickstart, corpus, report, tiny GPT) sits apart from the core: only the
    CLI's subcommand table names it."""
    mods = _modules()
    users = {
        name
        for name, path in mods.items()
        if not name.startswith("slwdata.demo")
        and name != "slwdata.cli"
        and any(dep.startswith("slwdata.demo") for dep in _edges(name, path, mods, top_level_only=False))
    }
    assert users == set()


def test_user_error_is_one_class() -> None:
    """``slwdata.cli.UserError`` stays importable, as the same class the converters raise."""
    from converters import ConvertError
    from converters.remote import RemoteError
    from slwdata.cli import UserError
    from slwdata.errors import UserError as BaseError

    assert UserError is BaseError
    assert issubclass(ConvertError, UserError) and issubclass(RemoteError, ConvertError)


def test_only_shards_names_the_metadata_file() -> None:
    """``slwdata/shards.py`` alone reads and writes ``slwdata.json``: no other module spells the
    file name as a path (help texts and docstrings may mention it)."""
    spelled = []
    for name, path in _modules().items():
        if name == "slwdata.shards":
            continue
        for n in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(n, ast.Constant) and n.value == "slwdata.json":
                spelled.append(f"{name}:{n.lineno}")
    assert spelled == []


@pytest.mark.parametrize(
    "package", ["slwdata", "slwdata.dataset", "slwdata.composer", "slwdata.truncate", "converters"]
)
def test_public_surface_is_short_and_importable(package: str) -> None:
    """``__all__`` lists what a user imports (a handful of names), and every one of them exists."""
    import importlib

    mod = importlib.import_module(package)
    assert 0 < len(mod.__all__) <= 8, mod.__all__
    assert [n for n in mod.__all__ if not hasattr(mod, n)] == []


def test_every_module_opens_with_a_docstring_that_states_its_job() -> None:
    """One module, one concern, said in its opening docstring (a first line of a few words at least)."""
    missing = []
    for name, path in _modules().items():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if not doc or len(doc.splitlines()[0].split()) < 3:
            missing.append(name)
    assert missing == []
