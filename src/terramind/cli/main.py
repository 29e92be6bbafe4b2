"""The ``terramind`` command: finds its subcommands and turns library errors into one-line messages.

Each module in this package that defines ``register(subparsers)`` contributes one subcommand; ``register``
adds a parser and sets ``func`` (taking the parsed namespace, returning an exit code). Discovery keeps this
file free of a list that every new subcommand would have to edit.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from terramind.core.errors import TerraMindError

USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="terramind", description="TerraMind for Earth observation: inspect, tokenize, generate, train."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    package = importlib.import_module("terramind.cli")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name == "main":
            continue
        module = importlib.import_module(f"terramind.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 usage or input error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except TerraMindError as err:
        print(f"terramind {args.command}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"terramind {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
