"""``terramind embed-series``: one vector per series, or one per date, consistent with each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from terramind.cli.main import main

TILE = "38D_378R_2_3"


def test_embed_series_per_date_and_aggregated(make_series: Callable[..., Path], tmp_path: Path) -> None:
    root = make_series(steps=4, masked=2)
    base = ["embed-series", "--model", "tiny", "--weights", "random", "--device", "cpu"]
    series = ["--series", f"S2L2A={root / 'S2L2A' / TILE}", "--series", f"DEM={root / 'DEM' / f'{TILE}.tif'}"]
    assert main([*base, *series, "-o", str(tmp_path / "mean.npy")]) == 0
    assert main([*base, *series, "--aggregate", "none", "-o", str(tmp_path / "dates.npy")]) == 0
    pooled, dates = np.load(tmp_path / "mean.npy"), np.load(tmp_path / "dates.npy")
    names = (tmp_path / "dates.names.txt").read_text().split()
    assert names == [f"S2L2A@2021-04-{d:02d}" for d in (1, 6, 11, 16)]
    assert (tmp_path / "mean.names.txt").read_text().split() == [TILE]
    assert pooled.shape == (1, 192) and dates.shape == (4, 192)
    assert np.isnan(dates[2]).all()  # the all-nodata date
    # mean over dates commutes with the mean over tokens: fp32 sums of 4 tokens / 3 dates, values O(1)
    np.testing.assert_allclose(pooled[0], np.nanmean(dates, axis=0), atol=1e-5)
