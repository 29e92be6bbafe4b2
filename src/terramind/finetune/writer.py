"""Write ``predict`` outputs: per-pixel predictions as GeoTIFFs on the input's grid, per-image ones as CSV.

Each prediction row comes with the path of its input file (the datamodule puts it in the batch); the output
takes that file's CRS and transform, so class maps and regression rasters overlay the input exactly.
Every file is written atomically and verified before it is renamed into place (a full disk raises
DiskFullError instead of leaving a truncated output).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from terramind.core.errors import InputError
from terramind.core.files import atomic_path, check_output_dir
from terramind.data.geotiff import open_georef, write_raster


class GeoTiffPredictionWriter(BasePredictionWriter):
    """Lightning callback writing one output per input tile.

    Args:
        output_dir: Folder for ``<input stem>_pred.tif`` files and ``predictions.csv``; created if absent.
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
        for pred, path in zip(prediction["prediction"].cpu(), paths, strict=True):
            if pred.ndim >= 2:
                self._write_map(pred, Path(path))
            else:
                values = pred.reshape(-1).tolist()
                self.rows.append([Path(path).name, " ".join(str(v) for v in values)])

    def _write_map(self, pred: torch.Tensor, source: Path) -> None:
        georef = open_georef(source)
        data = pred.unsqueeze(0) if pred.ndim == 2 else pred  # (C, H, W)
        target = self.output_dir / f"{source.stem}_pred.tif"
        write_raster(target, data.numpy(), georef, overwrite=self.overwrite)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write ``predictions.csv`` for per-image predictions."""
        if not self.rows:
            return
        target = self.output_dir / "predictions.csv"
        with atomic_path(target, overwrite=self.overwrite) as tmp, tmp.open("w", newline="") as f:
            csv.writer(f).writerows([["file", "prediction"], *self.rows])
        self.rows = []
