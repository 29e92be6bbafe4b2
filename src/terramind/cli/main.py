"""The ``terramind`` command: finds its subcommands and is the CLI's one error boundary.

Each module in this package that defines ``register(subparsers)`` contributes one subcommand, named after the
module (``train_tokenizer.py`` -> ``terramind train-tokenizer``); ``register`` adds a parser and sets ``func``
(taking the parsed namespace, returning an exit code). Discovery keeps this file free of a list that every new
subcommand would have to edit. Only the module of the command being run is imported; command modules import
heavy or optional libraries (Lightning, torchmetrics, webdataset) inside ``run``, so ``--help`` of every
command works in a base install.

Exit codes: 0 success; 1 a check that ran and failed (``inspect`` found validation errors); 2 a usage or
input error, printed as one line ``terramind CMD: error: ...`` (bad options, a ``TerraMindError``, a file
that is missing, unreadable, a folder where a file goes or the reverse, a full disk); 3 an internal error:
a bug in terramind, printed with its traceback and a request to report it; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import pkgutil
import sys
import traceback
from collections.abc import Sequence

from terramind.cli._args import Parser, UnknownOptionError, run_checks, sensor_records
from terramind.core.errors import TerraMindError
from terramind.modalities import using_catalog, with_sensors

USAGE_ERROR = 2
INTERNAL_ERROR = 3
INTERRUPTED = 130
# OSErrors a user causes with a path or a disk; others (EBADF, ENOMEM, ...) are reported as internal errors
USER_ERRNOS = frozenset(
    {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENOSPC, errno.EROFS,
     errno.EEXIST, errno.EDQUOT, errno.ENAMETOOLONG}
)  # fmt: skip


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
    parser = Parser(
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


def leaf_parsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable (sub)command's parser by its name (``"zeroshot water"``), walking nested subparsers."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix: parser}
    found: dict[str, argparse.ArgumentParser] = {}
    for name, child in subs[0].choices.items():
        found |= leaf_parsers(child, f"{prefix} {name}".strip())
    return found


def _leaf(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """Return the parser of the command that ``args`` selected."""
    while subs := [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]:
        parser = subs[0].choices[getattr(args, subs[0].dest)]
    return parser


def visible_options(parser: argparse.ArgumentParser) -> list[str]:
    """List the option strings a parser shows in its help (deprecated aliases are hidden)."""
    return [s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings]


def unknown_message(parser: argparse.ArgumentParser, options: Sequence[str]) -> str:
    """Explain unknown options: a close spelling, or the commands that have the option."""
    command = parser.prog.removeprefix("terramind ")
    flag = options[0]
    close = difflib.get_close_matches(
        flag.lstrip("-"), [o.lstrip("-") for o in visible_options(parser)], 1, 0.7
    )
    if close:
        return f"unrecognized argument {flag!r}: did you mean '--{close[0]}'?"
    parsers = leaf_parsers(build_parser())
    parsers["finetune scene"] = importlib.import_module("terramind.cli.finetune").scene_parser()
    others = [name for name, p in parsers.items() if flag in visible_options(p)]
    if others:
        return f"{command} has no {flag!r} option; commands that have it: {', '.join(others)}"
    return f"unrecognized argument {flag!r}"


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; usage errors exit through argparse (``SystemExit(2)``) with a one-line message."""
    known = command_modules()
    only = argv[0] if argv and argv[0] in known else None
    parser = build_parser(only)
    try:
        args, extra = parser.parse_known_args(argv)
    except UnknownOptionError as exc:
        exc.parser.error(unknown_message(exc.parser, exc.options))
    if extra:  # not options (those raised UnknownOptionError): stray values
        _leaf(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _os_error(err: OSError) -> str | None:
    """One line for an OSError a user can cause (naming the file), or None for anything else."""
    if type(err).__module__.startswith("rasterio"):  # RasterioIOError: unreadable or truncated raster
        return f"cannot read raster: {err}"
    if err.errno not in USER_ERRNOS:
        return None
    files = [str(f) for f in (err.filename, err.filename2) if f is not None]
    where = f": {' -> '.join(files)}" if files else ""
    return f"{err.strerror or err}{where}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see the module docstring).

    ``--sensor FILE`` records are registered first, in a catalog scoped to this call, so that parsing and
    the command both know the new sensors' names; the default catalog never changes.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        catalog = with_sensors(sensor_records(args_list))
    except TerraMindError as err:
        print(f"terramind: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    with using_catalog(catalog):
        return _main(args_list)


def _main(argv: list[str]) -> int:
    try:
        args = _parse(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    prog = f"terramind {args.command}"
    try:
        run_checks(args)
        code: int = args.func(args)
    except TerraMindError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except UnknownOptionError as exc:  # a command's own parser (finetune scene)
        print(f"{exc.parser.prog}: error: {unknown_message(exc.parser, exc.options)}", file=sys.stderr)
        return USAGE_ERROR
    except SystemExit as exc:  # a command's own parser: help or usage error
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `terramind info | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except OSError as err:
        message = _os_error(err)
        if message is None:
            return _internal(prog)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return USAGE_ERROR
    except Exception:
        return _internal(prog)
    return code


def _internal(prog: str) -> int:
    """Report a bug: the traceback, then one line asking for a report."""
    traceback.print_exc()
    print(
        f"{prog}: internal error: this is a bug in terramind, not in your input; please report it to the "
        "maintainers with the command line and the traceback above",
        file=sys.stderr,
    )
    return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
