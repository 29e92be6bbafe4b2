"""``terramind finetune scene`` on inputs of two UTM zones: ``--grid``, ``--resampling``, ``--stac``.

The task is a tiny random TerraMind segmentation model built from its config (no training needed: the
test is about grids and files, not about what the model predicts); its checkpoint holds the task's
``state_dict`` as ``fit`` writes it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import rasterio
import torch
import yaml
from rasterio.warp import transform_bounds

from terramind.cli.main import main

pytest.importorskip("lightning")

_FIXTURES = Path(__file__).parents[1] / "scene" / "scene_fixtures.py"
_spec = importlib.util.spec_from_file_location("scene_fixtures_ft", _FIXTURES)
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

NUM_CLASSES = 4


def _config(tmp_path: Path, examples: Path) -> Path:
    config = {
        "seed": 0,
        "trainer": {"accelerator": "cpu", "logger": "none", "progress_bar": False},
        "task": {
            "kind": "segmentation",
            "num_classes": NUM_CLASSES,
            "layer_indices": [0],
            "decoder": "fcn",
            "decoder_kwargs": {"channels": 8},
        },
        "backbone": {"name": "terramind_v1_tiny", "modalities": ["S2L2A", "S1RTC"], "encoder_depth": 1},
        "data": {
            "kind": "geotiff",
            "data_root": str(examples),
            "num_classes": NUM_CLASSES,
            "folders": {"label": "LULC"},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def task_files(tmp_path: Path, examples_dir: Path) -> tuple[Path, Path]:
    """A config and a checkpoint of its (untrained) task, as ``fit`` writes it (``state_dict``)."""
    from terramind.finetune.config import FinetuneConfig
    from terramind.finetune.run import build
    from terramind.train.config import load_yaml

    config = _config(tmp_path, examples_dir)
    task, _ = build(load_yaml(FinetuneConfig, config))
    ckpt = tmp_path / "task.ckpt"
    torch.save({"state_dict": task.state_dict()}, ckpt)
    return config, ckpt


@pytest.fixture
def two_zones(tmp_path: Path) -> tuple[Path, Path]:
    """S2L2A on EPSG:32632 (10 m) and S1RTC on EPSG:32633 (20 m) over the same ground."""
    s2 = fixtures.s2_on_zone_32(tmp_path, side=64)
    return s2, fixtures.s1_on_zone_33(tmp_path, s2, margin=100.0)


def _argv(task_files: tuple[Path, Path], two_zones: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    (config, ckpt), (s2, s1) = task_files, two_zones
    return ["finetune", "scene", "-c", str(config), "--ckpt_path", str(ckpt), "--input", f"S2L2A={s2}",
            "--input", f"S1RTC={s1}", "-o", str(out), "--tile", "32", "--overlap", "8", *extra]  # fmt: skip


@pytest.mark.parametrize("grid", ["S1RTC", "S2L2A"])
def test_finetune_scene_writes_on_the_grid_input_grid(
    tmp_path: Path, task_files: tuple[Path, Path], two_zones: tuple[Path, Path], grid: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "out" / "map.tif"
    out.parent.mkdir()
    assert main(_argv(task_files, two_zones, out, "--grid", grid, "--resampling", "nearest")) == 0
    reference = dict(zip(["S2L2A", "S1RTC"], two_zones, strict=True))[grid]
    with rasterio.open(out) as dst, rasterio.open(reference) as ref:
        assert (dst.crs, dst.transform, dst.shape) == (ref.crs, ref.transform, ref.shape)
        classes = dst.read(1)
    valid = classes != 255  # nodata where the S1 grid's margin lies beyond the S2 tile
    assert (classes[valid] < NUM_CLASSES).all() and valid.mean() > 0.3
    assert valid.all() == (grid == "S2L2A")  # the S1 tile covers all of the S2 tile, not the other way
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert any("warp" in line for line in notes), notes  # the other input is warped, and it is said
    assert len(notes) == len(set(notes)), notes  # each note once, though the scene is scanned twice
    assert not out.with_name("map_item.json").exists()  # no --stac, no item


def test_finetune_scene_stac_item_describes_the_map(
    tmp_path: Path, task_files: tuple[Path, Path], two_zones: tuple[Path, Path]
) -> None:
    out = tmp_path / "map.tif"
    assert main(_argv(task_files, two_zones, out, "--stac")) == 0
    item = json.loads(out.with_name("map_item.json").read_text())
    assert [Path(a["href"]).name for a in item["assets"].values()] == ["map.tif"]
    with rasterio.open(two_zones[0]) as s2:  # default grid: the first input's footprint
        bounds = transform_bounds(s2.crs, "EPSG:4326", *s2.bounds)
    # corners vs a densified edge of a 640 m UTM square: well under one 10 m pixel (~1e-4 deg)
    assert item["bbox"] == pytest.approx(list(bounds), abs=1e-4)
    assert item["properties"]["terramind:kind"] == "classes"


def test_finetune_scene_grid_must_be_an_input(
    tmp_path: Path, task_files: tuple[Path, Path], two_zones: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "map.tif"
    assert main(_argv(task_files, two_zones, out, "--grid", "DEM")) == 2
    err = capsys.readouterr().err
    assert "--grid DEM: no such input; give one of S2L2A, S1RTC" in err and "Traceback" not in err
    assert not out.exists()
