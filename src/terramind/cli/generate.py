"""``terramind generate``: any-to-any generation over whole GeoTIFF scenes.

Example::

    terramind generate --input S2L2A=examples/S2L2A/38D_378R_2_3.tif --to LULC,S1RTC,DEM -o out/ --png

Writes one georeferenced GeoTIFF per output (LULC as uint8 class ids with a colour table, others float32 in
physical units, nodata -9999) and optional PNG quicklooks. Scenes of any size are tiled with overlap and
blended; an interrupted run resumes when the same command is repeated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from terramind.api import generation as api_generation
from terramind.cli import _args
from terramind.core.errors import ModalityError, OutputError
from terramind.core.files import output_folder
from terramind.core.lock import folder_lock
from terramind.generation.generate import check_modalities
from terramind.generation.options import GenerationOptions
from terramind.generation.scene import generate_scene, generator_digest, generator_tile_fn
from terramind.modalities import get_modality
from terramind.scene import WORK_DIR, SceneOutput, TileLayout, fill_values, scan_scene, tqdm_progress
from terramind.scene.quicklook import write_quicklook
from terramind.scene.stac_item import item_path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``generate`` subcommand."""
    p = sub.add_parser(
        "generate",
        help="generate modalities (LULC, S1RTC, DEM, ...) from GeoTIFF inputs, tiled over whole scenes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _args.add_scene_inputs(p)
    _args.add_output(p, "output folder (created if missing)", folder=True)
    _args.deprecated(p, "--out", "-o/--output", "output", type=Path)
    _args.add_generation_options(p)
    _args.add_grid(p)
    _args.add_resampling(p)
    _args.add_stac(p)
    _args.add_batch_size(p)
    _args.add_device(p)
    p.add_argument("--png", action="store_true", help="also write PNG quicklooks")
    _args.add_overwrite(p)
    _args.add_check(p, plan)
    p.set_defaults(func=run)


def plan(args: argparse.Namespace) -> None:
    """Check the modalities, the input files and the outputs before anything is loaded or written.

    Sets ``args.outputs``: one :class:`SceneOutput` per generated modality.
    """
    inputs: dict[str, Path] = args.input
    check_modalities(list(inputs), args.to)
    for name in [*inputs, *args.to]:
        if not get_modality(name).is_image:
            raise ModalityError(f"{name} is not an image: scene generation takes and writes images only")
    _args.apply_product_offsets(args)
    # every window read and checked before the weights load; warps and unit conversions are said once
    args.georef = scan_scene(inputs, grid=args.grid, resampling=args.resampling, say=_args.note)
    outputs = [SceneOutput.for_modality(n, args.output / f"{n}.tif") for n in args.to]
    files = [o.path for o in outputs] + ([o.path.with_suffix(".png") for o in outputs] if args.png else [])
    files += [item_path(args.output, folder=True)] if args.stac else []
    for path in files:
        if path.is_dir():
            raise OutputError(f"output {str(path)!r} is a folder: move it away or choose another --output")
        if path.exists() and not args.overwrite:
            raise OutputError(f"output file {str(path)!r} exists: pass --overwrite to replace it")
    args.outputs = outputs
    args.options = options_from_args(args)  # an out-of-range value fails here, before the weights load


def options_from_args(args: argparse.Namespace) -> GenerationOptions:
    """Build the decoding options of the command line (the one place that does)."""
    return GenerationOptions(
        strategy=args.strategy, steps=args.steps, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, chain=not args.no_chain, diffusion_steps=args.diffusion_steps,
        precision=args.precision, compile=args.compile,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Generate the requested outputs (all arguments were checked by :func:`plan`); returns the exit code."""
    # a second run into this folder stops now, before loading weights; a run that fails before writing
    # anything (bad weights, Ctrl-C) leaves no empty output folder behind
    with output_folder(args.output), folder_lock(args.output):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    inputs, outputs, options = args.input, args.outputs, args.options
    tok_weights = _args.tokenizer_weights(args)
    if args.weights == "random" or tok_weights == "random":
        _args.note("running with RANDOM (untrained) weights: the outputs only exercise the pipeline and "
                   "carry no information")  # fmt: skip
    generator = api_generation.create_generator(
        args.model, inputs=list(inputs), outputs=[o.modality for o in outputs],
        weights=_args.library_weights(args.weights), tokenizer_weights=_args.library_weights(tok_weights),
    )  # fmt: skip
    generator.to(args.device)
    settings = {
        "model": args.model, "weights": args.weights, "tokenizers": tok_weights, "seed": args.seed,
        "offset": args.offset, "grid": args.grid, "resampling": args.resampling, **options.as_dict(),
    }  # fmt: skip
    # decoders stay resident when there is more than one tile batch; one batch keeps one decoder at a time
    layout = TileLayout(args.georef.height, args.georef.width, args.tile, args.overlap)
    keep = layout.num_batches(args.batch_size) > 1
    if keep:  # before the weights digest, which would otherwise read every decoder once more
        generator.keep_loaded()
    tile_fn = generator_tile_fn(
        generator, outputs, options, seed=args.seed, offset=args.offset, keep_decoders=keep
    )  # fmt: skip
    written = generate_scene(
        tile_fn, inputs, outputs, work_dir=args.output / WORK_DIR, tile=args.tile, overlap=args.overlap,
        batch=args.batch_size, fill=fill_values(list(inputs), args.offset), settings=settings,
        weights=generator_digest(generator), overwrite=args.overwrite, progress=tqdm_progress("generate"),
        grid=args.grid, resampling=args.resampling,
    )  # fmt: skip
    for out, path in zip(outputs, written, strict=True):
        print(f"wrote {path}")
        if args.png:
            png = write_quicklook(
                path, path.with_suffix(".png"), out.modality, title=f"{out.modality} (generated)"
            )
            print(f"wrote {png}")
    if args.stac:
        item = item_path(args.output, folder=True)
        _args.write_stac(args, item, written, args.georef, {**settings, "outputs": list(args.to)})
    return 0
