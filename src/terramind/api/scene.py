"""``generate_scene``: any-to-any generation over a whole scene for notebooks, as an ``xarray.Dataset``.

    import rioxarray
    from terramind.api.scene import generate_scene
    s2 = rioxarray.open_rasterio("scene.tif", chunks={"y": 512})      # lazy (dask): read strip by strip
    ds = generate_scene({"S2L2A": s2}, ["LULC", "DEM"], weights="hub", tokenizer_weights="hub")
    ds["LULC"].plot(); ds.rio.crs; ds["DEM"].rio.to_raster("dem.tif")

The same engine as ``terramind generate`` (:func:`terramind.scene.run_scene`: tiles, blending, nodata, the
product offset and S1-unit rules), so for the same inputs, options and seed the values equal the CLI's
GeoTIFFs. Inputs may be xarray objects (on the target grid) or anything ``--input`` takes (paths, URLs,
band-files folders, STAC items), which are warped onto the target grid. The outputs are written to a
temporary folder and loaded; each becomes one variable with ``x``/``y`` coordinates, the CRS and nodata
(rioxarray), ``(y, x)`` for one band and ``(<name>_band, y, x)`` with band names for several.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from terramind.api import generation as api_generation
from terramind.core.optional import require
from terramind.generation.generate import Generator, check_modalities
from terramind.generation.options import GenerationOptions
from terramind.generation.scene import generator_digest, generator_tile_fn
from terramind.modalities import get_modality
from terramind.scene import (
    DEFAULT_RESAMPLING,
    GeoTiffSink,
    InputValue,
    SceneOutput,
    TileLayout,
    fill_values,
    run_scene,
    scene_source,
)


def generate_scene(
    inputs: Mapping[str, InputValue],
    outputs: Sequence[str],
    *,
    options: GenerationOptions | None = None,
    model: str = "terramind_v1_base",
    weights: str | None = "hub",
    tokenizer_weights: str | None = "hub",
    generator: Generator | None = None,
    seed: int = 0,
    offset: Mapping[str, float] | None = None,
    tile: int = 224,
    overlap: int = 32,
    batch: int = 4,
    grid: str | None = None,
    resampling: str = DEFAULT_RESAMPLING,
    device: str = "cpu",
) -> Any:
    """Generate ``outputs`` over a whole scene and return them as an ``xarray.Dataset``.

    Args:
        inputs: Per modality, an xarray ``DataArray``/``Dataset`` with a CRS (rioxarray), or a path/URL,
            band-files folder or STAC item as ``--input`` takes.
        outputs: Modalities to generate, in order.
        options: Decoding options (default :class:`GenerationOptions`).
        model: Model name (when no ``generator`` is given).
        weights: Model weights (``"hub"``, a path, or None for random), as :func:`create_generator`.
        tokenizer_weights: Tokenizer weights, likewise.
        generator: A generator to use instead of building one (its inputs and outputs must fit).
        seed: Seed of all sampling (tiles are seeded by index: results do not depend on batching).
        offset: Per modality, the DN offset added to the mean (S2 with the +1000 offset).
        tile: Tile side in pixels.
        overlap: Overlap of neighbouring tiles.
        batch: Tiles per model call.
        grid: The input whose grid the outputs are on (default: the first input's).
        resampling: Resampling of continuous inputs onto the grid (class maps: nearest).
        device: Torch device of the model.

    Returns:
        One variable per output modality, with coordinates, CRS and nodata.

    Raises:
        TerraMindError: xarray/rioxarray missing (extra ``xarray``), or any error the CLI would give.
    """
    require("rioxarray", "xarray")
    names = [get_modality(m).name for m in outputs]
    check_modalities([get_modality(m).name for m in inputs], names)
    opts = options or GenerationOptions()
    source = scene_source(inputs, grid=grid, resampling=resampling)
    if generator is None:
        generator = api_generation.create_generator(
            model, inputs=[get_modality(m).name for m in inputs], outputs=names, weights=weights,
            tokenizer_weights=tokenizer_weights,
        )  # fmt: skip
    generator.to(device)
    layout = TileLayout(source.georef.height, source.georef.width, tile, overlap)
    keep = layout.num_batches(batch) > 1
    if keep:
        generator.keep_loaded()
    with tempfile.TemporaryDirectory(prefix="terramind-scene-") as folder:
        written = [SceneOutput.for_modality(n, Path(folder) / f"{n}.tif") for n in names]
        fn = generator_tile_fn(generator, written, opts, seed=seed, offset=offset, keep_decoders=keep)
        run_scene(
            fn, source, [GeoTiffSink(written)], layout, Path(folder) / ".work", batch=batch,
            fill=fill_values(list(inputs), offset), weights=generator_digest(generator),
        )  # fmt: skip
        return _dataset(written)


def _dataset(outputs: Sequence[SceneOutput]) -> Any:
    """Load the written GeoTIFFs as one Dataset: one variable per output, CRS and nodata kept."""
    xr = require("xarray", "xarray")
    rioxarray = require("rioxarray", "xarray")
    variables = {}
    for out in outputs:
        array = rioxarray.open_rasterio(out.path).load()
        array.rio.write_nodata(out.nodata, inplace=True)
        if array.sizes["band"] == 1:
            array = array.squeeze("band", drop=True)
        else:
            array = array.assign_coords(band=list(out.band_names)).rename(band=f"{out.name}_band")
        variables[out.name] = array
    dataset = xr.Dataset(variables)
    return dataset.rio.write_crs(next(iter(variables.values())).rio.crs)
