from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch

from terramind.core.errors import InputError, ModalityError
from terramind.data.tiles import d4
from terramind.finetune.datamodule import GeoTiffDataModule
from terramind.modalities import destandardize

NAMES = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]


def _link_root(tmp_path: Path, examples: Path, mods: dict[str, list[str]]) -> Path:
    """A data root whose folders link a chosen subset of the example tiles."""
    for folder, names in mods.items():
        (tmp_path / folder).mkdir()
        src = "LULC" if folder == "label" else folder
        for n in names:
            (tmp_path / folder / f"{n}.tif").symlink_to(examples / src / f"{n}.tif")
    return tmp_path


def test_examples_as_segmentation_set(tmp_path: Path, examples_dir: Path) -> None:
    split = tmp_path / "train.txt"
    split.write_text("\n".join(f"{n}.tif" for n in NAMES[:4]))  # file names work as ids
    dm = GeoTiffDataModule(
        str(examples_dir),
        ["S2L2A", "S1RTC"],
        10,
        folders={"label": "LULC"},
        splits={"train": str(split), "val": str(split)},
        augment=False,
        batch_size=2,
    )
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 4
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"]["S2L2A"].shape == (2, 12, 224, 224)
    assert batch["inputs"]["S1RTC"].shape == (2, 2, 224, 224)
    assert batch["label"].shape == (2, 224, 224) and batch["label"].dtype == torch.int64
    assert int(batch["label"].min()) >= 0 and int(batch["label"].max()) <= 9
    # standardised, not raw: S2 DN values are in the thousands
    assert batch["inputs"]["S2L2A"].abs().mean() < 5


def test_band_subset_selects_named_bands(tmp_path: Path, examples_dir: Path) -> None:
    dm = GeoTiffDataModule(
        str(examples_dir),
        ["S2L2A"],
        10,
        folders={"label": "LULC"},
        bands={"S2L2A": ["RED", "GREEN", "BLUE"]},
        split_ratio=(1.0, 0.0, 0.0),
        augment=False,
    )
    sample = dm._build("train")[0]
    x = destandardize("S2L2A", sample["inputs"]["S2L2A"], bands=["RED", "GREEN", "BLUE"])
    assert x.shape[0] == 3
    with rasterio.open(Path(sample["path"])) as f:
        red = f.read(4).astype(np.float32)
    # standardize + destandardize in fp32 err by <= 2 ulp of values < 2^14 (3.9e-3); 0.05 is 1/20 of one
    # digital number, a wrong band or statistic is off by hundreds
    assert np.allclose(x[0].numpy(), red, atol=0.05)


def test_mismatched_folders_name_the_missing_files(tmp_path: Path, examples_dir: Path) -> None:
    root = _link_root(tmp_path, examples_dir, {"S2L2A": NAMES, "S1RTC": NAMES[:3], "label": NAMES})
    dm = GeoTiffDataModule(str(root), ["S2L2A", "S1RTC"], 10)
    with pytest.raises(InputError, match=r"S1RTC lacks 2 id.*609U_541L_3_0"):
        dm.setup("fit")


def test_labels_outside_num_classes_fail_before_training(tmp_path: Path, examples_dir: Path) -> None:
    root = _link_root(tmp_path, examples_dir, {"S2L2A": NAMES, "label": NAMES})
    dm = GeoTiffDataModule(str(root), ["S2L2A"], 5, split_ratio=(0.6, 0.4, 0.0))
    with pytest.raises(InputError, match=r"classes outside 0\.\.4"):
        dm.setup("fit")


def test_empty_split_is_an_error(tmp_path: Path, examples_dir: Path) -> None:
    root = _link_root(tmp_path, examples_dir, {"S2L2A": NAMES, "label": NAMES})
    dm = GeoTiffDataModule(str(root), ["S2L2A"], 10, split_ratio=(1.0, 0.0, 0.0))
    with pytest.raises(InputError, match="'val' split is empty"):
        dm.setup("fit")


def test_config_errors_at_construction(examples_dir: Path) -> None:
    with pytest.raises(ModalityError, match="S9"):
        GeoTiffDataModule(str(examples_dir), ["S9"], 2)
    with pytest.raises(ModalityError, match="NIR_WIDE"):
        GeoTiffDataModule(str(examples_dir), ["S2L2A"], 2, bands={"S2L2A": ["RED", "NIR_WIDE"]})


def test_d4_is_the_dihedral_group() -> None:
    x = torch.arange(9.0).reshape(1, 3, 3)
    images = {tuple(d4([x], k, f)[0].flatten().tolist()) for k in range(4) for f in (False, True)}
    assert len(images) == 8


def test_augmentation_and_nodata_apply_to_inputs_and_label(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    s1 = rng.uniform(-25, -5, (2, 32, 32)).astype("float32")
    s1[:, 0, :5] = -9999  # nodata strip in the first row
    label = (s1[:1] > -15).astype("uint8")  # the label is a function of the input
    for folder in ("S1RTC", "label"):
        (tmp_path / folder).mkdir()
    tiny_geotiff(s1, name="S1RTC/a.tif", nodata=-9999)
    tiny_geotiff(label, name="label/a.tif")
    dm = GeoTiffDataModule(
        str(tmp_path), ["S1RTC"], 2, splits={"train": str(tmp_path / "s.txt")}, augment=True
    )
    (tmp_path / "s.txt").write_text("a\n")
    dataset = dm._build("train")
    for _ in range(4):
        sample = dataset[0]
        x, y = sample["inputs"]["S1RTC"], sample["label"]
        invalid = x[0] == 0
        assert int(invalid.sum()) == 5 and bool((y[invalid] == -1).all())
        vv = destandardize("S1RTC", x)[0]
        assert torch.equal((vv > -15).long()[~invalid], y[~invalid])


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_classification_labels_from_a_csv(tmp_path: Path, examples_dir: Path, task: str) -> None:
    root = _link_root(tmp_path, examples_dir, {"S1RTC": NAMES})
    rows = [f"{n},{i % 3}" if task == "classification" else f"{n},0 {1 + i % 2}" for i, n in enumerate(NAMES)]
    (root / "labels.csv").write_text("\n".join(rows))
    dm = GeoTiffDataModule(str(root), ["S1RTC"], 3, task=task, split_ratio=(0.6, 0.4, 0.0), batch_size=5)  # type: ignore[arg-type]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    labels = batch["label"]
    assert labels.shape == ((3,) if task == "classification" else (3, 3))
    if task == "multilabel":
        assert bool((labels[:, 0] == 1).all()) and bool((labels.sum(1) == 2).all())
    (root / "labels.csv").write_text("\n".join(f"{n},7" for n in NAMES))
    with pytest.raises(InputError, match=r"classes \[7\] are outside 0\.\.2"):
        GeoTiffDataModule(str(root), ["S1RTC"], 3, task="classification", split_ratio=(0.6, 0.4, 0.0)).setup(
            "fit"
        )


def test_lulc_and_ndvi_inputs_are_read_for_tokenizing(tmp_path: Path, examples_dir: Path) -> None:
    root = _link_root(tmp_path, examples_dir, {m: NAMES for m in ("S2L2A", "LULC", "NDVI", "label")})
    dm = GeoTiffDataModule(
        str(root), ["S2L2A", "LULC", "NDVI"], 10, split_ratio=(1.0, 0.0, 0.0), augment=False
    )
    sample = dm._build("train")[0]
    name = Path(sample["path"]).stem
    with rasterio.open(examples_dir / "LULC" / f"{name}.tif") as src:
        raw = src.read(1)
    lulc = sample["inputs"]["LULC"]
    assert lulc.shape == (1, 224, 224) and len(np.unique(raw)) > 1
    assert np.array_equal(lulc[0].numpy(), raw.astype(np.float32))  # class ids, not standardised
    with rasterio.open(examples_dir / "NDVI" / f"{name}.tif") as src:
        ndvi = src.read(1).astype(np.float32)
    back = destandardize("NDVI", sample["inputs"]["NDVI"].numpy())[0]
    # standardised like any pixel modality: the fp32 round trip of values in [-1, 1] errs by ~1e-7, a wrong
    # statistic by >= 1e-2
    assert np.allclose(back, ndvi, atol=1e-4)


def test_class_ids_outside_the_classes_name_the_file(tmp_path: Path, examples_dir: Path) -> None:
    root = _link_root(tmp_path, examples_dir, {"S2L2A": NAMES[:1], "label": NAMES[:1]})
    (root / "LULC").mkdir()
    with rasterio.open(examples_dir / "LULC" / f"{NAMES[0]}.tif") as src:
        profile, data = src.profile, src.read()
    profile.update(nodata=None)
    with rasterio.open(root / "LULC" / f"{NAMES[0]}.tif", "w", **profile) as dst:
        dst.write(np.full_like(data, 12))
    dm = GeoTiffDataModule(str(root), ["S2L2A", "LULC"], 10, split_ratio=(1.0, 0.0, 0.0))
    with pytest.raises(InputError, match=r"LULC.*class ids must be whole numbers 0-9, found \[12, 12\]"):
        dm._build("train")[0]


def test_stray_names_are_config_errors(examples_dir: Path) -> None:
    with pytest.raises(ModalityError, match=r"scales name \['S1RTC'\]"):
        GeoTiffDataModule(str(examples_dir), ["S2L2A"], 2, scales={"S1RTC": 2.0})


def test_mixed_tile_sizes_name_both_files(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    for folder in ("S1RTC", "label"):
        (tmp_path / folder).mkdir()
    for name, size in (("a", 32), ("b", 48)):
        tiny_geotiff(np.full((2, size, size), -12.0, "float32"), name=f"S1RTC/{name}.tif")
        tiny_geotiff(np.zeros((1, size, size), "uint8"), name=f"label/{name}.tif")
    split = str(_ids(tmp_path, "a", "b"))
    dm = GeoTiffDataModule(str(tmp_path), ["S1RTC"], 2, splits={"train": split, "val": split})
    with pytest.raises(InputError, match=r"a\.tif' is 32x32, .*b\.tif' is 48x48"):
        dm.setup("fit")


def _ids(tmp_path: Path, *ids: str) -> Path:
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids))
    return path


def _label_root(tmp_path: Path, sub: str, tiny_geotiff, label: np.ndarray, **kwargs) -> GeoTiffDataModule:  # type: ignore[no-untyped-def]
    """One S1RTC tile and its label under ``tmp_path/sub`` (tiny_geotiff writes below ``tmp_path``)."""
    for folder in ("S1RTC", "label"):
        (tmp_path / sub / folder).mkdir(parents=True)
    tiny_geotiff(np.full((2, 32, 32), -12.0, "float32"), name=f"{sub}/S1RTC/a.tif")
    tiny_geotiff(label, name=f"{sub}/label/a.tif")
    split = str(_ids(tmp_path / sub, "a"))
    return GeoTiffDataModule(
        str(tmp_path / sub), ["S1RTC"], 3, splits={"train": split, "val": split}, **kwargs
    )


def test_label_checks_name_the_file(tmp_path: Path, tiny_geotiff) -> None:  # type: ignore[no-untyped-def]
    three_bands = _label_root(tmp_path, "3", tiny_geotiff, np.zeros((3, 32, 32), "uint8"))
    with pytest.raises(InputError, match=r"label .*a\.tif' has 3 bands"):
        three_bands.setup("fit")
    fractional = _label_root(tmp_path, "f", tiny_geotiff, np.full((1, 32, 32), 1.5, "float32"))
    with pytest.raises(InputError, match=r"1024 fractional value\(s\)"):
        fractional.setup("fit")
    label = np.zeros((1, 32, 32), "uint8")
    label[0, 0, :7] = 3  # num_classes is 3: class 3 does not exist
    too_high = _label_root(tmp_path, "h", tiny_geotiff, label, check_labels=False)
    too_high.setup("fit")  # the scan in setup is off: the dataset itself refuses the sample
    with pytest.raises(InputError, match=r"a\.tif' holds classes outside 0\.\.2: 3 \(7 px\)"):
        too_high.datasets["train"][0]


def test_skip_bad_leaves_out_tiles_and_says_why(tmp_path: Path, tiny_geotiff, caplog) -> None:  # type: ignore[no-untyped-def]
    for folder in ("S1RTC", "label"):
        (tmp_path / folder).mkdir()
    for name in ("a", "b", "c", "d"):
        tiny_geotiff(np.full((2, 32, 32), -12.0, "float32"), name=f"S1RTC/{name}.tif")
        if name != "c":  # c has no label
            tiny_geotiff(np.zeros((1, 32, 32), "uint8"), name=f"label/{name}.tif")
    (tmp_path / "S1RTC" / "b.tif").write_bytes(b"truncated")  # unreadable
    config = {"splits": {"val": str(_ids(tmp_path, "a"))}, "split_ratio": (1.0, 0.0, 0.0)}
    with pytest.raises(InputError, match="label lacks 1 id"):
        GeoTiffDataModule(str(tmp_path), ["S1RTC"], 2, **config).setup("fit")  # type: ignore[arg-type]
    lenient = GeoTiffDataModule(str(tmp_path), ["S1RTC"], 2, skip_bad=True, **config)  # type: ignore[arg-type]
    lenient.setup("fit")
    assert [Path(p["S1RTC"]).stem for p in lenient.datasets["train"].paths] == ["d"]
    assert "c: no label file" in caplog.text
    assert "b: " in caplog.text and "not a readable raster" in caplog.text


def test_model_and_data_must_agree_on_classes(tmp_path: Path, examples_dir: Path) -> None:
    root = _link_root(tmp_path, examples_dir, {"S2L2A": NAMES, "label": NAMES})
    dm = GeoTiffDataModule(str(root), ["S2L2A"], 10, split_ratio=(0.6, 0.4, 0.0))
    task = SimpleNamespace(hparams={"num_classes": 4, "ignore_index": -1})
    dm.trainer = SimpleNamespace(lightning_module=task, current_epoch=0)  # type: ignore[assignment]
    with pytest.raises(InputError, match="the model's num_classes is 4 but the data's is 10"):
        dm.setup("fit")
    task.hparams["num_classes"] = 10
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3
