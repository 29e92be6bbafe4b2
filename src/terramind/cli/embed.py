"""``terramind embed --input S2L2A=DIR [--input S1RTC=DIR] -o emb.npy``: per-tile embeddings.

Each input is a GeoTIFF or a folder of GeoTIFFs; folders are matched by file name across modalities.
Tiles are standardised with the catalog statistics and embedded by the TerraMind encoder; the output holds
one mean-pooled vector per tile (``--pooling tokens`` keeps every token) with the tile names.

Tiles of any size are accepted: sides that are not multiples of 16 are mirror-padded at the bottom and right
(a 120 px BigEarthNet patch becomes 128 px, 8x8 tokens); ``--resize 224`` instead resamples every tile to
224 x 224 (bilinear; nearest for class maps), the protocol that upsamples small patches to the pretraining
size. S2L1C tiles (13 bands) are the paper's few-shot input: ``--input S2L1C=DIR``.

``--scene`` embeds one scene of any size instead (any input the scene engine reads: GeoTIFF/COG, URL,
band-files folder, STAC item) as an *embedding product*: one vector per 16 x 16 px patch, or per ``--pool N``
x N patches, on the scene's grid, tiled with overlap and blended like ``generate``, resumable. ``--format
cog`` writes a GeoTIFF with one band per dimension, ``parquet`` a GeoParquet table (one row per cell: its
name ``rRRRRR_cCCCCC``, row, col, WKB polygon and vector; ``terramind fewshot`` reads it as it is), ``both``
writes the two beside each other::

    terramind embed --scene --input S2L2A=scene.tif -o emb.tif --format both --pool 2

``--precision`` (default ``auto``: bf16 where the hardware multiplies bf16 natively, else fp32) is the
encoder's precision, as in ``generate``; ``--precision fp32`` is the exact path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from terramind.cli import _args
from terramind.core.errors import InputError
from terramind.core.optional import require


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``embed`` subcommand."""
    p = sub.add_parser(
        "embed",
        help="write per-tile embeddings (mean-pooled or per token) as .npy or .parquet",
        description="Embed GeoTIFF tiles with the TerraMind encoder; writes the array and the tile names. "
        "Each --input is a GeoTIFF or a folder of them (folders are matched by tile name).",
    )
    _args.add_inputs(p)
    _args.add_output(p, "emb.npy (+ emb.names.txt) or emb.parquet (needs terramind[embed])")
    _args.add_model(p)
    _args.add_weights(p, tokenizers=False)
    p.add_argument("--pooling", choices=["mean", "tokens"], default="mean", help="mean over tokens or all")
    p.add_argument(
        "--resize",
        type=_args.tile_size,
        default=None,
        metavar="PX",
        help="resample every tile to PX x PX (bilinear; nearest for class maps), e.g. 224 for small "
        "patches; default: mirror-pad sides to a multiple of 16",
    )
    _args.add_offsets(p)
    _args.add_layer(p)
    _args.add_batch_size(p)
    _args.add_device(p)
    _args.add_precision(p)
    _args.add_overwrite(p)
    _args.add_skip_bad(p)
    _args.add_check(p, _check_parquet)
    add_scene_options(p)
    p.set_defaults(func=run)


def _check_parquet(args: argparse.Namespace) -> None:
    if args.output.suffix == ".parquet":
        require("pyarrow", "embed")


def tile_files(inputs: dict[str, Path], *, skip_bad: bool = False) -> dict[str, dict[str, Path]]:
    """Tile name -> modality -> file, from single files or folders matched by name."""
    kinds = {p.is_dir() for p in inputs.values()}
    if kinds == {True}:
        from terramind.data.tiles import match_files

        return match_files(inputs, skip_bad=skip_bad)
    if kinds == {False}:
        missing = [str(p) for p in inputs.values() if not p.is_file()]
        if missing:
            raise InputError(f"input file(s) {missing} do not exist")
        return {next(iter(inputs.values())).stem: dict(inputs)}
    raise InputError("give either one file per modality or one folder per modality, not a mix")


def run(args: argparse.Namespace) -> int:
    """Embed the tiles (or, with ``--scene``, a whole scene) and write the output."""
    if args.scene:
        return run_scene(args)
    from torch.utils.data import DataLoader

    from terramind.api.models import create_backbone
    from terramind.data.tiles import GeoTiffDataset, check_tiles, modality_inputs
    from terramind.evaluate.embeddings import embed_batches, fit_inputs, write_embeddings

    inputs: dict[str, Path] = args.input
    _args.apply_product_offsets(args)  # the +1000 DN offset the product metadata implies; --offset wins
    specs = modality_inputs(list(inputs), {}, {}, args.offset, {})
    # every tile's files readable and on one grid, before the model loads
    files, _ = check_tiles(tile_files(inputs, skip_bad=args.skip_bad), specs, skip_bad=args.skip_bad)
    loader = DataLoader(GeoTiffDataset(list(files.values()), specs), batch_size=args.batch_size)
    backbone = create_backbone(args.model, list(inputs), weights=_args.library_weights(args.weights))
    backbone.to(args.device)
    categorical = [s.name for s in specs if s.record.classes is not None]
    batches = (
        {
            k: v.to(args.device)
            for k, v in fit_inputs(batch["inputs"], resize=args.resize, categorical=categorical).items()
        }
        for batch in loader
    )
    array = embed_batches(backbone, batches, pooling=args.pooling, layer=args.layer, precision=args.precision)
    write_embeddings(args.output, list(files), array, overwrite=args.overwrite)
    print(f"wrote {array.shape} embeddings of {len(files)} tile(s) to {args.output}")
    return 0


FORMATS = {"cog": ("cog",), "parquet": ("parquet",), "both": ("cog", "parquet")}


def add_scene_options(p: argparse.ArgumentParser) -> None:
    """``--scene``, ``--pool``, ``--format`` and the tiling of embedding products."""
    p.add_argument(
        "--scene",
        action="store_true",
        help="embed one whole scene of any size as an embedding product (a vector per patch on its grid)",
    )
    add_product_options(p)
    _args.add_tiling(p)
    _args.add_check(p, _check_scene)


def add_product_options(p: argparse.ArgumentParser) -> None:
    """``--pool`` and ``--format`` of embedding products (``embed --scene``, ``batch embed``)."""
    p.add_argument(
        "--pool",
        type=_args.positive_int,
        default=1,
        metavar="N",
        help="embedding products: one vector per N x N patches of 16 px (default 1: per patch)",
    )
    p.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default="cog",
        help="embedding products: cog (GeoTIFF, a band per dimension), parquet (GeoParquet, a row per cell) "
        "or both",
    )


def _check_scene(args: argparse.Namespace) -> None:
    if not args.scene:
        given = [f for f, v in (("--pool", args.pool != 1), ("--format", args.format != "cog")) if v]
        if given:
            raise InputError(f"{', '.join(given)}: only with --scene (embedding products)")
        return
    if args.pooling != "mean" or args.resize is not None or args.skip_bad:
        raise InputError("--pooling, --resize and --skip-bad apply to tiles, not to --scene")
    wanted = [_suffix(f) for f in FORMATS[args.format]]
    if args.output.suffix not in wanted:
        raise InputError(
            f"--format {args.format} writes {' and '.join(wanted)}: give -o ending in {' or '.join(wanted)}, "
            f"got {args.output.name!r}"
        )
    if "parquet" in FORMATS[args.format]:
        require("pyarrow", "embed")
        require("pyproj", "embed")
    for path in scene_paths(args.output, args.format):
        _args.check_output_file(path, overwrite=args.overwrite)


def _suffix(fmt: str) -> str:
    from terramind.evaluate.embeddings import PRODUCT_SUFFIXES

    return PRODUCT_SUFFIXES[fmt]


def scene_paths(output: Path, fmt: str) -> list[Path]:
    """Return the files an embedding product of ``--format fmt`` at ``-o output`` is written to."""
    return [output.with_suffix(_suffix(f)) for f in FORMATS[fmt]]


def run_scene(args: argparse.Namespace) -> int:
    """``embed --scene``: check the scene, load the backbone, write the embedding product."""
    from terramind.api.models import create_backbone
    from terramind.evaluate.embeddings import embed_scene
    from terramind.scene import scan_scene, tqdm_progress

    inputs: dict[str, Path] = args.input
    scan_scene(inputs)  # every window read and checked before the weights load
    backbone = create_backbone(args.model, list(inputs), weights=_args.library_weights(args.weights))
    backbone.to(args.device)
    written, _ = embed_scene(
        backbone, inputs, args.output, formats=FORMATS[args.format], pool=args.pool, layer=args.layer,
        tile=args.tile, overlap=args.overlap, batch=args.batch_size, offset=getattr(args, "offset", None),
        settings={"model": args.model, "weights": args.weights}, overwrite=args.overwrite,
        progress=tqdm_progress("embed"), precision=args.precision,
    )  # fmt: skip
    for path in written:
        print(f"wrote {path}")
    return 0
