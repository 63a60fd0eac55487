"""The ``slwdata`` command line: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (``args -> int`` exit code). Modules are imported only when listed here, and
must stay importable without torch so ``slwdata convert --help`` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from typing import Any, Sequence

from slwdata.errors import UserError

# (module, one-line summary). Order is the order in --help.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("converters.cli", "convert, inspect, verify: corpora -> fixed-length zstd MDS shards"),
    ("slwdata.demo.quickstart", "quickstart: end-to-end SLW demo on an embedded corpus"),
    ("slwdata.tune.cli", "tune: find SLW's start length and duration from short trials"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slwdata",
        description=(
            "Sequence Length Warmup at scale. Convert corpora to fixed-length shards, "
            "stream them with tail reuse, and train with the SLW Composer algorithm."
        ),
        epilog="Run 'slwdata COMMAND --help' for the options of each command.",
    )
    from slwdata import __version__

    parser.add_argument("--version", action="version", version=f"slwdata {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, _summary in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a subcommand whose module is not built yet
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


_terminated = False


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (a supervisor, ``kill``, a scheduler's time limit) takes Ctrl-C's path, so the
    subcommand stops cleanly and says what it kept; a second SIGTERM ends the process at once."""
    global _terminated
    _terminated = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"slwdata {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a subcommand may say what was kept
        what = "terminated (SIGTERM)" if _terminated else "interrupted"
        print(f"slwdata {args.command}: {what}" + (f" — {exc}" if str(exc) else ""), file=sys.stderr)
        return 143 if _terminated else 130


if __name__ == "__main__":
    sys.exit(main())
