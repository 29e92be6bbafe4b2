import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch

from terramind.core.errors import InputError, ModalityError, ShapeError
from terramind.data import read_raster
from terramind.viz import quicklook, save_figure, save_quicklook, stretch
from terramind.viz.quicklook import to_uint8

FOLDERS = ("S2L2A", "S2L1C", "S2RGB", "S1RTC", "DEM", "LULC", "NDVI")
WATER = (0x41, 0x9B, 0xDF)


@pytest.mark.parametrize("folder", FOLDERS)
def test_quicklook_of_real_tiles(examples_dir, folder):
    image = quicklook(folder, read_raster(examples_dir / folder / "38D_378R_2_3.tif", folder).data)
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8
    assert image.std() > 5  # a picture, not a flat colour


def test_red_desert_stays_red(examples_dir):
    image = quicklook("S2L2A", read_raster(examples_dir / "S2L2A" / "38D_378R_2_3.tif").data).astype(float)
    red, green, blue = image.reshape(-1, 3).mean(axis=0)
    assert red > green > blue  # a joint stretch keeps the colour balance (examples/: a red desert)


def test_stretch_maps_percentiles_to_the_ends():
    x = np.random.default_rng(0).normal(size=(64, 64))
    lo, hi = np.percentile(x, (2, 98))
    out = to_uint8(stretch(x))
    assert out[x >= hi].min() == 255 and out[x <= lo].max() == 0
    assert 0 < out[(x > lo) & (x < hi)].mean() < 255
    assert np.all(stretch(np.full((4, 4), 3.0)) == 0.5)


def test_true_colour_picks_bands_by_name():
    data = np.zeros((12, 8, 8))
    data[3] = 3000.0  # RED is the 4th S2L2A band (B4)
    data[3, 0, 0] = 0.0  # keep the stretch from collapsing
    image = quicklook("S2L2A", data)
    assert image[1:, 1:, 0].min() == 255 and image[..., 1:].max() == 0


def test_s2rgb_is_shown_as_is():
    data = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    np.testing.assert_array_equal(quicklook("S2RGB", data), data.transpose(1, 2, 0))


def test_sar_false_colour_channels():
    rng = np.random.default_rng(0)
    vv, vh = rng.normal(-10, 3, (16, 16)), rng.normal(-17, 3, (16, 16))
    image = quicklook("S1RTC", torch.from_numpy(np.stack([vv, vh])))
    np.testing.assert_array_equal(image[..., 0], to_uint8(stretch(vv)))
    np.testing.assert_array_equal(image[..., 2], to_uint8(stretch(vv - vh)))


def test_lulc_palette():
    ids = np.arange(10, dtype=np.uint8).repeat(4).reshape(1, 4, 10)
    image = quicklook("LULC", ids)
    assert tuple(image[0, 0]) == (0, 0, 0)
    assert tuple(image[ids[0] == 1][0]) == WATER
    assert len({tuple(p) for p in image.reshape(-1, 3)}) == 10


def test_ndvi_diverging_map():
    image = quicklook("NDVI", np.array([[[-1.0, 0.0, 1.0, np.nan]]]))
    expected = to_uint8(matplotlib.colormaps["RdYlGn"]([0.0, 0.5, 1.0])[:, :3])
    np.testing.assert_array_equal(image[0, :3], expected)
    assert tuple(image[0, 3]) == (0, 0, 0)


def test_dem_colour_follows_elevation_and_shading():
    ramp = np.tile(np.linspace(0, 1000, 32), (32, 1))[None]
    image = quicklook("DEM", ramp).astype(int)
    assert np.abs(image[:, 0] - image[:, -1]).sum() > 0
    hill = np.fromfunction(lambda r, c: 200 * np.exp(-((r - 16) ** 2 + (c - 16) ** 2) / 40), (32, 32))[None]
    shaded = quicklook("DEM", hill).astype(int).sum(-1)
    assert shaded[10, 10] > shaded[22, 22]  # north-west slope lit, south-east slope in shadow


def test_bad_input():
    with pytest.raises(ShapeError, match=r"\(2, H, W\)"):
        quicklook("S1GRD", np.zeros((3, 4, 4)))
    with pytest.raises(ModalityError, match="no quicklook"):
        quicklook("coords", np.zeros((2, 4, 4)))


def test_save_quicklook_and_figure(examples_dir, tmp_path):
    lulc = read_raster(examples_dir / "LULC" / "433D_629L_3_1.tif", "LULC").data
    one = save_quicklook(tmp_path / "lulc.png", "LULC", lulc, title="433D")
    assert one.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panels = [
        (m, m, read_raster(examples_dir / m / "433D_629L_3_1.tif", m).data) for m in ("S2L2A", "DEM", "NDVI")
    ]
    three = save_figure(tmp_path / "fig.png", panels)
    single, triple = matplotlib.image.imread(one), matplotlib.image.imread(three)
    assert triple.shape[1] > 2 * single.shape[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "lulc.png"]


def test_save_errors_leave_no_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        save_quicklook(tmp_path / "missing" / "q.png", "DEM", np.zeros((1, 8, 8)))
    with pytest.raises(ShapeError):
        save_quicklook(tmp_path / "q.png", "DEM", np.zeros((2, 8, 8)))
    with pytest.raises(InputError, match="at least one"):
        save_figure(tmp_path / "f.png", [])
    assert list(tmp_path.iterdir()) == []
