from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio

from terramind.core.errors import InputError, ShapeError
from terramind.data.geotiff import read_raster, write_raster
from terramind.evaluate.zeroshot import binary_scores, map_water, read_water_label, water_mask

TILE = "282D_485L_3_3"  # a tile with ~26k water pixels in its LULC map


def ndwi_lulc(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
    """A stand-in LULC generator: water (1) where NDWI > 0, trees (2) elsewhere, as one-hot logits."""
    s2 = tiles["S2L2A"]  # (B, 12, T, T) reflectance DN
    green, nir = s2[:, 2], s2[:, 7]
    water = (green - nir) / (green + nir + 1e-6) > 0
    logits = np.zeros((s2.shape[0], 10, *s2.shape[-2:]), np.float32)
    logits[:, 1][water] = 10.0
    logits[:, 2][~water] = 10.0
    return {"LULC": logits}


def test_water_classes() -> None:
    lulc = np.array([0, 1, 2, 3])
    assert water_mask(lulc).tolist() == [False, True, False, False]
    assert water_mask(lulc, flooded_vegetation=True).tolist() == [False, True, False, True]


def test_binary_scores() -> None:
    pred = np.array([1, 1, 0, 0, 1], bool)
    truth = np.array([1, 0, 1, 0, 1], bool)
    s = binary_scores(pred, truth)
    assert (s.tp, s.fp, s.fn, s.valid) == (2, 1, 1, 5)
    assert (
        s.iou == pytest.approx(0.5)
        and s.precision == pytest.approx(2 / 3)
        and s.recall == pytest.approx(2 / 3)
    )
    masked = binary_scores(pred, truth, valid=np.array([1, 0, 1, 1, 1], bool))
    assert (masked.fp, masked.valid) == (0, 4)
    assert binary_scores(np.zeros(3, bool), np.zeros(3, bool)).iou is None  # 0/0: undefined, not NaN
    with pytest.raises(ShapeError):
        binary_scores(np.zeros(3, bool), np.zeros(4, bool))


def test_map_water_on_a_real_tile(tmp_path: Path, examples_dir: Path) -> None:
    s2 = examples_dir / "S2L2A" / f"{TILE}.tif"
    out = map_water(ndwi_lulc, {"S2L2A": s2}, tmp_path / "water.tif", tile=96, overlap=16, keep_lulc=True)
    with rasterio.open(out) as dst, rasterio.open(s2) as src:
        assert dst.crs == src.crs and dst.transform == src.transform
        water = dst.read(1)
        bands = src.read().astype(np.float32)
    assert set(np.unique(water)) <= {0, 1}
    expected = (bands[2] - bands[7]) / (bands[2] + bands[7] + 1e-6) > 0
    assert np.array_equal(water == 1, expected)  # blending one-hot logits across tiles changes nothing
    assert (tmp_path / "water_lulc.tif").exists()
    lulc = read_raster(examples_dir / "LULC" / f"{TILE}.tif")
    # LULC as a water label: water 1, other classes 0, LULC "no data" (0) unlabelled (255)
    label_data = np.where(lulc.data == 0, 255, lulc.data == 1).astype(np.uint8)
    truth, valid = read_water_label(write_raster(tmp_path / "label.tif", label_data, lulc.georef))
    scores = binary_scores(water == 1, truth, valid)
    assert scores.valid == 224 * 224 and 0.3 < scores.iou <= 1.0  # NDWI agrees with ESRI water largely


def test_undefined_scores_are_null_in_json_and_named_in_text() -> None:
    scores = binary_scores(np.zeros(4, bool), np.zeros(4, bool))
    assert (scores.iou, scores.precision, scores.recall, scores.f1) == (None, None, None, None)
    assert json.loads(json.dumps(scores.as_dict(), allow_nan=False))["iou"] is None
    assert "IoU undefined (no positive pixels)" in str(scores)
    some = binary_scores(np.array([1, 0], bool), np.array([0, 0], bool))  # precision 0/1, recall 0/0
    assert some.precision == 0.0 and some.recall is None and "precision 0.0000" in str(some)


def test_water_label_values(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    label = np.array([[0, 1, 255, 7]], "uint8").reshape(1, 1, 4)
    with pytest.raises(InputError, match=r"7 \(1 px\)"):
        read_water_label(tiny_geotiff(label, name="seven.tif"))
    label[0, 0, 3] = 9  # the file's nodata is unlabelled too
    water, valid = read_water_label(tiny_geotiff(label, name="ok.tif", nodata=9))
    assert water.tolist() == [[False, True, False, False]] and valid.tolist() == [[True, True, False, False]]
