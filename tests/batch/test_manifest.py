"""Manifests without Ray: tables, a folder of scenes and a STAC ItemCollection become the same scenes."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from terramind.batch import read_manifest
from terramind.core.errors import InputError, ModalityError

TILE = "38D_378R_2_3"


@pytest.fixture
def scene_files(tmp_path: Path, examples_dir: Path) -> Path:
    for mod in ("S2L2A", "S1RTC"):
        (tmp_path / mod).mkdir()
        for name in ("a", "b"):
            (tmp_path / mod / f"{name}.tif").symlink_to(examples_dir / mod / f"{TILE}.tif")
    return tmp_path


def test_csv_rows_with_aliases_relative_paths_and_empty_cells(scene_files: Path) -> None:
    manifest = scene_files / "m.csv"
    manifest.write_text("s2l2a,S1,name\nS2L2A/a.tif,S1RTC/a.tif,first\nS2L2A/b.tif,,\n")
    # 'S1' is an alias (of S1GRD): columns are named by any catalog spelling
    first, second = read_manifest(manifest)
    assert first.name == "first" and first.inputs == {
        "S2L2A": str(scene_files / "S2L2A/a.tif"),
        "S1GRD": str(scene_files / "S1RTC/a.tif"),
    }
    assert second.name == "b" and list(second.inputs) == ["S2L2A"] and second.row == "m.csv row 3"


def test_parquet_manifest_equals_csv(scene_files: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"S2L2A": [str(scene_files / "S2L2A/a.tif")], "name": ["x"]})
    pq.write_table(table, scene_files / "m.parquet")
    (scene,) = read_manifest(scene_files / "m.parquet")
    assert (scene.name, scene.inputs) == ("x", {"S2L2A": str(scene_files / "S2L2A/a.tif")})


def test_a_folder_of_scenes_is_matched_by_name(scene_files: Path) -> None:
    scenes = read_manifest(scene_files)
    assert [s.name for s in scenes] == ["a", "b"]
    assert scenes[1].inputs == {
        "S1RTC": str(scene_files / "S1RTC/b.tif"),
        "S2L2A": str(scene_files / "S2L2A/b.tif"),
    }
    (scene_files / "S1RTC" / "b.tif").unlink()
    with pytest.raises(InputError, match="b"):
        read_manifest(scene_files)


def test_a_folder_that_names_no_modality(scene_files: Path) -> None:
    (scene_files / "S2L2B").mkdir()
    with pytest.raises(ModalityError, match="'S2L2B'"):
        read_manifest(scene_files)


def test_a_stac_item_collection_gives_one_scene_per_item(tmp_path: Path, examples_dir: Path) -> None:
    pystac = pytest.importorskip("pystac")
    features = []
    for level, ident in (("S2MSI2A", "S2B_MSIL2A_1"), ("S2MSI1C", "S2B_MSIL1C_2")):
        item = pystac.Item(
            id=ident, geometry=None, bbox=None, datetime=datetime.datetime(2024, 1, 1),
            properties={"s2:product_type": level},
        )  # fmt: skip
        item.add_asset("B02", pystac.Asset(href="bands/B02.tif"))  # relative to the collection file
        features.append(item.to_dict(include_self_link=False))
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    scenes = read_manifest(collection, items_dir=tmp_path / "items")
    assert [(s.name, list(s.inputs)) for s in scenes] == [
        ("S2B_MSIL2A_1", ["S2L2A"]),
        ("S2B_MSIL1C_2", ["S2L1C"]),
    ]
    written = json.loads(Path(scenes[0].inputs["S2L2A"]).read_text())
    assert written["assets"]["B02"]["href"] == str((tmp_path / "bands" / "B02.tif").resolve())
