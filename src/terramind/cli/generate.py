"""``terramind generate``: any-to-any generation over whole GeoTIFF scenes.

Example::

    terramind generate --input S2L2A=examples/S2L2A/38D_378R_2_3.tif --to LULC,S1RTC,DEM --out out/ --png

Writes one georeferenced GeoTIFF per output (LULC as uint8 class ids with a colour table, others float32 in
physical units, nodata -9999) and optional PNG quicklooks. Scenes of any size are tiled with overlap and
blended; an interrupted run resumes when the same command is repeated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import torch
from tqdm import tqdm

from terramind.api import generation as api_generation
from terramind.cli._args import parse_pairs
from terramind.core.errors import InputError, ModalityError, OutputError
from terramind.core.files import check_output_dir
from terramind.core.lock import folder_lock
from terramind.generation.generate import check_modalities
from terramind.generation.options import GenerationOptions
from terramind.generation.scene import (
    WORK_DIR,
    SceneOutput,
    check_scene_inputs,
    fill_values,
    generate_scene,
    generator_digest,
    generator_tile_fn,
)
from terramind.generation.strategies import STRATEGIES
from terramind.generation.tiling import TileLayout
from terramind.modalities import get_modality
from terramind.viz import save_quicklook

QUICKLOOK_PIXELS = 1024  # longest side of a quicklook; larger scenes are read decimated


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``generate`` subcommand."""
    p = sub.add_parser(
        "generate",
        help="generate modalities (LULC, S1RTC, DEM, ...) from GeoTIFF inputs, tiled over whole scenes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="MOD=PATH",
        help="an input modality and its GeoTIFF (repeat for several; all on one grid)",
    )
    p.add_argument("--to", required=True, metavar="MOD[,MOD...]", help="outputs to generate, in order")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument("--model", default="terramind_v1_base", help="model size (default terramind_v1_base)")
    p.add_argument("--weights", default="hub", help="model weights: hub (default), a file, or 'random'")
    p.add_argument(
        "--tokenizer-weights",
        default=None,
        help="tokenizer weights: hub, a folder of release files, or 'random' (default: as --weights)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of all sampling (default 0)")
    p.add_argument("--steps", type=int, default=1, help="token decoding steps per output (default 1)")
    p.add_argument("--strategy", default="roar", choices=sorted(STRATEGIES), help="decoding strategy")
    p.add_argument("--diffusion-steps", type=int, default=10, help="DDIM steps of diffusion decoders")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.8, help="nucleus sampling threshold (0 = off)")
    p.add_argument("--top-k", type=int, default=0, help="top-k sampling (0 = off)")
    p.add_argument(
        "--offset",
        action="append",
        default=[],
        metavar="MOD=VALUE",
        help="add VALUE to a modality's mean (S2 products with the +1000 DN offset: S2L2A=1000)",
    )
    p.add_argument("--no-chain", action="store_true", help="do not feed generated outputs to later outputs")
    p.add_argument("--tile", type=int, default=224, help="tile side in pixels (multiple of 16)")
    p.add_argument("--overlap", type=int, default=32, help="overlap of neighbouring tiles in pixels")
    p.add_argument("--batch", type=int, default=4, help="tiles per model call")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster, slightly different)")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--png", action="store_true", help="also write PNG quicklooks")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)  # fmt: skip


def plan(args: argparse.Namespace) -> tuple[dict[str, Path], list[SceneOutput]]:
    """Check every argument and file before anything is loaded or written."""
    inputs = {k: Path(v) for k, v in parse_pairs(args.input, "--input").items()}
    names = [get_modality(m.strip()).name for m in args.to.split(",") if m.strip()]
    check_modalities(list(inputs), names)
    for name in [*inputs, *names]:
        if not get_modality(name).is_image:
            raise ModalityError(f"{name} is not an image: scene generation takes and writes images only")
    if args.tile % 16 or args.tile <= 0:
        raise InputError(f"--tile must be a positive multiple of 16, got {args.tile}")
    check_scene_inputs(inputs)
    check_output_dir(args.out)
    outputs = [SceneOutput.for_modality(n, args.out / f"{n}.tif") for n in names]
    files = [o.path for o in outputs] + ([o.path.with_suffix(".png") for o in outputs] if args.png else [])
    for path in files:
        if path.exists() and not args.overwrite:
            raise OutputError(f"output file {str(path)!r} exists: pass --overwrite to replace it")
        if path.is_dir():
            raise OutputError(f"output {str(path)!r} is a folder: move it away or choose another --out")
    return inputs, outputs


def options_from_args(args: argparse.Namespace) -> GenerationOptions:
    """Build the decoding options of the command line (an out-of-range value fails here)."""
    return GenerationOptions(
        strategy=args.strategy, steps=args.steps, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, chain=not args.no_chain, diffusion_steps=args.diffusion_steps,
        precision="bf16" if args.bf16 else "fp32",
    )  # fmt: skip


def _weights(value: str | None) -> str | None:
    return None if value is None or value == "random" else value


def _progress(total: int, done: int) -> Callable[[int], None]:
    """Make a tqdm bar (tiles, rate, ETA) that starts at the tiles a resumed run already has."""
    bar = tqdm(total=total, initial=done, unit="tile", desc="generate", dynamic_ncols=True)

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return update


def run(args: argparse.Namespace) -> int:
    """Generate the requested outputs; returns the exit code."""
    inputs, outputs = plan(args)
    options = options_from_args(args)  # before the weights load
    offsets = {k: float(v) for k, v in parse_pairs(args.offset, "--offset").items()}
    args.out.mkdir(parents=True, exist_ok=True)
    with folder_lock(args.out):  # a second run into this folder stops now, before loading weights
        return _run(args, inputs, outputs, offsets, options)


def _run(
    args: argparse.Namespace,
    inputs: dict[str, Path],
    outputs: list[SceneOutput],
    offsets: dict[str, float],
    options: GenerationOptions,
) -> int:
    tok_weights = args.weights if args.tokenizer_weights is None else args.tokenizer_weights
    if args.weights == "random" or tok_weights == "random":
        print("terramind generate: note: running with RANDOM (untrained) weights: the outputs only exercise "
              "the pipeline and carry no information", file=sys.stderr)  # fmt: skip
    generator = api_generation.create_generator(
        args.model, inputs=list(inputs), outputs=[o.modality for o in outputs],
        weights=_weights(args.weights), tokenizer_weights=_weights(tok_weights),
    )  # fmt: skip
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    generator.to(device)
    settings = {
        "model": args.model, "weights": args.weights, "tokenizers": tok_weights, "seed": args.seed,
        "offset": offsets, **options.as_dict(),
    }  # fmt: skip
    georef = check_scene_inputs(inputs)
    # decoders stay resident when there is more than one tile batch; one batch keeps one decoder at a time
    keep = TileLayout(georef.height, georef.width, args.tile, args.overlap).num_batches(args.batch) > 1
    tile_fn = generator_tile_fn(
        generator, outputs, options, seed=args.seed, offset=offsets, keep_decoders=keep
    )
    written = generate_scene(
        tile_fn, inputs, outputs, work_dir=args.out / WORK_DIR,
        tile=args.tile, overlap=args.overlap, batch=args.batch, fill=fill_values(list(inputs), offsets),
        settings=settings, weights=generator_digest(generator), overwrite=args.overwrite, progress=_progress,
    )  # fmt: skip
    for out, path in zip(outputs, written, strict=True):
        print(f"wrote {path}")
        if args.png:
            print(f"wrote {write_quicklook(out, path.with_suffix('.png'))}")
    return 0


def write_quicklook(out: SceneOutput, png: Path) -> Path:
    """Render a PNG of an output GeoTIFF (decimated to at most 1024 px; nodata shown as gaps)."""
    with rasterio.open(out.path) as src:
        scale = max(1.0, max(src.width, src.height) / QUICKLOOK_PIXELS)
        shape = (src.count, max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        data = src.read(out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
    if not out.categorical:
        data = np.where(data == out.nodata, np.nan, data.astype(np.float32))
    return save_quicklook(png, out.modality, data, title=f"{out.modality} (generated)")
