"""Sentinel details where users trip: S1 in linear power, the +1000 DN offset outside ``generate`` (L1C with
the offset in its metadata), band files as a list or glob, the ``--stac`` item and COG validation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds

from terramind.api import generation as api_generation
from terramind.cli import zeroshot
from terramind.cli.main import main
from terramind.core.errors import InputError
from terramind.evaluate.embeddings import read_embeddings
from terramind.scene import notes, scene_source
from terramind.scene.offsets import product_offset

_spec = importlib.util.spec_from_file_location(
    "scene_fixtures_p", Path(__file__).parent / "scene_fixtures.py"
)
assert _spec is not None and _spec.loader is not None
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

FAST = ["--tile", "64", "--overlap", "16", "--batch-size", "4", "--weights", "random"]
L1C_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product><n1:General_Info><Product_Info>
<PROCESSING_BASELINE>05.09</PROCESSING_BASELINE></Product_Info>
<Product_Image_Characteristics><Radiometric_Offset_List>
{offsets}</Radiometric_Offset_List></Product_Image_Characteristics></n1:General_Info></n1:Level-1C_User_Product>
"""


@pytest.fixture
def tiny_factory(monkeypatch):
    def factory(name, *, inputs, outputs, weights=None, tokenizer_weights=None):
        return fx.tiny.tiny_generator(inputs, outputs)

    monkeypatch.setattr(api_generation, "create_generator", factory)
    monkeypatch.setattr(zeroshot, "create_generator", factory)


def l1c_data(side: int = 96) -> np.ndarray:
    """13-band L1C DN with the +1000 offset: the example tile's bands (CIRRUS made up), plus 1000."""
    with rasterio.open(fx.EXAMPLE) as src:
        l2a = src.read()[:, :side, :side].astype(np.int32)
    cirrus = np.full((1, side, side), 15, np.int32)
    return (np.concatenate([l2a[:10], cirrus, l2a[10:]]) + 1000).astype(np.uint16)


def l1c_folder(folder: Path, *, mtd: bool = True) -> Path:
    """A band-files folder of the L1C scene (one file per band, 10 m), with MTD_MSIL1C.xml if ``mtd``."""
    folder.mkdir(parents=True)
    transform = Affine(10.0, 0.0, fx.S2_ORIGIN[0], 0.0, -10.0, fx.S2_ORIGIN[1])
    for band_id, layer in zip(L1C_IDS, l1c_data(), strict=True):
        fx.write(folder / f"T32TQR_20240101T101010_{band_id}.tif", layer[None], fx.S2_CRS, transform)
    if mtd:
        offsets = "".join(f'<RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>\n' for i in range(13))
        (folder / "MTD_MSIL1C.xml").write_text(MTD.format(offsets=offsets))
    return folder


# ------------------------------------------------------------------------------------- S1 linear power
def test_s1_in_linear_power_is_read_as_db(tmp_path: Path) -> None:
    s2 = fx.s2_on_zone_32(tmp_path)
    linear = fx.s1_on_zone_33(tmp_path, s2, linear=True)
    decibel = fx.s1_on_zone_33(tmp_path, s2)
    got = scene_source({"S1RTC": linear})
    want = scene_source({"S1RTC": decibel})
    (a, valid), (b, _) = got.read_rows(0, 40), want.read_rows(0, 40)
    # float32 power 10**(dB/10) and back: relative error ~1e-7, i.e. ~4e-7 dB; 1e-4 dB bounds it widely
    np.testing.assert_allclose(a["S1RTC"][:, 3:], b["S1RTC"][:, 3:], atol=1e-4)
    assert not valid[:3, :3].any() and valid[3:].all()  # nodata stays nodata
    assert notes(got) == [
        f"S1RTC input {str(linear)!r} looks like linear power: converted to dB (10*log10(x))"
    ]
    assert notes(want) == []  # dB is read as it is


def test_generate_says_the_conversion_once(tmp_path: Path, tiny_factory, capsys) -> None:  # type: ignore[no-untyped-def]
    s2 = fx.s2_on_zone_32(tmp_path)
    linear = fx.s1_on_zone_33(tmp_path, s2, linear=True)
    assert (
        main(["generate", "--input", f"S1RTC={linear}", "--to", "DEM", "-o", str(tmp_path / "o"), *FAST]) == 0
    )
    assert capsys.readouterr().err.count("looks like linear power: converted to dB") == 1


# --------------------------------------------------------------------------- the offset outside generate
def test_the_offset_is_read_from_mtd_tags_and_items(tmp_path: Path) -> None:
    folder = l1c_folder(tmp_path / "l1c")
    found = product_offset("S2L1C", folder)
    assert found is not None and found.offset == 1000.0 and "MTD_MSIL1C.xml: ADD_OFFSET -1000" in found.source
    files = sorted(folder.glob("*.tif"))
    assert product_offset("S2L1C", files) == found  # a band-file list: the metadata of its folder
    tagged = fx.write(tmp_path / "t.tif", l1c_data(), fx.S2_CRS, Affine(10, 0, 0, 0, -10, 0),
                      PROCESSING_BASELINE="04.00")  # fmt: skip
    assert product_offset("S2L1C", tagged).offset == 1000.0  # type: ignore[union-attr]
    old = fx.write(tmp_path / "o.tif", l1c_data(), fx.S2_CRS, Affine(10, 0, 0, 0, -10, 0),
                   PROCESSING_BASELINE="03.01")  # fmt: skip
    assert product_offset("S2L1C", old).offset == 0.0  # type: ignore[union-attr]
    assert product_offset("S2L1C", fx.EXAMPLE) is None  # says nothing
    assert product_offset("S1RTC", folder) is None  # not optical
    with pytest.raises(InputError, match=r"Sentinel-2 L1C product \(MTD_MSIL1C.xml\), not S2L2A: give it as"):
        product_offset("S2L2A", folder)


def _mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as f:
        return f.read(1)


def test_zeroshot_water_applies_the_l1c_offset_from_its_metadata(
    tmp_path: Path, tiny_factory, capsys
) -> None:  # type: ignore[no-untyped-def]
    with_mtd = l1c_folder(tmp_path / "mtd")
    bare = l1c_folder(tmp_path / "bare", mtd=False)
    runs = {}
    cases = [("auto", with_mtd, []), ("explicit", bare, ["--offset", "S2L1C=1000"]),
             ("override", with_mtd, ["--offset", "S2L1C=0"]), ("zero", bare, [])]  # fmt: skip
    for name, folder, extra in cases:
        capsys.readouterr()
        out = tmp_path / f"{name}.tif"
        args = [
            "zeroshot",
            "water",
            "--input",
            f"S2L1C={folder}",
            "-o",
            str(out),
            "--keep-lulc",
            *FAST,
            *extra,
        ]
        assert main(args) == 0
        runs[name] = (_mask(tmp_path / f"{name}_lulc.tif"), capsys.readouterr().err)
    assert (
        "MTD_MSIL1C.xml: ADD_OFFSET -1000: DN offset 1000 applied (--offset S2L1C=N overrides)"
        in runs["auto"][1]
    )
    assert "using --offset S2L1C=0 as given (the metadata implies 1000)" in runs["override"][1]
    assert "DN offset" not in runs["zero"][1]
    np.testing.assert_array_equal(runs["auto"][0], runs["explicit"][0])  # automatic == explicit 1000
    np.testing.assert_array_equal(runs["override"][0], runs["zero"][0])  # --offset wins
    assert not np.array_equal(runs["auto"][0], runs["zero"][0])  # and the offset does change the map


def test_embed_applies_the_offset_from_geotiff_tags(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    grid = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)
    tagged = fx.write(tmp_path / "tagged.tif", l1c_data(64), fx.S2_CRS, grid, RADIO_ADD_OFFSET="-1000")
    bare = fx.write(tmp_path / "bare.tif", l1c_data(64), fx.S2_CRS, grid)
    base = ["embed", "--model", "terramind_v1_tiny", "--weights", "random"]
    got = {}
    for name, path, extra in [("auto", tagged, []), ("explicit", bare, ["--offset", "S2L1C=1000"]),
                              ("zero", bare, [])]:  # fmt: skip
        out = tmp_path / f"{name}.npy"
        assert main([*base, "--input", f"S2L1C={path}", "-o", str(out), *extra]) == 0
        got[name] = read_embeddings(out)[1]
    assert "tagged.tif tags: ADD_OFFSET -1000: DN offset 1000 applied" in capsys.readouterr().err
    np.testing.assert_array_equal(got["auto"], got["explicit"])
    assert not np.array_equal(got["auto"], got["zero"])


# ------------------------------------------------------------------------------ band files: list and glob
def test_band_files_as_a_list_or_a_glob_read_as_the_folder(tmp_path: Path, tiny_factory) -> None:  # type: ignore[no-untyped-def]
    folder = l1c_folder(tmp_path / "l1c", mtd=False)
    files = sorted(folder.glob("*.tif"))
    out = {}
    for name, value in [("folder", str(folder)), ("list", ",".join(map(str, files))),
                        ("glob", f"{folder}/*_B??.tif")]:  # fmt: skip
        assert main(["generate", "--input", f"S2L1C={value}", "--to", "DEM", "-o", str(tmp_path / name),
                     "--seed", "1", *FAST]) == 0  # fmt: skip
        out[name] = tmp_path / name / "DEM.tif"
    np.testing.assert_array_equal(_mask(out["list"]), _mask(out["folder"]))
    np.testing.assert_array_equal(_mask(out["glob"]), _mask(out["folder"]))


# ----------------------------------------------------------------------------------- STAC item and COG
def test_generate_stac_item_describes_the_outputs(tmp_path: Path, tiny_factory) -> None:  # type: ignore[no-untyped-def]
    pystac = pytest.importorskip("pystac", reason="the stac extra is not installed")
    src = fx.write(tmp_path / "s2.tif", l1c_data()[np.r_[0:10, 11:13]].astype(np.int16), fx.S2_CRS,
                   Affine(10.0, 0.0, fx.S2_ORIGIN[0], 0.0, -10.0, fx.S2_ORIGIN[1]),
                   TIFFTAG_DATETIME="2024:01:01 10:10:10")  # fmt: skip
    out = tmp_path / "out"
    args = ["--input", f"S2L2A={src}", "--to", "LULC,DEM", "-o", str(out), "--stac", "--offset", "S2L2A=1000"]
    assert main(["generate", *args, *FAST]) == 0
    item = pystac.Item.from_file(str(out / "item.json"))
    assert item.datetime.isoformat().startswith("2024-01-01T10:10:10")  # the input's, not now
    assert set(item.assets) == {"LULC", "DEM"}
    for key, asset in item.assets.items():
        assert asset.media_type == pystac.MediaType.COG and asset.roles == ["data"]
        assert Path(asset.get_absolute_href()) == (out / f"{key}.tif").resolve()
    assert item.properties["terramind:model"] == "terramind_v1_base"
    assert item.properties["terramind:offset"] == {"S2L2A": 1000.0}
    assert item.properties["terramind:outputs"] == ["LULC", "DEM"]
    # about 12.81 deg E, 45.1 deg N: the S2 tile's footprint (EPSG:32632, 960 m square) in EPSG:4326; its
    # edges are straight lines in UTM, so the bbox of the densified ring is PROJ's densified bounds
    west, south, east, north = item.bbox
    assert 12.7 < west < east < 12.9 and 45.0 < south < north < 45.2
    with rasterio.open(src) as f:
        expected = transform_bounds(f.crs, "EPSG:4326", *f.bounds, densify_pts=21)
    np.testing.assert_allclose(item.bbox, expected, atol=1e-6)  # 1e-6 deg is 0.1 m
    assert json.loads((out / "item.json").read_text())["type"] == "Feature"


def test_zeroshot_outputs_pass_cog_validation(tmp_path: Path, tiny_factory) -> None:  # type: ignore[no-untyped-def]
    cogeo = pytest.importorskip("rio_cogeo.cogeo", reason="rio-cogeo (extra xarray) is not installed")
    s2 = fx.s2_on_zone_32(tmp_path, side=300)  # larger than one 256 px block: overviews exist
    out = tmp_path / "water.tif"
    args = ["zeroshot", "water", "--input", f"S2L2A={s2}", "-o", str(out), "--keep-lulc", *FAST]
    assert main(args) == 0
    for path in (out, tmp_path / "water_lulc.tif"):
        valid, errors, warnings = cogeo.cog_validate(str(path), quiet=True)
        assert valid and not errors, (path, errors, warnings)


# -------------------------------------------------------------------------------- inspect: the same sources
def test_inspect_reads_band_files_stac_items_and_lists(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    _sf = importlib.util.spec_from_file_location("safe_fixture_p", Path(__file__).parent / "safe_fixture.py")
    assert _sf is not None and _sf.loader is not None
    safe_fixture = importlib.util.module_from_spec(_sf)
    _sf.loader.exec_module(safe_fixture)
    item = safe_fixture.write_item(tmp_path)
    safe = tmp_path / safe_fixture.SAFE_NAME
    files = sorted(p for p in safe.rglob("*_B*_*m.tif"))
    reports = {}
    for name, argv in [("safe", [str(safe), "-m", "S2L2A"]), ("item", [str(item), "-m", "S2L2A"]),
                       ("list", ["--input", "S2L2A=" + ",".join(map(str, files))])]:  # fmt: skip
        capsys.readouterr()
        assert main(["inspect", *argv, "--json"]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    for report in reports.values():
        side = safe_fixture.SIDE
        assert (report["width"], report["height"], report["bands"]) == (side, side, 12)
        assert report["errors"] == 0
        assert any(f["level"] == "note" and "not a multiple of the 16-pixel patch" in f["message"]
                   for f in report["findings"])  # 216 px: a note, not an error  # fmt: skip
    assert reports["safe"]["band_stats"] == reports["item"]["band_stats"] == reports["list"]["band_stats"]
    with rasterio.open(fx.EXAMPLE) as src:  # 10 m bands are read as they are: BLUE's mean is the file's
        blue = src.read(2)[: safe_fixture.SIDE, : safe_fixture.SIDE].astype(np.float64)
    assert reports["safe"]["band_stats"][1]["band"] == "BLUE"
    assert abs(reports["safe"]["band_stats"][1]["mean"] - blue.mean()) < 1e-6 * blue.mean()
