"""`terramind pretrain` straight from TerraMesh-layout shards, targets tokenized on the fly."""

import numpy as np
import pytest
import yaml

from terramind.cli.main import main
from terramind.data.terramesh import TerraMeshSource

pytest.importorskip("zarr")


def terramesh_config(root, tokenizers, out_dir, **data):
    return {
        "modalities": [
            {"name": "S2L2A", "input": "pixel", "target": True},
            {"name": "DEM", "input": "pixel", "target": True},
        ],
        "model": {
            "size": "tiny",
            "overrides": {
                "dim": 32,
                "encoder_depth": 1,
                "decoder_depth": 1,
                "num_heads": 2,
                "mlp_hidden": 64,
            },
        },
        "masking": {"num_input_tokens": 4, "num_target_tokens": 4},
        "data": {
            "source": "terramesh",
            "root": str(root),
            "subset": "majortom",
            "tokenize": {m: str(p) for m, p in tokenizers.items()},
            "batch_size": 2,
            "crop": 32,
            "shuffle_buffer": 2,
            **data,
        },
        "trainer": {
            "max_steps": 3,
            "accelerator": "cpu",
            "devices": 1,
            "out_dir": str(out_dir),
            "progress_bar": False,
            "checkpoint_every": 3,
        },
    }


def test_written_layout_reads_back(terramesh_root, examples_dir):
    import rasterio

    source = TerraMeshSource(terramesh_root, "train", ["S2L2A", "S1RTC", "DEM"], subset="majortom")
    samples = [source.decode(k, raw) for k, raw in source.items(0)]
    assert len(samples) == len(list((examples_dir / "DEM").glob("*.tif")))
    first = samples[0]
    with rasterio.open(sorted((examples_dir / "S2L2A").glob("*.tif"))[0]) as f:
        np.testing.assert_array_equal(first.pixels["S2L2A"], f.read())
        assert first.crs == f.crs.to_string()
        # GDAL's GeoTransform text round-trips to the last float digit; 1e-6 m is far below a 10 m pixel
        np.testing.assert_allclose(first.transform, tuple(f.transform)[:6], rtol=0, atol=1e-6)
    assert first.pixels["S2L2A"].dtype == np.int16 and first.pixels["S1RTC"].dtype == np.float32
    lon, lat = first.center_lonlat  # 282D_485L_3_3: about (-48.11, -25.32) (examples/)
    assert abs(lon + 48.11) < 0.02 and abs(lat + 25.32) < 0.02


def test_pretrain_reads_terramesh_by_config(terramesh_root, tiny_tokenizer_dirs, tmp_path):
    path = tmp_path / "tm.yaml"
    path.write_text(yaml.safe_dump(terramesh_config(terramesh_root, tiny_tokenizer_dirs, tmp_path / "run")))
    assert main(["pretrain", "-c", str(path)]) == 0
    import torch

    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 3
    assert checkpoint["terramind_skipped_samples"][0]["skipped"] == 0
    assert checkpoint["terramind_skipped_samples"][0]["seen"] >= 6  # 3 steps x batch 2
