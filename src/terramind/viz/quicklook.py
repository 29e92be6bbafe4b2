"""Render a modality as the picture an EO user expects: an ``(H, W, 3)`` uint8 array.

S2 true colour with a 2–98 percentile stretch, S1 false colour (VV, VH, VV/VH), DEM as terrain colours
over a hillshade, LULC with its palette, NDVI with a diverging red-yellow-green map. Inputs are in physical
units (as read from a GeoTIFF or returned by ``destandardize``), not standardised values.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib
import numpy as np
import torch
from matplotlib.colors import Colormap, LightSource, ListedColormap, Normalize

from terramind.core.errors import ModalityError, ShapeError
from terramind.modalities import ModalitySpec, current_catalog, get_modality

Array = np.ndarray | torch.Tensor

# Percentiles of the linear stretch: clip the darkest/brightest 2% so a few glints do not wash out a scene.
STRETCH_PERCENTILES = (2.0, 98.0)
TRUE_COLOUR = ("RED", "GREEN", "BLUE")
NDVI_RANGE = (-1.0, 1.0)
NDVI_CMAP = "RdYlGn"
# The lower quarter of matplotlib's "terrain" map is sea blue: land elevations start above it.
DEM_CMAP_RANGE = (0.25, 1.0)
HILLSHADE = {"azdeg": 315.0, "altdeg": 45.0}  # light from the north-west, the cartographic convention
DEFAULT_RESOLUTION = 10.0  # metres per pixel of the TerraMesh tiles; hillshade needs it for the slope


def as_chw(data: Array, spec: ModalitySpec) -> np.ndarray:
    """``(C, H, W)`` float64 numpy copy of ``data`` (``(H, W)`` allowed for one-band modalities).

    Raises:
        ShapeError: If the channel count differs from the modality's.
    """
    array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] != spec.num_bands:
        raise ShapeError(
            f"{spec.name} quicklook needs ({spec.num_bands}, H, W) data ({', '.join(spec.bands)}), "
            f"got shape {array.shape}"
        )
    return array.astype(np.float64)


def stretch(x: np.ndarray, percentiles: tuple[float, float] = STRETCH_PERCENTILES) -> np.ndarray:
    """Linear stretch of ``x`` to ``[0, 1]`` between two percentiles of its finite values.

    Values at or beyond the upper percentile become 1, at or below the lower one 0; non-finite values 0.
    A constant input becomes 0.5.
    """
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(x.shape)
    lo, hi = np.percentile(x[finite], percentiles)
    if hi <= lo:
        return np.where(finite, 0.5, 0.0)
    return np.where(finite, np.clip((x - lo) / (hi - lo), 0.0, 1.0), 0.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Map ``[0, 1]`` floats to ``0..255`` (rounded); works on any shape."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _channels(spec: ModalitySpec, data: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return data[[spec.bands.index(n) for n in names]]


def _true_colour(spec: ModalitySpec, data: np.ndarray, resolution: float) -> np.ndarray:
    rgb = _channels(spec, data, TRUE_COLOUR)
    # One stretch for all three bands keeps the colour balance (a red desert stays red).
    finite = rgb[np.isfinite(rgb)]
    if finite.size:
        lo, hi = np.percentile(finite, STRETCH_PERCENTILES)
        rgb = np.clip((rgb - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return to_uint8(np.nan_to_num(rgb.transpose(1, 2, 0), nan=0.0))


def _rgb8(spec: ModalitySpec, data: np.ndarray, resolution: float) -> np.ndarray:
    rgb = _channels(spec, data, TRUE_COLOUR)
    return np.clip(np.nan_to_num(rgb, nan=0.0), 0, 255).round().astype(np.uint8).transpose(1, 2, 0)


def _sar_false_colour(spec: ModalitySpec, data: np.ndarray, resolution: float) -> np.ndarray:
    vv, vh = _channels(spec, data, ("VV", "VH"))
    # In dB the VV/VH ratio is the difference.
    return to_uint8(np.stack([stretch(vv), stretch(vh), stretch(vv - vh)], axis=-1))


def dem_colours() -> Colormap:
    """Return the elevation colour map: matplotlib's "terrain" without its sea-blue lower quarter."""
    base = matplotlib.colormaps["terrain"]
    return ListedColormap(base(np.linspace(*DEM_CMAP_RANGE, 256)), name="terrain_land")


def _terrain(spec: ModalitySpec, data: np.ndarray, resolution: float) -> np.ndarray:
    dem = np.nan_to_num(data[0], nan=float(np.nanmin(data[0])) if np.isfinite(data[0]).any() else 0.0)
    colours = dem_colours()(stretch(dem))[..., :3]
    light = LightSource(**HILLSHADE)
    shaded = light.shade_rgb(colours, dem, blend_mode="soft", dx=resolution, dy=resolution)
    return to_uint8(shaded)


def class_palette(spec: ModalitySpec) -> np.ndarray:
    """``(256, 3)`` uint8 lookup table of class colours; ids without a class are black."""
    lut = np.zeros((256, 3), np.uint8)
    for cls in spec.classes or ():
        lut[cls.id] = [int(cls.colour[i : i + 2], 16) for i in (1, 3, 5)]
    return lut


def _classes(spec: ModalitySpec, data: np.ndarray, resolution: float) -> np.ndarray:
    ids = np.clip(np.nan_to_num(data[0], nan=0.0).round(), 0, 255).astype(np.uint8)
    return class_palette(spec)[ids]


def _diverging(spec: ModalitySpec, data: np.ndarray, resolution: float) -> np.ndarray:
    norm = Normalize(*NDVI_RANGE, clip=True)
    rgb = matplotlib.colormaps[NDVI_CMAP](norm(data[0]))[..., :3]
    rgb[~np.isfinite(data[0])] = 0.0
    return to_uint8(rgb)


def _grey(spec: ModalitySpec, data: np.ndarray, resolution: float) -> np.ndarray:
    grey = to_uint8(stretch(data[0]))
    return np.repeat(grey[..., None], 3, axis=-1)


Renderer = Callable[[ModalitySpec, np.ndarray, float], np.ndarray]
# By the renderer kind of the catalog's raster facts (a registered sensor names one too).
RENDERERS: dict[str, Renderer] = {
    "true_colour": _true_colour,
    "rgb8": _rgb8,
    "sar": _sar_false_colour,
    "terrain": _terrain,
    "classes": _classes,
    "diverging": _diverging,
    "grey": _grey,
}


def quicklook(
    modality: str | ModalitySpec, data: Array, *, resolution: float = DEFAULT_RESOLUTION
) -> np.ndarray:
    """Render one tile of a modality as an RGB picture.

    Args:
        modality: Catalog name or record of an image modality.
        data: ``(C, H, W)`` (or ``(H, W)`` for one band) values in physical units.
        resolution: Pixel size in metres (DEM hillshade only).

    Returns:
        ``(H, W, 3)`` uint8 array.

    Raises:
        ModalityError: For a modality without a picture (coords, caption).
        ShapeError: For data whose channel count differs from the modality's.
    """
    spec = get_modality(modality)
    if spec.raster is None:
        images = [m for m in current_catalog() if current_catalog().get(m).raster is not None]
        raise ModalityError(f"{spec.name} has no quicklook: only {', '.join(images)} are images")
    return RENDERERS[spec.raster.renderer](spec, as_chw(data, spec), resolution)
