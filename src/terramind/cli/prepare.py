"""``terramind prepare``: GeoTIFF folders (one per modality, like ``examples/``) -> WebDataset shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from terramind.cli import _args
from terramind.core.errors import InputError
from terramind.core.optional import require


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` subcommand."""
    p = sub.add_parser(
        "prepare",
        help="write training shards from co-registered GeoTIFF folders",
        description="Turn SRC/<MODALITY>/<tile>.tif (same tile names across modalities) into WebDataset "
        "shards, one sample per tile, optionally with pre-computed token ids.",
    )
    p.add_argument(
        "--src", required=True, type=_input_folder, help="folder of modality folders (S2L2A/, DEM/, ...)"
    )
    _args.add_output(p, "output folder for shard-NNNNNN.tar (created if missing)", folder=True)
    _args.deprecated(p, "--out", "-o/--output", "output", type=Path)
    p.add_argument(
        "--shard-size", type=_args.positive_int, default=1000, help="samples per shard (default 1000)"
    )
    p.add_argument("--exclude", nargs="*", default=[], metavar="TILE", help="tile names to leave out")
    p.add_argument(
        "--new-modality", nargs="*", default=[], metavar="NAME", help="folders of sensors not in the catalog"
    )
    p.add_argument(
        "--tokenize",
        nargs="*",
        default=[],
        metavar="MOD=RUN_DIR",
        help="store token ids of MOD computed by the tokenizer trained in RUN_DIR (train-tokenizer output)",
    )
    _args.add_overwrite(p)  # an existing shard set is replaced whole, never merged with
    _args.add_sensors(p)
    p.set_defaults(func=run)


def _input_folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {what}: give the folder holding one folder per modality")
    return path


def run(args: argparse.Namespace) -> int:
    """Write the shards and print their paths."""
    for module in ("terramind.data.shards", "terramind.train.tokenizer"):  # names a missing extra in one line
        require(module, "train")
    from terramind.data.shards import write_shards
    from terramind.train.tokenizer import load_trained_tokenizer, tokenize_function

    tokenizers = {}
    for item in args.tokenize:
        modality, sep, folder = item.partition("=")
        if not sep:
            raise InputError(f"--tokenize takes MOD=RUN_DIR, got {item!r}")
        tokenizers[modality] = tokenize_function(load_trained_tokenizer(folder))
    paths = write_shards(
        args.src,
        args.output,
        shard_size=args.shard_size,
        tokenizers=tokenizers,
        exclude=args.exclude,
        new_modalities=args.new_modality,
        overwrite=args.overwrite,
    )
    for path in paths:
        print(path)
    return 0
