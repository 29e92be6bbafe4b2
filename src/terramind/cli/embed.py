"""``terramind embed --input S2L2A=DIR [--input S1RTC=DIR] --output emb.npy``: per-tile embeddings.

Each input is a GeoTIFF or a folder of GeoTIFFs; folders are matched by file name across modalities.
Tiles are standardised with the catalog statistics and embedded by the TerraMind encoder; the output holds
one mean-pooled vector per tile (``--pooling tokens`` keeps every token) with the tile names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from terramind.api.models import create_backbone
from terramind.cli._args import parse_inputs
from terramind.core.errors import InputError
from terramind.core.files import check_output_path
from terramind.data.tiles import check_tiles, match_files, modality_inputs
from terramind.evaluate.embeddings import embed_files, write_embeddings


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``embed`` subcommand."""
    p = sub.add_parser(
        "embed",
        help="write per-tile embeddings (mean-pooled or per token) as .npy or .parquet",
        description="Embed GeoTIFF tiles with the TerraMind encoder; writes the array and the tile names.",
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="MODALITY=PATH",
        help="a GeoTIFF or a folder of them per modality (repeat for several modalities)",
    )
    p.add_argument("--output", required=True, type=Path, help="emb.npy (+ emb.names.txt) or emb.parquet")
    p.add_argument("--model", default="terramind_v1_base", help="model size (default terramind_v1_base)")
    p.add_argument("--weights", default="hub", help="'hub' (official, default), a checkpoint path, or 'none'")
    p.add_argument("--pooling", choices=["mean", "tokens"], default="mean", help="mean over tokens or all")
    p.add_argument("--layer", type=int, default=-1, help="encoder block to read (default the last)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def tile_files(inputs: dict[str, Path]) -> dict[str, dict[str, Path]]:
    """Tile name -> modality -> file, from single files or folders matched by name."""
    kinds = {p.is_dir() for p in inputs.values()}
    if kinds == {True}:
        return match_files(inputs)
    if kinds == {False}:
        missing = [str(p) for p in inputs.values() if not p.is_file()]
        if missing:
            raise InputError(f"input file(s) {missing} do not exist")
        return {next(iter(inputs.values())).stem: dict(inputs)}
    raise InputError("give either one file per modality or one folder per modality, not a mix")


def run(args: argparse.Namespace) -> int:
    """Embed the tiles and write the output."""
    check_output_path(args.output, overwrite=args.overwrite)
    inputs = parse_inputs(args.input)
    mods = modality_inputs(list(inputs), {}, {}, {}, {})
    files, _ = check_tiles(tile_files(inputs), mods)  # every tile's files readable and on one grid
    weights = None if args.weights == "none" else args.weights
    backbone = create_backbone(args.model, list(inputs), weights=weights)
    array = embed_files(
        backbone,
        list(files.values()),
        mods,
        pooling=args.pooling,
        layer=args.layer,
        batch_size=args.batch_size,
    )
    write_embeddings(args.output, list(files), array, overwrite=args.overwrite)
    print(f"wrote {array.shape} embeddings of {len(files)} tile(s) to {args.output}")
    return 0
