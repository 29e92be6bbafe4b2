"""Sinks of a whole scene: where blended strips go, and how outputs are published at the end.

A :class:`Sink` names the files it publishes (checked before a run starts), the tile-function outputs it reads
and their channels, receives each finished strip of rows (:meth:`~Sink.write_strip`, kept in the run's work
folder so an interrupted run resumes) and publishes its outputs atomically once every row is done
(:meth:`~Sink.publish`). :class:`GeoTiffSink` writes one Cloud-Optimized GeoTIFF (COG: tiled, internal
overviews) per :class:`SceneOutput`.

An output reads one tile-function output: class maps (``categorical``) take the argmax of the blended logits
or probabilities, continuous outputs the blended values; an optional per-strip ``transform`` then maps them
to what is written (the zero-shot water mask is LULC classes -> water 0/1, applied strip by strip as it is
written, so nothing is read back whole).

Nodata, one convention for every output (:func:`output_nodata`, the one lookup):

========================================  =========  ====================================================
output                                    nodata     why
========================================  =========  ====================================================
catalog class map with a "no data" class  its id     LULC: class 0 "no data", as its tokenizer defines it
any other class map (fine-tuned, water)   255        uint8; class ids start at 0
continuous values (float32)               -9999.0    outside every physical range of the catalog
========================================  =========  ====================================================

Pixels invalid in any input, and pixels no tile covered, are nodata in every output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from rasterio.windows import Window

from terramind.data.geotiff import GeoRef, RasterWriter, read_window, write_raster
from terramind.modalities import get_modality

OutputKind = Literal["classes", "values"]
NODATA: Mapping[OutputKind, float] = {"classes": 255, "values": -9999.0}
NO_DATA_CLASS = "no data"  # the catalog's class name for pixels without data


def output_nodata(kind: OutputKind, modality: str | None = None) -> float:
    """Return an output's nodata: a catalog class map's "no data" class, else the kind's (table above).

    Args:
        kind: ``classes`` (uint8 class map) or ``values`` (float32).
        modality: The catalog modality written, if any (None: a fine-tuned or derived output).
    """
    if kind == "classes" and modality is not None:
        classes = get_modality(modality).classes or ()
        ids = [c.id for c in classes if c.name == NO_DATA_CLASS]
        if ids:
            return ids[0]
    return NODATA[kind]


Transform = Callable[[np.ndarray], np.ndarray]
"""Per strip: classes (h, W) int64 or values (C, h, W) float32 -> what is written (bands, h, W)."""


@dataclass(frozen=True)
class SceneOutput:
    """One output GeoTIFF of a scene.

    Attributes:
        name: Output name (the canonical modality for a generated modality); names the strip files.
        path: Final GeoTIFF path.
        reads: The tile-function output it is made of.
        channels: Channels the tile function returns for ``reads`` (LULC: 10 logits, blended before argmax).
        categorical: A class map: the argmax of the blended channels is written.
        dtype: Output data type.
        nodata: Value written where inputs were invalid (:func:`output_nodata`).
        colormap: Colour table of a class map.
        band_names: Band descriptions (their count is the number of bands written).
        transform: Applied to each strip before it is written (see :data:`Transform`).
    """

    name: str
    path: Path
    reads: str
    channels: int
    categorical: bool
    dtype: str
    nodata: float
    colormap: Mapping[int, tuple[int, int, int]] | None = None
    band_names: tuple[str, ...] = ()
    transform: Transform | None = field(default=None, compare=False)

    @property
    def modality(self) -> str:
        """The modality (or output name) written."""
        return self.name

    @property
    def bands(self) -> int:
        """Bands written."""
        return len(self.band_names) or (1 if self.categorical else self.channels)

    @classmethod
    def for_modality(cls, modality: str, path: Path) -> SceneOutput:
        """Build the output record of a generated modality in the catalog's conventions."""
        spec = get_modality(modality)
        if spec.classes is not None:
            colours = {c.id: _rgb(c.colour) for c in spec.classes}
            nodata = output_nodata("classes", spec.name)
            return cls(
                spec.name, path, spec.name, len(spec.classes), True, "uint8", nodata, colours, spec.bands
            )
        nodata = output_nodata("values", spec.name)
        return cls(spec.name, path, spec.name, spec.num_bands, False, "float32", nodata, None, spec.bands)

    def render(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Turn blended ``values`` (C, h, W; NaN: no tile) into the strip written (bands, h, W)."""
        covered = valid & np.isfinite(values).all(axis=0)
        out = np.nan_to_num(values).argmax(axis=0) if self.categorical else values
        if self.transform is not None:
            out = self.transform(out)
        out = out[None] if out.ndim == 2 else out
        return np.where(covered[None], out, self.nodata).astype(self.dtype)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


class Sink(Protocol):
    """Receives finished strips of a scene and publishes outputs at the end."""

    @property
    def paths(self) -> list[Path]:
        """The files it publishes (checked before the run)."""
        ...

    @property
    def channels(self) -> dict[str, int]:
        """Channels of each tile-function output it reads."""
        ...

    def start(self, work: Path, georef: GeoRef) -> None:
        """Prepare to receive strips of the scene on ``georef``, kept under the run's work folder ``work``."""
        ...

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        """Store blended outputs ``(C', h, W)`` of scene rows ``[top, top + h)`` (tile row ``row``)."""
        ...

    def publish(self, rows: Sequence[tuple[int, int, int]], overwrite: bool) -> list[Path]:
        """Assemble the strips ``(row, top, height)`` into the outputs, each written atomically."""
        ...


class GeoTiffSink:
    """Finished strips as small GeoTIFFs in the work folder, then copied into one GeoTIFF per output."""

    def __init__(self, outputs: Sequence[SceneOutput]) -> None:
        self.outputs = list(outputs)
        self.work = Path()
        self.georef: GeoRef | None = None

    @property
    def paths(self) -> list[Path]:
        """The output GeoTIFFs."""
        return [o.path for o in self.outputs]

    @property
    def channels(self) -> dict[str, int]:
        """Channels of each tile-function output read."""
        return {o.reads: o.channels for o in self.outputs}

    def start(self, work: Path, georef: GeoRef) -> None:
        """Keep strips in ``work`` for a scene on ``georef``."""
        self.work, self.georef = work, georef

    def strip_path(self, name: str, row: int) -> Path:
        """Where the strip of tile row ``row`` of one output lives."""
        return self.work / f"{name}_{row:05d}.tif"

    def _grid(self) -> GeoRef:
        if self.georef is None:
            raise RuntimeError("GeoTiffSink.start was not called")  # engine invariant, not user input
        return self.georef

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        """Render blended values as each output's strip GeoTIFF."""
        georef = self._grid().window(Window(0, top, self._grid().width, valid.shape[0]))
        for out in self.outputs:
            write_raster(
                self.strip_path(out.name, row), out.render(data[out.reads], valid), georef,
                dtype=out.dtype, nodata=out.nodata, overwrite=True,
            )  # fmt: skip

    def publish(self, rows: Sequence[tuple[int, int, int]], overwrite: bool) -> list[Path]:
        """Copy all strips ``(row, top, height)`` into each final GeoTIFF (atomic and verified per file)."""
        grid, written = self._grid(), []
        for out in self.outputs:
            with RasterWriter(
                out.path, grid, out.bands, out.dtype, nodata=out.nodata, colormap=out.colormap,
                band_names=out.band_names or None, overwrite=overwrite, cog=True,
            ) as writer:  # fmt: skip
                for row, top, height in rows:
                    strip = read_window(self.strip_path(out.name, row), Window(0, 0, grid.width, height))
                    writer.write(strip, Window(0, top, grid.width, height))
            written.append(out.path)
        return written
