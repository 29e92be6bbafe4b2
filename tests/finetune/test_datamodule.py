from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from terramind.core.errors import InputError, ModalityError
from terramind.data.datamodule import GeoTiffDataModule, d4
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
    random.seed(3)
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
