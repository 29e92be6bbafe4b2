"""``terramind reconstruct``: tokenize a GeoTIFF tile, decode the tokens, write the result and score it.

Example::

    terramind reconstruct examples/DEM/38D_378R_2_3.tif -m DEM --diffusion-steps 10 -o rec.tif --png rec.png

Reports PSNR and SSIM of the reconstruction in physical units (data range = the input's value range);
LULC reports pixel accuracy. The output GeoTIFF is on the input's grid: float32 physical units, LULC as uint8
class ids with the class colour table.

Tiles of any size are accepted: sides that are not multiples of the tokenizer's grid (16 px; 32 px or more
for a diffusion decoder) are mirror-padded at the bottom and right and the reconstruction is cropped back, so
the output always has the input's size and grid.

Nodata pixels of the input are filled with the modality's mean before tokenizing (never read as data), get
the input's nodata value back in the output, and are left out of every score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from terramind.build.precision import autocast
from terramind.cli import _args
from terramind.cli.tokenize import add_common, load_tokenizer, read_tile, to_model_input
from terramind.data.geotiff import write_raster
from terramind.data.padding import crop_to
from terramind.evaluate.reconstruction import reconstruction_scores
from terramind.modalities import ModalitySpec, destandardize, get_modality
from terramind.viz import save_quicklook


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``reconstruct`` subcommand."""
    p = sub.add_parser(
        "reconstruct",
        help="tokenize and decode a GeoTIFF tile; write the reconstruction and report PSNR/SSIM",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    _args.add_output(p, "output GeoTIFF")
    p.add_argument("--png", type=Path, default=None, help="also write a quicklook PNG of the reconstruction")
    _args.add_check(p, lambda args: _args.check_output_file(args.png, overwrite=args.overwrite))
    _args.add_diffusion_steps(p, old_steps=True)
    _args.add_seed(p)
    _args.add_precision(p)
    _args.add_json(p)
    p.set_defaults(func=run)


def _colormap(spec: ModalitySpec) -> dict[int, tuple[int, int, int]]:
    classes = spec.classes or ()
    return {c.id: (int(c.colour[1:3], 16), int(c.colour[3:5], 16), int(c.colour[5:7], 16)) for c in classes}


def _class_nodata(nodata: float | None) -> int:
    """Class id written where the input was nodata: its nodata when uint8 holds it, else 0 ("no data")."""
    return int(nodata) if nodata is not None and float(nodata).is_integer() and 0 <= nodata <= 255 else 0


def run(args: argparse.Namespace) -> int:
    """Reconstruct one tile, write it (and a quicklook), print the scores."""
    spec = get_modality(args.modality)
    offset = args.offset.get(spec.name, 0.0)
    raster = read_tile(args.file, spec.name)
    tok = load_tokenizer(spec.name, _args.tokenizer_weights(args), args.device)
    x = to_model_input(raster, spec.name, offset, args.device, multiple=tok.side_multiple)
    generator = torch.Generator().manual_seed(args.seed)
    with torch.inference_mode():
        ids = tok.encode(x)
        with autocast(args.precision, args.device):
            out = tok.decode(ids, steps=args.diffusion_steps, generator=generator)[0].float().cpu().numpy()
    out = crop_to(out, raster.georef.height, raster.georef.width)  # undo the padding of to_model_input
    valid = raster.valid
    if spec.classes is not None:
        rec = out.argmax(axis=0)[None].astype(np.uint8)
        rec = np.where(valid, rec, _class_nodata(raster.georef.nodata))
        write_raster(args.output, rec, raster.georef, colormap=_colormap(spec), overwrite=args.overwrite)
    else:
        rec = destandardize(spec, out, offset=offset).astype(np.float32)
        nodata = raster.georef.nodata
        rec = np.where(valid, rec, np.float32(np.nan if nodata is None else nodata))
        write_raster(args.output, rec, raster.georef, dtype="float32", overwrite=args.overwrite)
    if args.png is not None:
        save_quicklook(args.png, spec, np.where(valid, rec, np.nan) if spec.classes is None else rec)
    result = reconstruction_scores(spec, raster.data, rec, valid)
    if args.json:
        print(
            json.dumps({"file": str(args.file), "modality": spec.name, "output": str(args.output), **result})
        )
        return 0
    print(f"{args.file}: {spec.name} reconstructed with {tok.codebook_size}-token codebook -> {args.output}")
    print("  " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    return 0
