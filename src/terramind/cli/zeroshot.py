"""``terramind zeroshot water --input S2L1C=chip.tif [--input S1GRD=s1.tif] -o water.tif [--label mask.tif]``.

Zero-shot water mapping: TerraMind generates LULC from the scene (tiled, any size) and the water class
(``--flooded-vegetation``: plus flooded vegetation) becomes the mask. With ``--label`` the mask is scored
(IoU, precision, recall, F1 of water over the labelled pixels).

The scene is any non-empty subset of S2L1C, S2L2A, S1GRD and S1RTC, each in any form ``generate`` reads
(GeoTIFF/COG or URL, band files, STAC item); inputs on other grids are warped onto the first input's (or
``--grid MOD``). The paper evaluates on Sen1Floods11, which ships S2 L1C (13 bands) and S1 GRD chips
(``--input S2L1C=... --input S1GRD=...``). The +1000 DN offset is applied when the product's metadata says
so (``--offset`` overrides); S1 in linear power is converted to dB.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from terramind.api.generation import create_generator
from terramind.cli import _args
from terramind.core.errors import InputError
from terramind.core.files import check_output_path
from terramind.core.lock import folder_lock
from terramind.data.geotiff import GeoRef, open_georef, read_raster
from terramind.evaluate.zeroshot import binary_scores, lulc_path, map_water, read_water_label
from terramind.generation.scene import generator_digest, generator_tile_fn
from terramind.scene import SceneOutput, TileLayout, scan_scene, tqdm_progress
from terramind.scene.stac_item import item_path

INPUTS = ("S2L1C", "S2L2A", "S1GRD", "S1RTC")  # optical and radar inputs the generator takes


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``zeroshot`` subcommand (with its task ``water``)."""
    parser = sub.add_parser("zeroshot", help="zero-shot tasks from generated modalities (water mapping)")
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    p = tasks.add_parser("water", help="water mask from generated LULC; scored against --label if given")
    _args.add_scene_inputs(p)
    _args.add_output(p, "water mask GeoTIFF (1 water, 0 not, 255 none)")
    p.add_argument("--label", type=Path, help="reference mask: 1 water, 0 not, -1/255/nodata unlabelled")
    _args.add_water_options(p)
    _args.add_offsets(p)
    _args.add_tiling(p)
    _args.add_grid(p)
    _args.add_resampling(p)
    _args.add_stac(p)
    _args.add_batch_size(p)
    _args.add_device(p)
    p.add_argument("--keep-lulc", action="store_true", help="also keep the generated LULC map")
    _args.add_json(p)
    _args.add_overwrite(p)
    _args.add_check(p, _check_inputs)
    p.set_defaults(func=run)


def _check_inputs(args: argparse.Namespace) -> None:
    others = [name for name in args.input if name not in INPUTS]
    if others:
        raise InputError(
            f"--input {', '.join(others)}: zeroshot water reads {', '.join(INPUTS[:-1])} or {INPUTS[-1]} "
            f"(one or several on one grid, e.g. S2L2A=PATH or S2L1C=PATH --input S1GRD=PATH)"
        )
    if args.label is not None and not args.label.is_file():
        what = "is a folder" if args.label.is_dir() else "does not exist"
        raise InputError(f"label {str(args.label)!r} {what}: give the reference mask GeoTIFF")


def _check_grid(georef: GeoRef, label: Path) -> None:
    problem = georef.same_grid(open_georef(label))
    if problem:
        raise InputError(f"label {str(label)!r} is not on the scene's grid: {problem}")


def run(args: argparse.Namespace) -> int:
    """Generate LULC, write the water mask and report scores against the label."""
    inputs: dict[str, Path] = args.input
    _args.apply_product_offsets(args)
    # every window read and checked before gigabytes of weights load; warps and conversions said once
    scene = scan_scene(inputs, grid=args.grid, resampling=args.resampling, say=_args.note)
    if args.keep_lulc:
        check_output_path(lulc_path(args.output), overwrite=args.overwrite)
    if args.stac:
        check_output_path(item_path(args.output, folder=False), overwrite=args.overwrite)
    truth = read_water_label(args.label) if args.label else None  # fail on a bad label before the model
    if args.label:
        _check_grid(scene, args.label)
    with folder_lock(args.output.parent):  # a second run into this folder stops now, before loading weights
        path = _generate(args, inputs, scene)
    print(f"wrote {path}")
    if args.keep_lulc:
        print(f"wrote {lulc_path(args.output)}")
    if args.stac:
        written = [path, *([lulc_path(args.output)] if args.keep_lulc else [])]
        settings = {"model": args.model, "weights": args.weights, "seed": args.seed, "offset": args.offset,
                    "flooded_vegetation": args.flooded_vegetation, "outputs": ["water"]}  # fmt: skip
        _args.write_stac(args, item_path(args.output, folder=False), written, scene, settings)
    if truth is not None:
        scores = binary_scores(read_raster(path).data[0] == 1, *truth)
        print(json.dumps(scores.as_dict(), allow_nan=False) if args.json else str(scores))
    return 0


def _generate(args: argparse.Namespace, inputs: dict[str, Path], scene: GeoRef) -> Path:
    """Load the generator and write the water mask (under the output folder's lock)."""
    generator = create_generator(
        args.model,
        inputs=list(inputs),
        outputs=["LULC"],
        weights=_args.library_weights(args.weights),
        tokenizer_weights=_args.library_weights(_args.tokenizer_weights(args)),
    )
    generator.to(args.device)
    batches = TileLayout(scene.height, scene.width, args.tile, args.overlap).num_batches(args.batch_size)
    lulc_out = [SceneOutput.for_modality("LULC", args.output)]
    if batches > 1:  # before the weights digest, which would otherwise read the decoder once more
        generator.keep_loaded()
    lulc_fn = generator_tile_fn(
        generator, lulc_out, seed=args.seed, offset=args.offset, keep_decoders=batches > 1
    )
    settings = {"model": args.model, "weights": args.weights, "seed": args.seed}
    return map_water(
        lulc_fn,
        inputs,
        args.output,
        flooded_vegetation=args.flooded_vegetation,
        grid=args.grid,
        resampling=args.resampling,
        offset=args.offset,
        keep_lulc=args.keep_lulc,
        tile=args.tile,
        overlap=args.overlap,
        batch=args.batch_size,
        settings=settings,
        weights=generator_digest(generator),
        overwrite=args.overwrite,
        progress=tqdm_progress("zeroshot water"),
    )
