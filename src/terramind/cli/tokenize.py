"""``terramind tokenize``: a GeoTIFF tile -> TerraMind token ids (``.npz``).

Example::

    terramind tokenize examples/S2L2A/38D_378R_2_3.tif --modality S2L2A -o tokens.npz
    terramind tokenize --input S2L2A=examples/S2L2A/38D_378R_2_3.tif -o tokens.npz   # the same

The archive holds ``ids`` (uint16, one id per 16x16 pixel patch), ``modality``, ``codebook_size`` and the
tile's georeference (``crs`` as WKT, ``transform`` of the pixel grid, ``width``, ``height``, ``patch_size``),
so token maps can be placed back on the map. Tiles of any size are accepted: sides that are not multiples of
16 are mirror-padded at the bottom and right, the token grid covers the padded tile
(``ceil(height / 16) x ceil(width / 16)``) and ``pad_bottom``/``pad_right`` record the padding in pixels
(``width``/``height`` stay the tile's own).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from terramind.api import tokenizers as api_tokenizers
from terramind.cli import _args
from terramind.core.errors import ModalityError
from terramind.core.files import atomic_path, verify_zip
from terramind.data.geotiff import Raster, read_raster
from terramind.data.padding import pad_to_multiple, padding_to_multiple
from terramind.modalities import get_modality, standardize
from terramind.modalities.tokens import PATCH_SIZE
from terramind.tokenizers import CoordsTokenizer, ImageTokenizer


def add_common(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``tokenize`` and ``reconstruct``: the tile, weights, offset, device, overwrite."""
    _args.add_tile_input(p)
    _args.add_weights(p)
    _args.add_offsets(p)
    _args.add_device(p)
    _args.add_overwrite(p)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``tokenize`` subcommand."""
    p = sub.add_parser(
        "tokenize",
        help="turn a GeoTIFF tile into TerraMind token ids (.npz)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    _args.add_output(p, "output .npz")
    p.set_defaults(func=run)


def load_tokenizer(modality: str, weights: str, device: str) -> ImageTokenizer:
    """Create the modality's image tokenizer; ``weights='random'`` is explicit and announced."""
    spec = get_modality(modality)
    if weights == "random":
        _args.note(f"{spec.name} tokenizer is randomly initialised (untrained): outputs are meaningless")
    tok = api_tokenizers.create_tokenizer(spec.name, weights=_args.library_weights(weights))
    if isinstance(tok, CoordsTokenizer):
        raise ModalityError(f"{spec.name} is not an image modality: tokenize takes GeoTIFF tiles")
    return tok.to(device)


def read_tile(path: Path, modality: str) -> Raster:
    """Read a tile checked against the modality's band count."""
    return read_raster(path, modality)


def to_model_input(
    raster: Raster, modality: str, offset: float, device: str, multiple: int = PATCH_SIZE
) -> torch.Tensor:
    """Standardized ``(1, C, H', W')`` float tensor (LULC: class ids ``(1, H', W')``), reflect-padded.

    Nodata pixels are never given to the tokenizer as data: they become the modality's mean (0 once
    standardized, the least informative value) or class 0 ("no data"), and their count is noted. A tile
    whose sides are not multiples of ``multiple`` is mirror-padded at the bottom and right
    (:func:`terramind.data.padding.pad_to_multiple`); crop outputs back to the raster's size.
    """
    spec = get_modality(modality)
    valid = raster.valid
    if not valid.all():
        fill = "class 0" if spec.classes is not None else f"the {spec.name} mean"
        _args.note(f"{int((~valid).sum())} nodata pixel(s) of {raster.path.name} filled with {fill}")
    if spec.classes is not None:
        ids = np.where(valid, raster.data[0], 0).astype(np.int64)
        return torch.from_numpy(pad_to_multiple(ids, multiple)[0])[None].to(device)
    x = standardize(spec, raster.data.astype(np.float32), offset=offset)
    x = np.where(valid, x, np.float32(0.0))  # (C, H, W): the mean standardizes to 0
    return torch.from_numpy(pad_to_multiple(x, multiple)[0])[None].to(device)


def run(args: argparse.Namespace) -> int:
    """Tokenize one tile and write the ``.npz``."""
    spec = get_modality(args.modality)
    raster = read_tile(args.file, spec.name)
    tok = load_tokenizer(spec.name, _args.tokenizer_weights(args), args.device)
    with torch.inference_mode():
        ids = (
            tok.encode(to_model_input(raster, spec.name, args.offset.get(spec.name, 0.0), args.device))[0]
            .cpu()
            .numpy()
        )
    geo = raster.georef
    pad_bottom, pad_right = padding_to_multiple(geo.height, geo.width, tok.patch_size)
    with atomic_path(args.output, overwrite=args.overwrite, verify=verify_zip) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            ids=ids.astype(np.uint16),  # every codebook (15360, 4375) fits
            modality=np.array(spec.name),
            codebook_size=np.array(tok.codebook_size),
            patch_size=np.array(tok.patch_size),
            crs=np.array(geo.crs.to_wkt() if geo.crs else ""),
            transform=np.array(tuple(geo.transform)[:6], dtype=np.float64),
            width=np.array(geo.width),
            height=np.array(geo.height),
            pad_bottom=np.array(pad_bottom),  # the token grid covers the tile padded by these pixels
            pad_right=np.array(pad_right),
        )
    print(f"{args.file}: {spec.name} -> {ids.shape[0]}x{ids.shape[1]} tokens written to {args.output}")
    return 0
