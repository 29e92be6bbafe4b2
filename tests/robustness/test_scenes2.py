"""Bad scenes, refused in one line with exit 2 and nothing written: inputs that do not overlap, a grid that is
not an input, band files missing or not found, S1 in neither dB nor linear power, a product of the other
processing level."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from affine import Affine

_FIXTURES = Path(__file__).parents[1] / "scene" / "scene_fixtures.py"
_spec = importlib.util.spec_from_file_location("scene_fixtures_r", _FIXTURES)
assert _spec is not None and _spec.loader is not None
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

FAST = ["--tile", "64", "--overlap", "16", "--weights", "random"]


def _apart(folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    s2 = fx.s2_on_zone_32(folder)
    s1 = fx.s1_on_zone_33(folder, s2, shift=50_000.0)  # 50 km east: no overlap at all
    return s2, s1


def test_generate_refuses_inputs_that_do_not_overlap(run_cli, tmp_path: Path) -> None:
    s2, s1 = _apart(tmp_path / "in")
    outcome = run_cli(["generate", "--input", f"S2L2A={s2}", "--input", f"S1RTC={s1}", "--to", "DEM",
                       "-o", tmp_path / "out", *FAST])  # fmt: skip
    outcome.expect_failure("S1RTC does not overlap S2L2A", "S1RTC covers (", "S2L2A covers (799000.0",
                           "in EPSG:32632")  # fmt: skip


def test_zeroshot_refuses_inputs_that_do_not_overlap(run_cli, tmp_path: Path) -> None:
    s2, s1 = _apart(tmp_path / "in")
    outcome = run_cli(["zeroshot", "water", "--input", f"S1RTC={s1}", "--input", f"S2L2A={s2}",
                       "-o", tmp_path / "water.tif", *FAST])  # fmt: skip
    outcome.expect_failure("S2L2A does not overlap S1RTC", "in EPSG:32633")


def test_grid_must_name_an_input(run_cli, tmp_path: Path) -> None:
    s2 = fx.s2_on_zone_32(tmp_path)
    outcome = run_cli(["generate", "--input", f"S2L2A={s2}", "--to", "DEM", "--grid", "S1RTC",
                       "-o", tmp_path / "out", *FAST])  # fmt: skip
    outcome.expect_failure("--grid S1RTC: no such input", "S2L2A")


def _bands(folder: Path, ids: tuple[str, ...]) -> list[Path]:
    folder.mkdir()
    layer = np.full((1, 32, 32), 1500, np.uint16)
    return [fx.write(folder / f"T_{b}.tif", layer, fx.S2_CRS, Affine(10, 0, 0, 0, -10, 0)) for b in ids]


def test_a_band_missing_from_a_band_list_is_named(run_cli, tmp_path: Path) -> None:
    ids = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B12")  # no B11
    files = _bands(tmp_path / "in", ids)
    outcome = run_cli(["generate", "--input", "S2L2A=" + ",".join(map(str, files)), "--to", "DEM",
                       "-o", tmp_path / "out", *FAST])  # fmt: skip
    outcome.expect_failure("no file for band(s) B11 (SWIR_1)")


def test_band_lists_and_globs_that_name_no_file(run_cli, tmp_path: Path) -> None:
    files = _bands(tmp_path / "in", ("B02",))
    missing = tmp_path / "in" / "T_B03.tif"
    outcome = run_cli(["generate", "--input", f"S2L2A={files[0]},{missing}", "--to", "DEM", "-o",
                       tmp_path / "out", *FAST])  # fmt: skip
    outcome.expect_failure("band file(s)", "T_B03.tif do not exist")
    outcome = run_cli(["generate", "--input", f"S2L2A={tmp_path}/in/*_B9?.jp2", "--to", "DEM", "-o",
                       tmp_path / "out", *FAST])  # fmt: skip
    outcome.expect_failure("matches no file")


def test_s1_neither_db_nor_linear_power_is_refused(run_cli, tmp_path: Path) -> None:
    data = np.random.default_rng(0).uniform(0.01, 1.0, (2, 64, 64)).astype(np.float32)
    data[:, :4] = -3.0  # mostly positive (linear power?) but negative values too
    s1 = fx.write(tmp_path / "s1.tif", data, fx.S1_CRS, Affine(10, 0, 0, 0, -10, 0))
    outcome = run_cli(["generate", "--input", f"S1RTC={s1}", "--to", "DEM", "-o", tmp_path / "out", *FAST])
    outcome.expect_failure("most values are positive, as in linear power, but some are negative",
                           "10*log10")  # fmt: skip


def test_an_l1c_product_given_as_l2a_is_refused(run_cli, tmp_path: Path) -> None:
    ids = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    _bands(tmp_path / "in", ids)
    (tmp_path / "in" / "MTD_MSIL1C.xml").write_text("<PROCESSING_BASELINE>05.09</PROCESSING_BASELINE>")
    outcome = run_cli(["zeroshot", "water", "--input", f"S2L2A={tmp_path / 'in'}", "-o", tmp_path / "w.tif",
                       *FAST])  # fmt: skip
    outcome.expect_failure("is a Sentinel-2 L1C product (MTD_MSIL1C.xml), not S2L2A", "--input S2L1C=")
