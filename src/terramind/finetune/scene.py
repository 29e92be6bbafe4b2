"""Whole-scene prediction: run a fine-tuned dense model over a GeoTIFF scene of any size, tile by tile.

Tiles overlap and their outputs are blended with the generation package's tiling engine (class
probabilities for segmentation, values for regression), then streamed strip by strip into a GeoTIFF on the
scene's grid. Pixels invalid in any input (nodata, non-finite) are written as nodata. The output is written
to a temporary sibling, verified and renamed (a full disk never leaves a truncated GeoTIFF), and the output
folder's writer lock is held during the run (a second run into the same folder stops with BusyError).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn

from terramind.core.errors import InputError
from terramind.core.files import check_output_path
from terramind.core.lock import folder_lock
from terramind.data.geotiff import GeoRef, RasterWriter, band_positions, open_georef, read_window
from terramind.data.tiles import ModalityInput, prepare_input
from terramind.generation.tiling import TileLayout, run_tiles

OutputKind = Literal["classes", "values"]
CLASS_NODATA = 255
VALUE_NODATA = -9999.0


class _Source:
    """Rows of the input scenes, standardised as the datamodule does."""

    def __init__(self, inputs: Mapping[str, Path], specs: Sequence[ModalityInput]) -> None:
        missing = [m.name for m in specs if m.name not in inputs]
        if missing:
            raise InputError(f"the model needs input(s) {missing}; give them as MODALITY=PATH")
        self.paths = {m.name: Path(inputs[m.name]) for m in specs}
        self.specs = list(specs)
        self.georefs = {name: open_georef(path) for name, path in self.paths.items()}
        self.georef = _shared_grid(self.georefs, self.specs)
        self.bands = {
            m.name: band_positions(
                self.georefs[m.name], self.paths[m.name], m.name, m.bands, m.file_bands or None
            )
            for m in self.specs
        }  # by the files' band names when they have them, else by position

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        window = Window(0, top, self.georef.width, height)
        valid = np.ones((height, self.georef.width), dtype=bool)
        out = {}
        for mod in self.specs:
            raw = read_window(
                self.paths[mod.name], window, band_indexes=self.bands[mod.name], modality=mod.name
            )
            out[mod.name], invalid = prepare_input(mod, raw, self.georefs[mod.name].nodata)
            valid &= ~invalid
        return out, valid


def _shared_grid(georefs: Mapping[str, GeoRef], specs: Sequence[ModalityInput]) -> GeoRef:
    first_name, first = next(iter(georefs.items()))
    for mod in specs:
        georef = georefs[mod.name]
        if georef.count != mod.file_band_count:
            raise InputError(
                f"the {mod.name} scene has {georef.count} bands, the model's files {mod.file_band_count}"
            )
        problem = first.same_grid(georef)
        if problem:
            raise InputError(f"the {mod.name} scene is not on the grid of the {first_name} scene: {problem}")
    return first


class _Writer:
    """Sink of blended strips: argmax (classes) or values, nodata where inputs were invalid."""

    def __init__(self, writer: RasterWriter, kind: OutputKind) -> None:
        self.writer, self.kind = writer, kind

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        out = data["out"]  # (C, h, W)
        if self.kind == "classes":
            strip = out.argmax(axis=0).astype(np.uint8)[None]
            strip[:, ~valid] = CLASS_NODATA
        else:
            strip = out.astype(np.float32)
            strip[:, ~valid] = VALUE_NODATA
        self.writer.write(strip, Window(0, top, strip.shape[2], strip.shape[1]))


def predict_scene(
    model: nn.Module,
    inputs: Mapping[str, Path],
    specs: Sequence[ModalityInput],
    output: Path,
    *,
    out_channels: int,
    kind: OutputKind = "classes",
    tile: int = 224,
    overlap: int = 32,
    batch: int = 4,
    overwrite: bool = False,
) -> Path:
    """Predict a whole scene with a dense model and write the GeoTIFF.

    Args:
        model: Maps ``{modality: (B, C, T, T)}`` standardised tiles to ``(B, out_channels, T, T)``.
        inputs: Scene GeoTIFF per modality (one grid).
        specs: How each modality is read and standardised (as in training).
        output: GeoTIFF to write.
        out_channels: Classes (``kind="classes"``) or output values per pixel.
        kind: ``classes``: softmax probabilities are blended, the argmax is written (uint8, nodata 255);
            ``values``: values are blended and written as float32 (nodata -9999).
        tile: Tile side (a multiple of 16).
        overlap: Pixels shared by neighbouring tiles.
        batch: Tiles per forward pass.
        overwrite: Replace an existing output.

    Returns:
        The written path.
    """
    check_output_path(output, overwrite=overwrite)
    source = _Source(inputs, specs)
    layout = TileLayout(source.georef.height, source.georef.width, tile, overlap)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    @torch.no_grad()
    def fn(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
        out = model({k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in tiles.items()})
        out = out.float().softmax(dim=1) if kind == "classes" else out.float()
        return {"out": out.cpu().numpy()}

    dtype, nodata = ("uint8", CLASS_NODATA) if kind == "classes" else ("float32", VALUE_NODATA)
    count = 1 if kind == "classes" else out_channels
    fill = {m.name: np.zeros(len(m.bands), np.float32) for m in specs}  # already standardised: 0 = mean
    try:
        with (
            folder_lock(output.parent),
            RasterWriter(output, source.georef, count, dtype, nodata=nodata, overwrite=overwrite) as writer,
        ):
            run_tiles(
                layout, source, fn, _Writer(writer, kind), channels={"out": out_channels}, fill=fill,
                batch=batch,
            )  # fmt: skip
    finally:
        model.train(was_training)
    return output
