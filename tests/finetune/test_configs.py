"""Every shipped config loads into FinetuneConfig and builds (with a tiny backbone); its data section reads a
mock of its dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from terramind.finetune import Backbone, ClassificationTask, SegmentationTask
from terramind.finetune.config import FinetuneConfig
from terramind.finetune.datamodule import GeoTiffDataModule
from terramind.finetune.run import build
from terramind.train.config import load_yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune"
TINY = {
    "trainer": {"precision": "32-true", "accelerator": "cpu"},
    "backbone": {"name": "terramind_v1_tiny", "weights": None},
}


FLOODS = CONFIGS / "sen1floods11"
# The six Sen1Floods11 variants: the shared base plus a modality overlay, with or without the TiM overlay.
FLOOD_RUNS = {
    f"sen1floods11_{m}{t}": [
        FLOODS / "base.yaml",
        FLOODS / f"{m}.yaml",
        *([FLOODS / "tim.yaml"] if t else []),
    ]
    for m in ("s1", "s2", "s1_s2")
    for t in ("", "_tim")
}


def _configs() -> dict[str, list[Path]]:
    return {**{p.stem: [p] for p in sorted(CONFIGS.glob("*.yaml"))}, **FLOOD_RUNS}


def test_the_issue_configs_exist() -> None:
    names = set(_configs())
    floods = {f"sen1floods11_{m}{t}" for m in ("s1", "s2", "s1_s2") for t in ("", "_tim")}
    assert floods | {"hls_burn_scars", "scene_classification"} <= names
    assert all(p.is_file() for paths in _configs().values() for p in paths)


@pytest.mark.parametrize("name", sorted(_configs()))
def test_config_instantiates(name: str, tmp_path: Path) -> None:
    override = tmp_path / "tiny.yaml"
    override.write_text(yaml.safe_dump(TINY))
    config = load_yaml(
        FinetuneConfig, *_configs()[name], override, sets={"trainer": {"out_dir": str(tmp_path)}}
    )
    task, datamodule = build(config)
    assert isinstance(task, (SegmentationTask, ClassificationTask))
    backbone = task.model.backbone
    assert isinstance(backbone, Backbone)
    assert (backbone.tim is not None) == name.endswith("_tim")
    assert isinstance(datamodule, GeoTiffDataModule)
    assert datamodule.modalities == backbone.modalities


def _data_args(paths: list[Path], root: Path) -> dict[str, Any]:
    config = load_yaml(FinetuneConfig, *paths)  # the -c files merged as the CLI merges them
    args = config.kwargs("data") | {"modalities": config.backbone["modalities"]}
    args["data_root"] = str(root)
    return args | {"crop_size": None, "num_workers": 0, "batch_size": 1}


def test_sen1floods11_layout_is_read(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    hand = "data/flood_events/HandLabeled"
    ids = ["Ghana_1", "India_2", "Spain_3"]
    for sub in ("S1Hand", "S2Hand", "LabelHand"):
        (tmp_path / hand / sub).mkdir(parents=True)
    for i, name in enumerate(ids):
        tiny_geotiff(name=f"{hand}/S1Hand/{name}_S1Hand.tif", bands=2, dtype="float32", seed=i)
        tiny_geotiff(name=f"{hand}/S2Hand/{name}_S2Hand.tif", bands=13, seed=i)
        label = np.full((1, 32, 32), 1, dtype="int16")
        label[0, 0] = -1
        tiny_geotiff(label, name=f"{hand}/LabelHand/{name}_LabelHand.tif")
    splits = tmp_path / "splits/flood_handlabeled"
    splits.mkdir(parents=True)
    for split, names in (("train", ids[:2]), ("valid", ids[2:]), ("test", ids[2:])):
        rows = [f"{n}_S1Hand.tif,{n}_LabelHand.tif" for n in names]
        (splits / f"flood_{split}_data.csv").write_text("\n".join(rows))
    dm = GeoTiffDataModule(**_data_args(FLOOD_RUNS["sen1floods11_s1_s2"], tmp_path))
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 2 and len(dm.datasets["val"]) == 1
    sample = dm.datasets["val"][0]
    assert sample["inputs"]["S2L1C"].shape == (13, 32, 32) and sample["inputs"]["S1GRD"].shape == (2, 32, 32)
    assert int((sample["label"] == -1).sum()) == 32


def test_burn_scars_layout_is_read(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    for folder in ("training", "validation"):
        (tmp_path / folder).mkdir()
    for i, folder in enumerate(["training", "training", "validation"]):
        name = f"subsetted_512x512_HLS.S30.T10SEH.201819{i}.v1.4"
        data = np.random.default_rng(i).uniform(0, 0.4, (6, 32, 32)).astype("float32")
        tiny_geotiff(data, name=f"{folder}/{name}_merged.tif")
        tiny_geotiff(np.zeros((1, 32, 32), "int16"), name=f"{folder}/{name}.mask.tif")
    dm = GeoTiffDataModule(**_data_args([CONFIGS / "hls_burn_scars.yaml"], tmp_path))
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 2 and len(dm.datasets["val"]) == 1
    x = dm.datasets["train"][0]["inputs"]["S2L2A"]
    assert x.shape == (6, 32, 32)
    assert x.abs().mean() < 3  # reflectance was scaled to DN before standardising
