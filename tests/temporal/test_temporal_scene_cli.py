"""``terramind finetune scene --series``: a fine-tuned temporal task from config and checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from terramind.cli._series_scene import run_series_scene
from terramind.cli.finetune import load_dense_task, scene_parser
from terramind.cli.main import main
from terramind.finetune.config import FinetuneConfig
from terramind.finetune.run import build
from terramind.train.config import load_yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune"
TILE = "38D_378R_2_3"
TINY = {  # two blocks of the tiny model: the features of both feed the decoder
    "backbone": {"name": "terramind_v1_tiny", "weights": None, "encoder_depth": 2},
    "task": {"layer_indices": [0, 1, 1, 1]},
}


def _checkpoint(files: list[Path], path: Path) -> Path:
    """A ``fit``-like checkpoint of the config's task (random weights, seeded)."""
    torch.manual_seed(0)
    task, _ = build(load_yaml(FinetuneConfig, *files))
    torch.save({"state_dict": task.state_dict()}, path)
    return path


def _configs(files: list[Path]) -> list[str]:
    return [arg for f in files for arg in ("-c", str(f))]


def test_finetune_scene_series_predicts_a_temporal_scene_and_refuses_a_series_for_a_single_date_task(
    make_series: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_series(steps=3, masked=1, tiles=(TILE,))
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY))
    files = [CONFIGS / "temporal" / "impactmesh_flood.yaml", tiny]
    ckpt = _checkpoint(files, tmp_path / "task.ckpt")
    out = tmp_path / "flood.tif"
    series = ["--series", f"S2L2A={root / 'S2L2A' / TILE}", "--series", f"S1RTC={root / 'S1RTC' / TILE}"]
    dem = ["--input", f"DEM={root / 'DEM' / f'{TILE}.tif'}"]
    common = ["--ckpt_path", str(ckpt), *dem, "--precision", "fp32", *series]
    argv = ["finetune", "scene", *_configs(files), *common, "-o", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    with rasterio.open(out) as dst, rasterio.open(next((root / "S2L2A" / TILE).glob("*.tif"))) as first:
        classes = dst.read(1)
        assert (dst.crs, dst.transform, dst.shape) == (first.crs, first.transform, first.shape)
    assert set(np.unique(classes)) <= {0, 1}  # the config's two classes
    # the command is the library call: the same namespace through run_series_scene gives the same map
    args = scene_parser().parse_args([*argv[2:-1], str(tmp_path / "again.tif")])
    again = run_series_scene(args, load_dense_task(args.config, args.ckpt_path, command="finetune scene"))
    with rasterio.open(again) as dst:
        np.testing.assert_array_equal(dst.read(1), classes)

    single = [CONFIGS / "sen1floods11" / "base.yaml", CONFIGS / "sen1floods11" / "s1.yaml", tiny]
    single_ckpt = _checkpoint(single, tmp_path / "single.ckpt")
    refused = tmp_path / "refused.tif"
    s1 = ["--series", f"S1GRD={root / 'S1RTC' / TILE}"]  # three dates of a single-date task's modality
    argv = ["finetune", "scene", *_configs(single), "--ckpt_path", str(single_ckpt)]
    capsys.readouterr()
    assert main([*argv, *s1, "-o", str(refused)]) == 2
    err = capsys.readouterr().err
    assert "has a time axis (3 dates) but this model takes one date" in err and "Traceback" not in err
    assert not refused.exists()
    assert main([*argv, "-o", str(refused)]) == 2  # neither --input nor --series
    missing = "give the scene as --input MOD=PATH, or a time series as --series MOD=PATH"
    assert missing in capsys.readouterr().err
