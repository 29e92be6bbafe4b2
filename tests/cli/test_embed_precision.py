"""``--precision`` of ``embed`` (tiles and ``--scene``) and ``batch embed``: parsed, and reaching the encoder.

The numeric bound of bf16 against fp32 is derived in ``tests/evaluate/test_embedding_precision.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from terramind.build import precision
from terramind.cli.main import _parse, main
from terramind.evaluate.embeddings import read_embeddings

TINY = ["--model", "terramind_v1_tiny", "--weights", "random"]
TILE = "38D_378R_2_3"


def _embed(tmp_path: Path, examples_dir: Path, name: str, *extra: str) -> np.ndarray:
    out = tmp_path / f"{name}.npy"
    tile = examples_dir / "S2L2A" / f"{TILE}.tif"
    assert main(["embed", "--input", f"S2L2A={tile}", "-o", str(out), *TINY, *extra]) == 0
    return read_embeddings(out)[1]


def test_fp32_is_bit_identical_to_the_encoder_without_autocast(tmp_path: Path, examples_dir: Path) -> None:
    from terramind.api.models import create_backbone
    from terramind.data.tiles import GeoTiffDataset, modality_inputs

    got = _embed(tmp_path, examples_dir, "fp32", "--precision", "fp32")
    specs = modality_inputs(["S2L2A"], {}, {}, {}, {})
    x = GeoTiffDataset([{"S2L2A": examples_dir / "S2L2A" / f"{TILE}.tif"}], specs)[0]["inputs"]["S2L2A"]
    backbone = create_backbone(
        "terramind_v1_tiny", ["S2L2A"], weights=None
    ).eval()  # what --weights random builds
    with torch.no_grad():
        today = backbone({"S2L2A": x[None]})[-1].mean(dim=1).numpy()  # (1, 192)
    np.testing.assert_array_equal(got, today)


def test_the_option_reaches_the_encoder_and_auto_follows_the_hardware(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, examples_dir: Path
) -> None:
    monkeypatch.setattr(precision, "_announced", set())
    fp32 = _embed(tmp_path, examples_dir, "fp32", "--precision", "fp32")
    bf16 = _embed(tmp_path, examples_dir, "bf16", "--precision", "bf16")
    assert not np.array_equal(fp32, bf16)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    np.testing.assert_array_equal(_embed(tmp_path, examples_dir, "auto"), bf16)  # auto is the default
    assert "precision auto -> bf16 (CPU has avx512_bf16)" in capsys.readouterr().err
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset())
    np.testing.assert_array_equal(_embed(tmp_path, examples_dir, "auto2", "--precision", "auto"), fp32)


def test_scene_products_take_the_option(tmp_path: Path, examples_dir: Path) -> None:
    import rasterio

    tile = examples_dir / "S2L2A" / f"{TILE}.tif"
    products = {}
    for p in ("fp32", "bf16"):
        out = tmp_path / f"{p}.tif"
        argv = ["embed", "--scene", "--input", f"S2L2A={tile}", "-o", str(out), *TINY, "--precision", p]
        assert main([*argv, "--tile", "112", "--overlap", "16"]) == 0
        with rasterio.open(out) as src:
            products[p] = src.read()
    assert not np.array_equal(products["fp32"], products["bf16"])


def test_batch_embed_parses_the_option_into_its_job(tmp_path: Path, examples_dir: Path) -> None:
    pytest.importorskip("ray", reason="terramind[batch] is not installed")
    from terramind.cli.batch import build_job

    folder = examples_dir / "S2L2A"
    argv = ["batch", "embed", "--manifest", str(folder.parent), "-o", str(tmp_path / "b"), *TINY]
    assert build_job(_parse(argv)).precision == "auto"
    job = build_job(_parse([*argv, "--precision", "fp32"]))
    assert job.precision == "fp32" and job.settings()["precision"] == "fp32"  # recorded in the results table
