"""The Lightning-free tile layer: imports without Lightning, seeded augmentation, one tile size per batch,
folders checked as units."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from terramind.core.errors import InputError
from terramind.data.tiles import (
    GeoTiffDataset,
    check_tiles,
    collate,
    match_files,
    modality_inputs,
    read_label,
)

S1 = modality_inputs(["S1RTC"], {}, {}, {}, {})


def test_data_layer_and_embed_import_without_lightning() -> None:
    # A base install has no Lightning: block it and import what `terramind embed` and evaluation need.
    code = (
        "import sys; sys.modules['lightning'] = None; sys.modules['pytorch_lightning'] = None\n"
        "import terramind.data, terramind.data.tiles, terramind.evaluate.embeddings, terramind.cli.embed\n"
        "assert 'lightning' not in {m.split('.')[0] for m in sys.modules if sys.modules[m] is not None}\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def _s1_tiles(tiny_geotiff, names: list[str], size: int = 32) -> list[dict[str, Path]]:  # type: ignore[no-untyped-def]
    out = []
    for i, name in enumerate(names):
        data = np.random.default_rng(i).uniform(-25, -5, (2, size, size)).astype("float32")
        out.append({"S1RTC": tiny_geotiff(data, name=f"{name}.tif")})
    return out


def test_augmentation_is_seeded_and_leaves_the_global_rng_alone(tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    files = _s1_tiles(tiny_geotiff, ["a"])

    def samples(seed: int) -> list[torch.Tensor]:
        dataset = GeoTiffDataset(files, S1, augment=True, crop_size=16, seed=seed)
        return [dataset[0]["inputs"]["S1RTC"] for _ in range(6)]

    torch_state, py_state = torch.get_rng_state(), random.getstate()
    first, again, other = samples(7), samples(7), samples(8)
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == py_state
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(first, other, strict=True))
    assert len({tuple(x.flatten().tolist()) for x in first}) > 1  # the draws advance within a run
    dataset = GeoTiffDataset(files, S1, augment=True, crop_size=16, seed=7)
    dataset.epoch = 1  # a new epoch restarts from another seed
    assert not torch.equal(dataset[0]["inputs"]["S1RTC"], first[0])


def test_collate_refuses_mixed_sizes_naming_both_files(tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    small = _s1_tiles(tiny_geotiff, ["small"], 32)
    large = _s1_tiles(tiny_geotiff, ["large"], 48)
    dataset = GeoTiffDataset(small + large, S1)
    with pytest.raises(InputError, match=r"small\.tif' is 32x32, .*large\.tif' is 48x48"):
        collate([dataset[0], dataset[1]])
    batch = collate([dataset[0], dataset[0]])
    assert batch["inputs"]["S1RTC"].shape == (2, 2, 32, 32)


def test_check_tiles_names_the_bad_tile_or_skips_it(tiny_geotiff, caplog) -> None:  # type: ignore[no-untyped-def]
    good = _s1_tiles(tiny_geotiff, ["good"])[0]
    nan = np.full((2, 32, 32), np.nan, "float32")
    empty = {"S1RTC": tiny_geotiff(nan, name="empty.tif", nodata=float("nan"))}
    tiles = {"good": good, "empty": empty}
    check_tiles(tiles, S1)  # headers only: the all-NaN tile opens fine
    with pytest.raises(InputError, match=r"empty\.tif' has no valid pixels"):
        check_tiles(tiles, S1, read=True)
    kept, skipped = check_tiles(tiles, S1, skip_bad=True)
    assert list(kept) == ["good"] and [s.name for s in skipped] == ["empty"]
    assert "skipped 1 bad tile(s)" in caplog.text and "no valid pixels" in caplog.text
    with pytest.raises(InputError, match="none of the 1 tile"):
        check_tiles({"empty": empty}, S1, skip_bad=True)


def test_check_tiles_refuses_modalities_on_different_grids(tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    s1 = tiny_geotiff(np.full((2, 32, 32), -12.0, "float32"), name="s1.tif")
    dem = tiny_geotiff(np.full((1, 32, 32), 300, "int16"), name="dem.tif", crs="EPSG:4326")
    inputs = modality_inputs(["S1RTC", "DEM"], {}, {}, {}, {})
    with pytest.raises(
        InputError, match=r"tile 't': .*dem\.tif' is not on the grid of .*s1\.tif' \(CRS differs"
    ):
        check_tiles({"t": {"S1RTC": s1, "DEM": dem}}, inputs)


def test_match_files_skip_bad(tmp_path: Path) -> None:
    for folder, names in {"a": ["x", "y"], "b": ["x"]}.items():
        (tmp_path / folder).mkdir()
        for n in names:
            (tmp_path / folder / f"{n}.tif").touch()
    folders = {"a": tmp_path / "a", "b": tmp_path / "b"}
    with pytest.raises(InputError, match="b lacks 1 id"):
        match_files(folders)
    assert list(match_files(folders, skip_bad=True)) == ["x"]


def test_read_label_checks(tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    assert read_label(tiny_geotiff(np.ones((1, 8, 8), "float32"), name="whole.tif")).data.shape == (1, 8, 8)
    with pytest.raises(InputError, match="has 2 bands; a label has one"):
        read_label(tiny_geotiff(np.ones((2, 8, 8), "uint8"), name="two.tif"))
    frac = np.ones((1, 8, 8), "float32")
    frac[0, 0, :3] = 0.25
    with pytest.raises(InputError, match=r"3 fractional value\(s\) \(e\.g\. 0\.25\)"):
        read_label(tiny_geotiff(frac, name="frac.tif"))
    assert read_label(tiny_geotiff(frac, name="target.tif"), integer=False).data[0, 0, 0] == 0.25
