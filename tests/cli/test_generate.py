"""``terramind generate`` end to end on the example tiles, with a tiny random generator (fast)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from terramind.api import generation as api_generation
from terramind.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
S2 = EXAMPLES / "S2L2A" / "38D_378R_2_3.tif"
TINY = Path(__file__).parents[1] / "generation" / "tiny.py"
_spec = importlib.util.spec_from_file_location("gen_tiny", TINY)
assert _spec is not None and _spec.loader is not None
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

FAST = [
    "--tile",
    "64",
    "--overlap",
    "16",
    "--diffusion-steps",
    "1",
    "--batch-size",
    "4",
    "--weights",
    "random",
]


@pytest.fixture
def made(monkeypatch):
    """Replace the real factory (base model + 289M-parameter tokenizers) by the tiny random one."""
    calls = []

    def factory(name, *, inputs, outputs, weights=None, tokenizer_weights=None):
        calls.append(dict(name=name, inputs=inputs, outputs=outputs, weights=weights))
        return tiny.tiny_generator(inputs, outputs)

    monkeypatch.setattr(api_generation, "create_generator", factory)
    return calls


GRID = Affine(10, 0, 500000, 0, -10, 6000000)


def write(path: Path, data: np.ndarray, *, transform=GRID, nodata=None):
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=str(data.dtype),
        crs="EPSG:32632",
        transform=transform,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def s2_scene(tmp_path: Path, size=(96, 120), name="s2.tif", **kw) -> Path:
    with rasterio.open(S2) as src:
        data = src.read()[:, : size[0], : size[1]].astype(np.float32)
    return write(tmp_path / name, data, **kw)


def test_example_tile_to_lulc_and_dem(tmp_path, made, capsys):
    out = tmp_path / "out"
    args = ["--input", f"S2L2A={S2}", "--to", "LULC,DEM", "-o", str(out), "--png", *FAST, "--tile", "112"]
    code = main(["generate", *args])
    assert code == 0
    err = capsys.readouterr().err
    assert "RANDOM (untrained)" in err
    assert made[0]["weights"] is None and made[0]["outputs"] == ["LULC", "DEM"]
    with rasterio.open(S2) as src, rasterio.open(out / "LULC.tif") as lulc:
        assert lulc.crs == src.crs and lulc.transform == src.transform and lulc.shape == src.shape
        assert lulc.dtypes[0] == "uint8" and lulc.colormap(1)[1][:3] == (0x41, 0x9B, 0xDF)
        classes = lulc.read(1)
        assert classes.min() >= 0 and classes.max() <= 9 and len(np.unique(classes)) > 1
    with rasterio.open(out / "DEM.tif") as dem:
        assert dem.dtypes[0] == "float32" and dem.descriptions == ("DEM",)
        assert np.isfinite(dem.read(1)).all()
    assert (out / "LULC.png").stat().st_size > 0 and (out / "DEM.png").stat().st_size > 0
    assert not (out / ".terramind-partial").exists()


def test_same_seed_same_scene_and_small_scene_is_padded(tmp_path, made):
    scene = s2_scene(tmp_path, size=(40, 50))
    runs = []
    for name in ("a", "b"):
        args = ["--input", f"S2L2A={scene}", "--to", "LULC", "-o", str(tmp_path / name), *FAST]
        assert main(["generate", *args]) == 0
        with rasterio.open(tmp_path / name / "LULC.tif") as f:
            runs.append(f.read())
    assert runs[0].shape == (1, 40, 50)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_nan_and_nodata_inputs_become_nodata(tmp_path, made):
    with rasterio.open(S2) as src:
        data = src.read()[:, :96, :96].astype(np.float32)
    data[:, 10:20, 10:30] = np.nan
    data[:, 50:60, 40:60] = -1.0
    scene = write(tmp_path / "s2.tif", data, nodata=-1.0)
    out = tmp_path / "out"
    assert main(["generate", "--input", f"S2L2A={scene}", "--to", "LULC,DEM", "-o", str(out), *FAST]) == 0
    with rasterio.open(out / "LULC.tif") as lulc, rasterio.open(out / "DEM.tif") as dem:
        classes, height = lulc.read(1), dem.read(1)
        assert dem.nodata == -9999.0 and lulc.nodata == 0
    for block in (np.s_[10:20, 10:30], np.s_[50:60, 40:60]):
        assert (classes[block] == 0).all() and (height[block] == -9999.0).all()
    assert (height[30:40, 70:90] != -9999.0).all()


def test_interrupted_run_resumes_to_the_same_result(tmp_path, made, monkeypatch):
    scene = s2_scene(tmp_path, size=(150, 100))
    args = ["generate", "--input", f"S2L2A={scene}", "--to", "DEM", *FAST, "--batch-size", "1"]
    assert main([*args, "-o", str(tmp_path / "full")]) == 0

    real = tiny.tiny_generator
    calls = {"n": 0}

    def flaky(inputs, outputs):
        gen = real(inputs, outputs)
        generate = gen.generate

        def interrupted(*a, **k):
            calls["n"] += 1
            if calls["n"] == 5:  # first tile of the third (last) row: 2 tiles per row at this size
                raise KeyboardInterrupt
            return generate(*a, **k)

        gen.generate = interrupted
        return gen

    monkeypatch.setattr(tiny, "tiny_generator", flaky)
    part = tmp_path / "part"
    assert main([*args, "-o", str(part)]) == 130
    assert (part / ".terramind-partial" / "progress.json").exists() and not (part / "DEM.tif").exists()
    monkeypatch.setattr(tiny, "tiny_generator", real)
    assert main([*args, "-o", str(part)]) == 0
    with rasterio.open(tmp_path / "full" / "DEM.tif") as a, rasterio.open(part / "DEM.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--to", "S2L1C"], "S2L1C cannot be generated"),
        (["--to", "S2RGB"], "S2RGB cannot be generated"),
        (["--to", "S2L2A"], "both an input and an output"),
        (["--to", "coords"], "not an image"),
        (["--to", "LULC", "--tile", "100"], "multiple of 16"),
    ],
)
def test_bad_requests_fail_with_one_line(tmp_path, made, capsys, extra, message):
    code = main(["generate", "--input", f"S2L2A={S2}", "-o", str(tmp_path / "o"), *FAST, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not made  # nothing was loaded


def test_mismatched_grids_are_warped_and_named(tmp_path, made, capsys):
    # inputs on different grids are no longer refused (issue 12): the second is warped onto the first's grid
    s2 = s2_scene(tmp_path)
    shifted = Affine(10, 0, 500100, 0, -10, 6000000)
    s1 = write(tmp_path / "s1.tif", np.full((2, 96, 120), -12.0, np.float32), transform=shifted)
    code = main(
        [
            "generate",
            "--input",
            f"S2L2A={s2}",
            "--input",
            f"S1RTC={s1}",
            "--to",
            "DEM",
            "-o",
            str(tmp_path / "o"),
            *FAST,
        ]
    )
    err = capsys.readouterr().err
    assert code == 0 and "S1RTC" in err and "is warped onto the grid of S2L2A" in err
    with rasterio.open(s2) as src, rasterio.open(tmp_path / "o" / "DEM.tif") as dem:
        assert (dem.crs, dem.transform, dem.shape) == (src.crs, src.transform, src.shape)


def test_existing_output_is_kept_without_overwrite(tmp_path, made, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "LULC.tif").write_bytes(b"precious")
    code = main(["generate", "--input", f"S2L2A={S2}", "--to", "LULC", "-o", str(out), *FAST])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "LULC.tif").read_bytes() == b"precious"
    assert not made


def test_bad_input_argument(tmp_path, made, capsys):
    assert main(["generate", "--input", str(S2), "--to", "LULC", "-o", str(tmp_path), *FAST]) == 2
    assert "MOD=VALUE" in capsys.readouterr().err


def test_random_weights_give_byte_identical_outputs_run_after_run(tmp_path):
    # the real factory (no stand-in): the model and the decoders are random, seeded from their names, so
    # the README's main job writes the same files every time (issue: "--weights random is not reproducible")
    scene = s2_scene(tmp_path, size=(64, 64))
    common = ["--model", "terramind_v1_tiny", "--weights", "random", "--seed", "0", "--tile", "64"]
    for out in ("a", "b"):
        argv = ["generate", "--input", f"S2L2A={scene}", "--to", "LULC", "-o", str(tmp_path / out), *common]
        assert main(argv) == 0
    assert (tmp_path / "a" / "LULC.tif").read_bytes() == (tmp_path / "b" / "LULC.tif").read_bytes()
