"""Bad training data and configs (issue 13): one line naming the file and the field, before any step."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("lightning")
pytest.importorskip("zarr")

from terramind.data.sample import Sample
from terramind.data.terramesh import write_terramesh

SIZE = 32


def sample(index: int, dem_bands: int = 1) -> Sample:
    rng = np.random.default_rng(index)
    return Sample(
        f"s{index}",
        {
            "S1RTC": rng.normal(size=(2, SIZE, SIZE)).astype(np.float32),
            "DEM": rng.integers(0, 500, size=(dem_bands, SIZE, SIZE)).astype(np.int16),
        },
        center_lonlat=(10.0, 50.0),
    )


def config(root: Path, out: Path, **data: object) -> dict:
    return {
        "modalities": [
            {"name": "S1RTC", "input": "pixel", "target": False},
            {"name": "DEM", "target": False},
        ],
        "model": {
            "size": "tiny",
            "overrides": {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2},
        },
        "masking": {"num_input_tokens": 4, "num_target_tokens": 0},
        "data": {
            "source": "terramesh",
            "root": str(root),
            "subset": "majortom",
            "batch_size": 2,
            "crop": 32,
            **data,
        },
        "trainer": {
            "max_steps": 1,
            "accelerator": "cpu",
            "devices": 1,
            "out_dir": str(out),
            "progress_bar": False,
        },
    }


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    root = tmp_path / "tm"
    write_terramesh([sample(i) for i in range(3)], root)
    return root


def write(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_missing_modality_folder(run_cli, tmp_path, layout):
    shutil.rmtree(layout / "train" / "DEM")
    path = write(tmp_path, config(layout, tmp_path / "out"))
    run_cli(["pretrain", "-c", path]).expect_failure("train/DEM", "DEM", "does not exist")


def test_modality_of_the_wrong_shape(run_cli, tmp_path):
    root = tmp_path / "tm"
    write_terramesh([sample(i, dem_bands=2) for i in range(3)], root)
    path = write(tmp_path, config(root, tmp_path / "out"))
    run_cli(["pretrain", "-c", path]).expect_failure(
        "DEM/majortom_shard_000001.tar", "DEM has shape (2, 32, 32)"
    )


def test_unknown_subset(run_cli, tmp_path, layout):
    path = write(tmp_path, config(layout, tmp_path / "out", subset="majortomm"))
    run_cli(["pretrain", "-c", path]).expect_failure("run.yaml", "subset must be one of", "majortomm")


def test_unknown_source_and_key(run_cli, tmp_path, layout):
    path = write(tmp_path, config(layout, tmp_path / "out", source="zarr"))
    run_cli(["pretrain", "-c", path]).expect_failure("run.yaml", "source must be one of")
    path = write(tmp_path, config(layout, tmp_path / "out", subsett="majortom"))
    run_cli(["pretrain", "-c", path]).expect_failure("run.yaml.data", "unknown key(s) ['subsett']")


def test_target_without_tokenizer_on_terramesh(run_cli, tmp_path, layout):
    values = config(layout, tmp_path / "out")
    values["modalities"][1]["target"] = True
    values["masking"]["num_target_tokens"] = 4
    run_cli(["pretrain", "-c", write(tmp_path, values)]).expect_failure(
        "stores no token ids", "data.tokenize", "DEM"
    )
