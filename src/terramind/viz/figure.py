"""PNG files of quicklooks: one tile with a legend or colour bar, or several modalities side by side.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, so no global state and no
display), and written through :func:`terramind.core.files.atomic_path`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from terramind.core.errors import InputError
from terramind.core.files import atomic_path
from terramind.modalities import ModalitySpec, get_modality
from terramind.viz.quicklook import (
    DEFAULT_RESOLUTION,
    NDVI_CMAP,
    NDVI_RANGE,
    STRETCH_PERCENTILES,
    Array,
    as_chw,
    dem_colours,
    quicklook,
)

PANEL_INCHES = 3.6
DPI = 100


def _legend(ax: Axes, spec: ModalitySpec, data: np.ndarray) -> None:
    """Legend of the classes present in a class map, below the image."""
    present = set(np.unique(np.nan_to_num(data[0], nan=0.0).round()).astype(int).tolist())
    handles = [Patch(color=c.colour, label=f"{c.id} {c.name}") for c in spec.classes or () if c.id in present]
    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.02),
            ncol=2,
            fontsize=7,
            frameon=False,
        )


def _colour_bar(fig: Figure, ax: Axes, spec: ModalitySpec, data: np.ndarray) -> None:
    """Colour bar in physical units for continuous single-band modalities (NDVI, DEM)."""
    renderer = spec.raster.renderer if spec.raster is not None else None
    if renderer == "diverging":
        mappable = ScalarMappable(Normalize(*NDVI_RANGE), NDVI_CMAP)
    elif renderer == "terrain" and np.isfinite(data).any():
        lo, hi = np.percentile(data[np.isfinite(data)], STRETCH_PERCENTILES)
        mappable = ScalarMappable(Normalize(lo, max(hi, lo + 1e-6)), dem_colours())
    else:
        return
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label(spec.unit, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _panel(
    fig: Figure,
    ax: Axes,
    title: str | None,
    modality: str | ModalitySpec,
    data: Array,
    resolution: float = DEFAULT_RESOLUTION,
) -> None:
    spec = get_modality(modality)
    values = as_chw(data, spec)
    ax.imshow(quicklook(spec, values, resolution=resolution), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if spec.classes is not None:
        _legend(ax, spec, values)
    else:
        _colour_bar(fig, ax, spec, values)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return Path(path)


def save_quicklook(
    path: str | os.PathLike[str],
    modality: str | ModalitySpec,
    data: Array,
    *,
    title: str | None = None,
    resolution: float = DEFAULT_RESOLUTION,
) -> Path:
    """Write the quicklook of one tile as a PNG (LULC with a legend, NDVI/DEM with a colour bar).

    Args:
        path: Output PNG; its folder must exist. Replaced atomically if it exists.
        modality: Catalog name or record.
        data: ``(C, H, W)`` values in physical units.
        title: Optional title above the image.
        resolution: Pixel size in metres (for the DEM hillshade).

    Returns:
        The written path.
    """
    fig = Figure(figsize=(PANEL_INCHES, PANEL_INCHES))
    _panel(fig, fig.add_subplot(), title, modality, data, resolution)
    return _save(fig, path)


def save_figure(
    path: str | os.PathLike[str], panels: Sequence[tuple[str, str | ModalitySpec, Array]]
) -> Path:
    """Write several quicklooks side by side (e.g. the input and the generated modalities) as one PNG.

    Args:
        path: Output PNG; its folder must exist.
        panels: ``(title, modality, data)`` per panel, left to right.

    Returns:
        The written path.

    Raises:
        InputError: If ``panels`` is empty.
    """
    if not panels:
        raise InputError("save_figure needs at least one (title, modality, data) panel")
    fig = Figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES))
    for ax, (title, modality, data) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        _panel(fig, ax, title, modality, data)
    return _save(fig, path)
