"""Composer is an optional extra: the converters, the dataset and the CLI must work without it,
and pacing must not even need torch."""

import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import sys
    class _Block:
        def __init__(self, names): self.names = names
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in self.names:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by test)", name=name)
            return None
    sys.meta_path.insert(0, _Block({blocked!r}))
    """
)


def _run(blocked: set[str], body: str) -> subprocess.CompletedProcess:
    code = BLOCKER.format(blocked=blocked) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_core_imports_and_cli_work_without_composer():
    out = _run(
        {"composer"},
        """
        import converters, converters.cli, slwdata.dataset, slwdata.pacing, slwdata.truncate, slwdata.cli
        parser = slwdata.cli.build_parser()
        assert "convert" in parser.format_help()
        print("ok")
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_pacing_needs_neither_torch_nor_numpy():
    out = _run(
        {"torch", "numpy", "composer"},
        """
        from slwdata.pacing import PacingSchedule
        s = PacingSchedule(start=8, end=1024, duration=100)
        assert s.seq_len(step=0) == 8 and s.seq_len(step=100) == 1024
        print("ok")
        """,
    )
    assert out.returncode == 0, out.stderr
