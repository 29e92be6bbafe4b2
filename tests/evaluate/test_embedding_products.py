"""Embedding products (``embed --scene``): per-patch vectors of a whole scene as a COG and GeoParquet."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from terramind.api.models import create_backbone
from terramind.cli.main import main
from terramind.evaluate.embeddings import CellSource, embed_scene, read_embeddings
from terramind.scene import scene_source

pytest.importorskip("pyarrow")
pytest.importorskip("pyproj")

TILE = "38D_378R_2_3"
TINY = ["--model", "terramind_v1_tiny", "--weights", "random"]


def crop(examples_dir: Path, out: Path, width: int, height: int, nodata_cols: int = 0) -> Path:
    """Crop an example S2L2A tile to ``width`` x ``height``; the first ``nodata_cols`` columns: nodata."""
    with rasterio.open(examples_dir / "S2L2A" / f"{TILE}.tif") as src:
        window = Window(0, 0, width, height)
        data = src.read(window=window)
        profile = {**src.profile, "width": width, "height": height, "transform": src.window_transform(window)}
    if nodata_cols:
        data[:, :, :nodata_cols] = 0
        profile["nodata"] = 0
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    return create_backbone("terramind_v1_tiny", ["S2L2A"], weights=None)


def test_cells_fold_pixels_into_channels_and_back(examples_dir: Path, tmp_path: Path) -> None:
    # a scene of 40 x 24 px is 3 x 2 cells of 16 px; the last column and row are mirror-padded
    scene = crop(examples_dir, tmp_path / "s.tif", 40, 24)
    source = CellSource(scene_source({"S2L2A": scene}), 16)
    assert (source.georef.width, source.georef.height) == (3, 2)
    assert source.georef.transform.a == 16 * 10.0  # 10 m pixels -> 160 m cells
    cells, valid = source.read_rows(0, 2)
    assert cells["S2L2A"].shape == (12 * 256, 2, 3) and valid.all()
    pixels, _ = scene_source({"S2L2A": scene}).read_rows(0, 16)
    # cell (0, 1), band 0, pixel (p=3, q=5) is scene pixel (3, 16 + 5)
    assert cells["S2L2A"][0 * 256 + 3 * 16 + 5, 0, 1] == pixels["S2L2A"][0, 3, 21]


def test_product_has_one_vector_per_patch_on_the_scene_grid(
    examples_dir: Path, tmp_path: Path, backbone: torch.nn.Module
) -> None:
    scene = crop(examples_dir, tmp_path / "s.tif", 96, 80, nodata_cols=20)
    written, tiles = embed_scene(
        backbone, {"S2L2A": scene}, tmp_path / "emb.tif", formats=("cog", "parquet"), tile=64, overlap=16
    )
    assert [p.name for p in written] == ["emb.tif", "emb.parquet"] and tiles == 4
    with rasterio.open(written[0]) as cog, rasterio.open(scene) as src:
        values = cog.read()
        assert (cog.count, cog.width, cog.height) == (192, 6, 5)  # tiny: 192 dims; 96 x 80 px / 16
        assert cog.transform == src.transform @ rasterio.Affine.scale(16) and cog.crs == src.crs
        assert cog.descriptions[0] == "embedding_000"
    # columns 0-19 are nodata: cells 0 (px 0-15) and 1 (px 16-31, partly nodata) are nodata in every band
    assert (values[:, :, :2] == -9999).all() and (values[:, :, 2:] != -9999).all()
    # vectors are stored at float16 precision (the product's precision)
    assert np.array_equal(values[:, :, 2:], values[:, :, 2:].astype(np.float16).astype(np.float32))
    names, array = read_embeddings(written[1])  # the reader `terramind fewshot` uses
    assert len(names) == 4 * 5 and array.shape == (20, 192)
    row, col = 3, 4
    at = names.index(f"r{row:05d}_c{col:05d}")
    # same vector in both products (up to the float16 rounding of the COG: relative 2**-11)
    np.testing.assert_allclose(array[at], values[:, row, col], rtol=2**-10, atol=1e-6)


def test_geoparquet_cells_carry_their_footprint_and_geo_metadata(
    examples_dir: Path, tmp_path: Path, backbone: torch.nn.Module
) -> None:
    import pyarrow.parquet as pq

    scene = crop(examples_dir, tmp_path / "s.tif", 64, 48)
    embed_scene(
        backbone, {"S2L2A": scene}, tmp_path / "emb.parquet", formats=("parquet",), tile=64, overlap=16
    )
    table = pq.read_table(tmp_path / "emb.parquet")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 32736}
    with rasterio.open(scene) as src:
        t = src.transform
    rows = table.to_pylist()
    cell = next(r for r in rows if (r["row"], r["col"]) == (2, 3))
    order, kind, rings, points = struct.unpack("<BIII", cell["geometry"][:13])
    assert (order, kind, rings, points) == (1, 3, 1, 5)  # little-endian polygon, one closed ring of 5 points
    xy = np.frombuffer(cell["geometry"][13:], "<f8").reshape(5, 2)
    assert tuple(xy[0]) == pytest.approx(t @ (3 * 16, 2 * 16)) and tuple(xy[2]) == pytest.approx(t @ (64, 48))
    bbox = geo["columns"]["geometry"]["bbox"]
    assert bbox == pytest.approx([t.c, t.f - 48 * 10, t.c + 64 * 10, t.f])


def test_pooled_product_averages_patches(
    examples_dir: Path, tmp_path: Path, backbone: torch.nn.Module
) -> None:
    # one 64 px tile, no overlap: a pooled cell is exactly the mean of its 2 x 2 patch vectors
    scene = crop(examples_dir, tmp_path / "s.tif", 64, 64)
    embed_scene(backbone, {"S2L2A": scene}, tmp_path / "p1.tif", tile=64, overlap=0)
    embed_scene(backbone, {"S2L2A": scene}, tmp_path / "p2.tif", pool=2, tile=64, overlap=0)
    with rasterio.open(tmp_path / "p1.tif") as a, rasterio.open(tmp_path / "p2.tif") as b:
        per_patch, pooled = a.read(), b.read()
    assert pooled.shape == (192, 2, 2)
    mean = per_patch.reshape(192, 2, 2, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(pooled, mean, rtol=2**-9, atol=1e-3)  # both rounded to float16 (2**-11 each)


def test_a_tile_that_is_not_whole_cells_is_refused(
    examples_dir: Path, tmp_path: Path, backbone: torch.nn.Module
) -> None:
    scene = crop(examples_dir, tmp_path / "s.tif", 64, 64)
    with pytest.raises(Exception, match="not a multiple of the cell"):
        embed_scene(backbone, {"S2L2A": scene}, tmp_path / "e.tif", pool=3, tile=64)
    assert not (tmp_path / "e.tif").exists()


def test_fewshot_reads_a_geoparquet_product_unchanged(
    examples_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scene = crop(examples_dir, tmp_path / "s.tif", 96, 96)
    out = tmp_path / "emb.parquet"
    argv = ["embed", "--scene", "--input", f"S2L2A={scene}", "-o", str(out), "--format", "parquet", *TINY]
    assert main([*argv, "--tile", "64", "--overlap", "16"]) == 0
    names, _ = read_embeddings(out)
    assert len(names) == 36
    labels = tmp_path / "labels.csv"  # two classes: the left and the right half of the scene
    labels.write_text(
        "name,class\n" + "".join(f"{n},{'left' if int(n[-5:]) < 3 else 'right'}\n" for n in names)
    )
    capsys.readouterr()
    code = main(["fewshot", "--embeddings", str(out), "--labels", str(labels), "--ways", "2", "--shots", "1",
                 "--queries", "5", "--episodes", "5", "--json"])  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_way"] == 2 and 0 <= result["mean"] <= 1


def test_scene_options_need_scene(
    tmp_path: Path, examples_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tile = examples_dir / "S2L2A" / f"{TILE}.tif"
    assert (
        main(["embed", "--input", f"S2L2A={tile}", "-o", str(tmp_path / "e.npy"), "--pool", "2", *TINY]) == 2
    )
    assert "--pool: only with --scene" in capsys.readouterr().err
    argv = ["embed", "--scene", "--input", f"S2L2A={tile}", "-o", str(tmp_path / "e.npy"), *TINY]
    assert main(argv) == 2
    assert "give -o ending in .tif" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
