"""The ``slwdata`` entry point: help text, dispatch, and user errors without tracebacks."""

import subprocess
import sys

from slwdata import cli


def test_help_lists_every_registered_subcommand(capsys):
    parser = cli.build_parser()
    help_text = parser.format_help()
    registered = [a for a in parser._subparsers._group_actions[0].choices]  # noqa: SLF001
    assert registered, "no subcommand registered"
    for name in registered:
        assert name in help_text


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: slwdata" in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback(monkeypatch, capsys):
    def boom(args):
        raise cli.UserError("input.jsonl line 3: bad thing")

    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0]  # noqa: SLF001
    p = sub.add_parser("boom")
    p.set_defaults(func=boom)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "slwdata boom: error: input.jsonl line 3: bad thing"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "slwdata.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("slwdata ")


def test_user_error_under_python_dash_m_has_no_traceback(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "slwdata.cli", "inspect", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("slwdata inspect: error:")
