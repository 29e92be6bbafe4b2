from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from terramind.core.errors import InputError
from terramind.data.tiles import modality_inputs
from terramind.finetune.scene import CLASS_NODATA, VALUE_NODATA, predict_scene
from terramind.modalities import standardize


class PixelModel(nn.Module):
    """Per-pixel stand-in: 'class 1' where standardised VV > 0, and VV itself as the value."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        vv = inputs["S1RTC"][:, :1] * self.scale
        return torch.cat([-vv, vv], dim=1) * 10


def _scene(tmp_path: Path, tiny_geotiff) -> tuple[Path, np.ndarray]:  # type: ignore[no-untyped-def]
    data = np.random.default_rng(0).uniform(-20, -5, (2, 80, 96)).astype("float32")
    data[:, 5:9, 10:20] = -9999
    return tiny_geotiff(data, name="s1.tif", nodata=-9999), data


@pytest.mark.parametrize("kind", ["classes", "values"])
def test_predict_scene_blends_tiles_on_the_input_grid(tmp_path: Path, tiny_geotiff, kind: str) -> None:  # type: ignore[no-untyped-def]
    path, data = _scene(tmp_path, tiny_geotiff)
    specs = modality_inputs(["S1RTC"], {}, {}, {}, {})
    out = predict_scene(
        PixelModel(),
        {"S1RTC": path},
        specs,
        tmp_path / "out.tif",
        out_channels=2,
        kind=kind,  # type: ignore[arg-type]
        tile=32,
        overlap=8,
        batch=3,
    )
    with rasterio.open(out) as dst, rasterio.open(path) as src:
        assert dst.transform == src.transform and dst.crs == src.crs and dst.shape == (80, 96)
        result = dst.read()
    vv = standardize("S1RTC", data)[0]
    invalid = data[0] == -9999
    if kind == "classes":
        assert (result[0][invalid] == CLASS_NODATA).all()
        assert np.array_equal(result[0][~invalid], (vv > 0)[~invalid].astype(np.uint8))
    else:
        assert (result[1][invalid] == VALUE_NODATA).all()
        # per-pixel: blending equal values is exact up to fp32 rounding of |10 vv| <= ~50 (a few ulps, ~1e-5)
        assert np.allclose(result[1][~invalid], 10 * vv[~invalid], atol=1e-3)


def test_predict_scene_needs_the_model_inputs(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    path, _ = _scene(tmp_path, tiny_geotiff)
    specs = modality_inputs(["S1RTC", "DEM"], {}, {}, {}, {})
    with pytest.raises(InputError, match=r"needs input\(s\) \['DEM'\]"):
        predict_scene(PixelModel(), {"S1RTC": path}, specs, tmp_path / "o.tif", out_channels=2)
