"""Reading time series from GeoTIFF stacks (dates from names or a CSV) and batching them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from terramind.core.errors import InputError
from terramind.data.series import (
    SeriesDataset,
    collate_series,
    dated_files,
    days,
    find_samples,
    parse_date,
    read_series_csv,
)
from terramind.data.tiles import modality_inputs
from terramind.finetune.temporal_data import TemporalDataModule

MakeSeries = Callable[..., Path]
TILE = "38D_378R_2_3"


def test_dates_from_names() -> None:
    assert parse_date("tile_2021-06-01.tif") == date(2021, 6, 1)
    assert parse_date("S2_20210601_T32.tif") == date(2021, 6, 1)
    assert parse_date("tile_2021_06_01.tif") == date(2021, 6, 1)
    assert parse_date("12345678_20210601.tif") == date(2021, 6, 1)  # 8 digits that are no date are skipped
    assert parse_date("id_123456789.tif") is None
    assert days(date(1970, 1, 11)) == 10.0


def test_folder_series_reads_dates_values_and_the_masked_date(make_series: MakeSeries) -> None:
    root = make_series(steps=4, every=5, masked=2)
    files = dated_files(root / "S2L2A" / TILE)
    assert [f.date for f in files] == [date(2021, 4, 1 + 5 * t) for t in range(4)]
    samples = find_samples(root, ["S2L2A", "S1RTC", "DEM"])
    assert [s.name for s in samples] == sorted(s.name for s in samples) and len(samples) == 3
    inputs = modality_inputs(["S2L2A", "S1RTC", "DEM"], {}, {}, {}, {})
    item = SeriesDataset(samples, inputs)[[s.name for s in samples].index(TILE)]
    assert item["inputs"]["S2L2A"].shape == (12, 4, 32, 32)
    assert item["inputs"]["DEM"].shape == (1, 1, 32, 32)
    assert item["valid"]["S2L2A"].tolist() == [True, True, False, True]  # the all-nodata date is missing
    assert item["valid"]["S1RTC"].all()
    start = days(date(2021, 4, 1))
    assert item["times"]["S2L2A"].tolist() == [start, start + 5, start + 10, start + 15]
    s2 = item["inputs"]["S2L2A"]
    assert not torch.equal(s2[:, 0], s2[:, 1])  # dates differ (gain per date)
    assert item["label"].shape == (32, 32) and item["label"].dtype == torch.int64


def test_csv_listing_with_modalities(make_series: MakeSeries, tmp_path: Path) -> None:
    root = make_series(steps=3, masked=None)
    s2 = dated_files(root / "S2L2A" / TILE)
    listing = tmp_path / "list.csv"
    rows = ["path,date,modality"] + [f"{f.path},{f.date},S2L2A" for f in s2]
    rows.append(f"{s2[0].path},20200101,S1RTC")
    listing.write_text("\n".join(rows))
    read = read_series_csv(listing)
    assert [f.date for f in read["S2L2A"]] == [f.date for f in s2]
    assert read["S1RTC"][0].date == date(2020, 1, 1)


def test_batches_pad_shorter_series_as_missing_dates(make_series: MakeSeries) -> None:
    root = make_series(steps=3, masked=None)
    inputs = modality_inputs(["S2L2A"], {}, {}, {}, {})
    samples = find_samples(root, ["S2L2A"])
    long, short = SeriesDataset(samples[:1], inputs)[0], SeriesDataset(samples[1:2], inputs)[0]
    short = {
        **short,
        "inputs": {"S2L2A": short["inputs"]["S2L2A"][:, :2]},
        "times": {"S2L2A": short["times"]["S2L2A"][:2]},
        "valid": {"S2L2A": short["valid"]["S2L2A"][:2]},
    }
    batch = collate_series([long, short])
    series = batch["inputs"]
    assert series.inputs["S2L2A"].shape == (2, 12, 3, 32, 32)
    assert series.valid["S2L2A"].tolist() == [[True] * 3, [True, True, False]]
    assert series.times["S2L2A"].dtype == torch.float64  # day stamps of ~2e4 keep their precision
    assert batch["label"].shape == (2, 32, 32)


def test_augmentation_is_the_same_for_every_date_and_the_label(make_series: MakeSeries) -> None:
    root = make_series(steps=3, masked=None)
    inputs = modality_inputs(["S2L2A"], {}, {}, {}, {})
    samples = find_samples(root, ["S2L2A"])
    plain = SeriesDataset(samples, inputs)[0]
    seen = set()
    dataset = SeriesDataset(samples, inputs, augment=True, seed=1)
    for _ in range(8):
        aug = dataset[0]
        x, label = aug["inputs"]["S2L2A"], aug["label"]
        # find the D4 element from the first date, then check the other dates and the label went through it
        first = plain["inputs"]["S2L2A"][:, 0]
        matches = [(k, f) for k in range(4) for f in (False, True) if torch.equal(_d4(first, k, f), x[:, 0])]
        assert matches, "the first date is not a D4 transform of the original"
        k, flip = matches[0]
        seen.add((k, flip))
        for t in range(1, 3):
            assert torch.equal(_d4(plain["inputs"]["S2L2A"][:, t], k, flip), x[:, t])
        assert torch.equal(_d4(plain["label"], k, flip), label)
    assert len(seen) > 1  # the transform is random across draws


def _d4(a: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    out = torch.rot90(a, k, dims=(-2, -1))
    return out.flip(-1) if flip else out


def test_datamodule_splits_and_batches(make_series: MakeSeries) -> None:
    root = make_series(steps=4)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text(f"{TILE}\n")
    dm = TemporalDataModule(str(root), ["S2L2A", "S1RTC", "DEM"], split_ratio=(1.0, 0.0, 0.0), batch_size=2)
    dm.setup()
    assert [s.name for s in dm.datasets["val"].samples] == [TILE]
    assert len(dm.datasets["train"]) == 2 and TILE not in [s.name for s in dm.datasets["train"].samples]
    batch = next(iter(dm.train_dataloader()))
    series = batch["inputs"]
    assert series.inputs["S2L2A"].shape == (2, 12, 4, 32, 32)
    assert series.inputs["DEM"].shape == (2, 1, 1, 32, 32)
    assert not np.isin(batch["label"].unique().numpy(), [-1, 0, 1, 2, 3], invert=True).any()


def test_labels_outside_num_classes_and_grids_that_differ_are_refused(make_series: MakeSeries) -> None:
    root = make_series(steps=2, masked=None)
    inputs = modality_inputs(["S2L2A", "DEM"], {}, {}, {}, {})
    samples = find_samples(root, ["S2L2A", "DEM"])
    with pytest.raises(InputError, match=r"holds classes outside 0\.\.1"):
        SeriesDataset(samples, inputs, num_classes=2)[0]
    dem = root / "DEM" / f"{samples[0].name}.tif"
    with rasterio.open(dem, "r+") as dst:  # the same size, shifted by one pixel
        t = dst.transform
        dst.transform = Affine(t.a, t.b, t.c + t.a, t.d, t.e, t.f)
    with pytest.raises(InputError, match="DEM is not on the grid of S2L2A"):
        SeriesDataset(samples, inputs)[0]
