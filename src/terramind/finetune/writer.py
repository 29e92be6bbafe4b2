"""Write ``predict`` outputs: per-pixel predictions as GeoTIFFs on the input's grid, per-image ones as CSV.

Each prediction row comes with the path of its input file (the datamodule puts it in the batch); the output
takes that file's CRS and transform, so class maps and regression rasters overlay the input exactly.
A batch that also names its samples and their grids (the temporal datamodule: ``name``, ``grid`` as
:func:`terramind.data.series.grid_record`) gets ``<name>_pred.tif`` on that grid; a sample without a grid
(an ImpactMesh zarr zip that states none) is written without a CRS or transform, with a warning saying so,
never on a made-up grid.
Every file is written atomically and verified before it is renamed into place (a full disk raises
DiskFullError instead of leaving a truncated output).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import affine
import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from rasterio.errors import NotGeoreferencedWarning

from terramind.core.errors import InputError
from terramind.core.files import atomic_path, check_output_dir
from terramind.data.geotiff import GeoRef, open_georef, write_raster
from terramind.data.series import grid_from_record


class GeoTiffPredictionWriter(BasePredictionWriter):
    """Lightning callback writing one output per input tile.

    Args:
        output_dir: Folder for ``<input stem>_pred.tif`` files (``<name>_pred.tif`` where the batch names
            its samples) and ``predictions.csv``; created if absent.
        overwrite: Replace existing outputs.
    """

    def __init__(self, output_dir: str, overwrite: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.rows: list[list[str]] = []

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Write the batch's predictions (GeoTIFFs for maps, CSV rows for per-image outputs)."""
        paths = prediction.get("path")
        if not paths:
            raise InputError(
                "predictions carry no input paths: use a datamodule that returns 'path' per sample"
            )
        check_output_dir(self.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        named = isinstance(batch, Mapping) and "name" in batch
        for i, (pred, path) in enumerate(zip(prediction["prediction"].cpu(), paths, strict=True)):
            name = batch["name"][i] if named else Path(path).stem
            if pred.ndim >= 2:
                grid = _grid(batch, i, path, name, (int(pred.shape[-2]), int(pred.shape[-1])))
                self._write_map(pred, name, grid)
            else:
                values = pred.reshape(-1).tolist()
                self.rows.append([name if named else Path(path).name, " ".join(str(v) for v in values)])

    def _write_map(self, pred: torch.Tensor, name: str, georef: GeoRef) -> None:
        data = pred.unsqueeze(0) if pred.ndim == 2 else pred  # (C, H, W)
        target = self.output_dir / f"{name}_pred.tif"
        with warnings.catch_warnings():
            if georef.crs is None:  # said once by _grid already, in words the user can act on
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
            write_raster(target, data.numpy(), georef, overwrite=self.overwrite)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write ``predictions.csv`` for per-image predictions."""
        if not self.rows:
            return
        target = self.output_dir / "predictions.csv"
        with atomic_path(target, overwrite=self.overwrite) as tmp, tmp.open("w", newline="") as f:
            csv.writer(f).writerows([["file", "prediction"], *self.rows])
        self.rows = []


def _grid(batch: Any, index: int, path: str, name: str, size: tuple[int, int]) -> GeoRef:
    """Return the grid of sample ``index``: the batch's ``grid`` record, else its input file's."""
    if not (isinstance(batch, Mapping) and "grid" in batch):
        return open_georef(Path(path))
    grid = grid_from_record(batch["grid"][index])
    if grid is not None:
        return grid
    height, width = size
    warnings.warn(
        f"{name}: {path} states no grid (no 'spatial_ref' array with crs_wkt and GeoTransform, no x/y "
        f"coordinates with a CRS): {name}_pred.tif is written without a CRS or transform",
        UserWarning,
        stacklevel=3,
    )
    return GeoRef(None, affine.Affine.identity(), width, height)
