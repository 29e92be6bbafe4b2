"""Whole-scene prediction: run a fine-tuned dense model over a GeoTIFF scene of any size, tile by tile.

The model is a tile function for the scene engine (:func:`terramind.scene.run_scene`): tiles overlap and
their outputs are blended (class probabilities for segmentation, values for regression), streamed strip by
strip and published as one GeoTIFF on the scene's grid. From the engine it gets resume (an interrupted run,
repeated, continues; keyed by the model's weights digest, the inputs and the options), a progress bar, the
output folder's writer lock and the durable, verified write. Pixels invalid in any input (nodata, non-finite)
are nodata (:func:`terramind.scene.output_nodata`: class maps 255, values -9999).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from terramind.checkpoints.digest import state_digest
from terramind.core.errors import InputError
from terramind.data.tiles import ModalityInput, prepare_input
from terramind.scene import (
    DEFAULT_RESAMPLING,
    GeoTiffSink,
    InputValue,
    Progress,
    SceneOutput,
    TileLayout,
    notes,
    output_nodata,
    run_scene,
    scene_source,
    work_dir_for,
)
from terramind.scene.offsets import offset_note, product_offsets
from terramind.scene.sinks import OutputKind
from terramind.scene.state import CHECKPOINT_SECONDS

CLASS_NODATA = output_nodata("classes")
VALUE_NODATA = output_nodata("values")


class StandardisedSource:
    """Rows of the input scenes, standardised as the datamodule does (a :class:`terramind.scene.Source`).

    The scene is read by :func:`terramind.scene.scene_source` (any input form, other grids warped, S1 in
    linear power converted), as the model's band subset; each strip is then standardised with the model's
    statistics and offsets.
    """

    def __init__(
        self,
        inputs: Mapping[str, InputValue],
        specs: Sequence[ModalityInput],
        *,
        grid: str | None = None,
        resampling: str = DEFAULT_RESAMPLING,
    ) -> None:
        missing = [m.name for m in specs if m.name not in inputs]
        if missing:
            raise InputError(f"the model needs input(s) {missing}; give them as MODALITY=PATH")
        self.specs = list(specs)
        bands = {m.name: (m.bands, m.file_bands or None) for m in self.specs}
        self.source = scene_source(
            {m.name: inputs[m.name] for m in self.specs}, grid=grid, resampling=resampling, bands=bands
        )
        self.georef, self.files = self.source.georef, self.source.files
        self.sources = getattr(self.source, "sources", [self.source])  # for terramind.scene.notes

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Read rows ``[top, top + height)`` of every input, standardised, with their combined validity."""
        data, valid = self.source.read_rows(top, height)
        out = {}
        for mod in self.specs:
            raw = np.where(valid[None], data[mod.name], np.nan)  # invalid anywhere: invalid for the model
            out[mod.name], invalid = prepare_input(mod, raw, None)
            valid &= ~invalid
        return out, valid


def with_product_offsets(
    inputs: Mapping[str, InputValue], specs: Sequence[ModalityInput], say: Callable[[str], None] | None = None
) -> list[ModalityInput]:
    """Apply the DN offset each input's product metadata implies where the model's config sets none.

    A config's own non-zero offset wins (as ``--offset`` does on the other commands); the choice is said
    either way (:mod:`terramind.scene.offsets`).
    """
    found = product_offsets({m.name: inputs[m.name] for m in specs if m.name in inputs})
    out = []
    for mod in specs:
        if mod.name in found:
            given = mod.offset if mod.offset != 0.0 else None
            if say is not None:
                say(offset_note(mod.name, found[mod.name], given).replace("--offset", "the config's offset"))
            mod = mod if given is not None else replace(mod, offset=found[mod.name].offset)
        out.append(mod)
    return out


def predict_scene(
    model: nn.Module,
    inputs: Mapping[str, InputValue],
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
    grid: str | None = None,
    resampling: str = DEFAULT_RESAMPLING,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Predict a whole scene with a dense model and write the GeoTIFF.

    Args:
        model: Maps ``{modality: (B, C, T, T)}`` standardised tiles to ``(B, out_channels, T, T)``.
        inputs: Scene per modality, in any form :func:`terramind.scene.scene_source` reads.
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
        grid: The input whose grid the output is on (default: the first input's; others are warped).
        resampling: Resampling of continuous inputs onto the grid (class maps: nearest).
        say: Receives one line per decision made for the user (warps, S1 converted to dB, the DN offset).

    Returns:
        The written path.

    Raises:
        ResumeError: An interrupted run with other weights, inputs or options left its state (rerun it as
            it was, or pass ``overwrite``).
    """
    specs = with_product_offsets(inputs, specs, say)
    source = StandardisedSource(inputs, specs, grid=grid, resampling=resampling)
    for line in notes(source):
        if say is not None:
            say(line)
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
    settings = {"kind": kind, "out_channels": out_channels, "inputs": [repr(m) for m in specs], "grid": grid,
                "resampling": resampling}  # fmt: skip
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
