"""Whole-scene prediction: run a fine-tuned dense model over a GeoTIFF scene of any size, tile by tile.

The model is a tile function for the scene engine (:func:`terramind.scene.run_scene`): tiles overlap and
their outputs are blended (class probabilities for segmentation, values for regression), streamed strip by
strip and published as one GeoTIFF on the scene's grid. From the engine it gets resume (an interrupted run,
repeated, continues; keyed by the model's weights digest, the inputs and the options), a progress bar, the
output folder's writer lock and the durable, verified write. Pixels invalid in any input (nodata, non-finite)
are nodata (:func:`terramind.scene.output_nodata`: class maps 255, values -9999).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn

from terramind.checkpoints.digest import state_digest
from terramind.core.errors import InputError
from terramind.data.geotiff import GeoRef, band_positions, open_georef, read_window
from terramind.data.tiles import ModalityInput, prepare_input
from terramind.scene import (
    GeoTiffSink,
    Progress,
    SceneOutput,
    TileLayout,
    output_nodata,
    run_scene,
    work_dir_for,
)
from terramind.scene.sinks import OutputKind
from terramind.scene.state import CHECKPOINT_SECONDS

CLASS_NODATA = output_nodata("classes")
VALUE_NODATA = output_nodata("values")


class StandardisedSource:
    """Rows of the input scenes, standardised as the datamodule does (a :class:`terramind.scene.Source`)."""

    def __init__(self, inputs: Mapping[str, Path], specs: Sequence[ModalityInput]) -> None:
        missing = [m.name for m in specs if m.name not in inputs]
        if missing:
            raise InputError(f"the model needs input(s) {missing}; give them as MODALITY=PATH")
        self.paths = {m.name: Path(inputs[m.name]) for m in specs}
        self.files = self.paths
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
        """Read rows ``[top, top + height)`` of every input, standardised, with their combined validity."""
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
    progress: Progress | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
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
        overwrite: Replace an existing output (and the state of an interrupted run that differs).
        progress: Progress display factory (e.g. :func:`terramind.scene.tqdm_progress`).
        checkpoint_seconds: Within a row of tiles, save the tiles done at most this often (for resuming).

    Returns:
        The written path.

    Raises:
        ResumeError: An interrupted run with other weights, inputs or options left its state (rerun it as
            it was, or pass ``overwrite``).
    """
    source = StandardisedSource(inputs, specs)
    layout = TileLayout(source.georef.height, source.georef.width, tile, overlap)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    @torch.no_grad()
    def fn(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
        out = model({k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in tiles.items()})
        out = out.float().softmax(dim=1) if kind == "classes" else out.float()
        return {"out": out.cpu().numpy()}

    classes = kind == "classes"
    sink = GeoTiffSink([
        SceneOutput(output.stem, output, "out", out_channels, classes, "uint8" if classes else "float32",
                    output_nodata(kind))
    ])  # fmt: skip
    settings = {"kind": kind, "out_channels": out_channels, "inputs": [repr(m) for m in specs]}
    fill = {m.name: np.zeros(len(m.bands), np.float32) for m in specs}  # already standardised: 0 = mean
    try:
        run_scene(
            fn, source, [sink], layout, work_dir_for(output, "predict"), fill=fill, batch=batch,
            settings=settings, weights=state_digest({"model": model}), overwrite=overwrite, progress=progress,
            checkpoint_seconds=checkpoint_seconds,
        )  # fmt: skip
    finally:
        model.train(was_training)
    return output
