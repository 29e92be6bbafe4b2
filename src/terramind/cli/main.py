"""The ``terramind`` command: finds its subcommands and turns library errors into one-line messages.

Each module in this package that defines ``register(subparsers)`` contributes one subcommand, named after the
module (``train_tokenizer.py`` -> ``terramind train-tokenizer``); ``register`` adds a parser and sets ``func``
(taking the parsed namespace, returning an exit code). Discovery keeps this file free of a list that every new
subcommand would have to edit. Only the module of the command being run is imported (several pull in heavy
libraries such as diffusers or Lightning); ``--help`` and unknown commands import them all.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from terramind.core.errors import TerraMindError

USAGE_ERROR = 2


def command_modules() -> dict[str, str]:
    """Subcommand name -> module name, for every module of this package except ``main`` and private ones."""
    package = importlib.import_module("terramind.cli")
    modules = pkgutil.iter_modules(package.__path__)
    names = sorted(i.name for i in modules if i.name != "main" and not i.name.startswith("_"))
    return {name.replace("_", "-"): name for name in names}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with the discovered subcommands.

    Args:
        only: Register just this subcommand (None: all of them).
    """
    parser = argparse.ArgumentParser(
        prog="terramind", description="TerraMind for Earth observation: inspect, tokenize, generate, train."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command, module_name in command_modules().items():
        if only is not None and command != only:
            continue
        register = getattr(importlib.import_module(f"terramind.cli.{module_name}"), "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failed check, 2 usage or input error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    known = command_modules()
    only = argv[0] if argv and argv[0] in known else None
    args = build_parser(only).parse_args(argv)
    try:
        code: int = args.func(args)
    except TerraMindError as err:
        print(f"terramind {args.command}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"terramind {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `terramind info | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
