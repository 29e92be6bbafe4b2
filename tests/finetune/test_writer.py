from __future__ import annotations

import csv
from pathlib import Path

import pytest
import rasterio
import torch

from terramind.core.errors import InputError
from terramind.finetune.writer import GeoTiffPredictionWriter


def test_maps_become_georeferenced_tiffs_and_labels_a_csv(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    source = tiny_geotiff(name="tile_a.tif", bands=2, size=16)
    writer = GeoTiffPredictionWriter(str(tmp_path / "out"))
    maps = {"prediction": torch.ones(1, 16, 16, dtype=torch.uint8), "path": [str(source)]}
    writer.write_on_batch_end(None, None, maps, None, None, 0, 0)  # type: ignore[arg-type]
    with rasterio.open(tmp_path / "out" / "tile_a_pred.tif") as out, rasterio.open(source) as src:
        assert out.transform == src.transform and out.crs == src.crs and int(out.read(1).min()) == 1
    labels = {"prediction": torch.tensor([3, 1]), "path": ["x/a.tif", "x/b.tif"]}
    writer.write_on_batch_end(None, None, labels, None, None, 1, 0)  # type: ignore[arg-type]
    writer.on_predict_end(None, None)  # type: ignore[arg-type]
    with (tmp_path / "out" / "predictions.csv").open() as f:
        assert list(csv.reader(f)) == [["file", "prediction"], ["a.tif", "3"], ["b.tif", "1"]]
    with pytest.raises(InputError, match="no input paths"):
        writer.write_on_batch_end(None, None, {"prediction": torch.zeros(1)}, None, None, 2, 0)  # type: ignore[arg-type]
