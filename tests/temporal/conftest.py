"""Synthetic time series built from the example tiles, and a tiny stand-in encoder.

Each series takes one real example tile per modality, cropped to 32 px, and repeats it at dated steps with
a per-date gain (so the dates differ), shifted start dates per sample and one date masked (all nodata).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from einops import rearrange
from rasterio.windows import Window
from torch import nn

SIZE = 32  # crop of the 224 px example tiles: two 16 px patches a side
TILES = ("38D_378R_2_3", "282D_485L_3_3", "433D_629L_3_1")
NUM_CLASSES = 4  # label: LULC class id % 4 (any fixed mapping will do for a fit test)


class StandInEncoder(nn.Module):
    """Backbone surface: ``{m: (B, C, H, W)}`` -> ``depth`` tensors ``(B, N, D)``; counts its calls."""

    def __init__(self, channels: dict[str, int], dim: int = 16, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.ModuleDict({m: nn.Linear(c * 256, dim) for m, c in channels.items()})
        self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        self.out_channels = [dim] * depth
        self.seen: list[int] = []  # batch size of every call (B x valid dates)

    def forward(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        self.seen.append(next(iter(inputs.values())).shape[0])
        # (B, C, H, W) -> (B, N, 256 C) -> (B, N, D), averaged over modalities
        x = torch.stack(
            [
                self.embed[m](rearrange(v.float(), "b c (h p) (w q) -> b (h w) (p q c)", p=16, q=16))
                for m, v in inputs.items()
            ]
        ).mean(0)
        out = []
        for block in self.blocks:
            x = torch.tanh(block(x))
            out.append(x)
        return out


@pytest.fixture
def encoder() -> StandInEncoder:
    torch.manual_seed(0)
    return StandInEncoder({"S2L2A": 12, "S1RTC": 2, "DEM": 1})


def _crop(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        window = Window(0, 0, SIZE, SIZE)
        profile = {
            **src.profile,
            "width": SIZE,
            "height": SIZE,
            "transform": src.transform,
        }  # the window starts at (0, 0)
        return src.read(window=window), profile


def _write(path: Path, data: np.ndarray, profile: dict, nodata: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {**profile, "count": data.shape[0], "dtype": str(data.dtype), "nodata": nodata}
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


MakeSeries = Callable[..., Path]


@pytest.fixture
def make_series(examples_dir: Path, tmp_path: Path) -> MakeSeries:
    """Write a GeoTIFF series dataset; returns its root.

    Layout: ``root/S2L2A/<tile>/<tile>_<date>.tif`` and ``root/S1RTC/<tile>/...`` (``steps`` dates, every
    ``every`` days from a start shifted by 10 days per tile), ``root/DEM/<tile>.tif`` (static) and
    ``root/label/<tile>.tif``. Date ``masked`` (index; None: none) of S2L2A is all nodata.
    """

    def make(steps: int = 4, every: int = 5, masked: int | None = 2, tiles: Sequence[str] = TILES) -> Path:
        root = tmp_path / "series"
        for i, tile in enumerate(tiles):
            start = date(2021, 4, 1) + timedelta(days=10 * i)
            for modality in ("S2L2A", "S1RTC"):
                data, profile = _crop(examples_dir / modality / f"{tile}.tif")
                nodata = -9999 if modality == "S2L2A" else None
                for t in range(steps):
                    gain = 1.0 + 0.1 * t  # each date a different brightness
                    step = (data * gain).astype(data.dtype)
                    if modality == "S2L2A" and t == masked:
                        step[:] = -9999
                    when = (start + timedelta(days=every * t)).strftime("%Y-%m-%d")
                    _write(root / modality / tile / f"{tile}_{when}.tif", step, profile, nodata)
            dem, profile = _crop(examples_dir / "DEM" / f"{tile}.tif")
            _write(root / "DEM" / f"{tile}.tif", dem, profile)
            lulc, profile = _crop(examples_dir / "LULC" / f"{tile}.tif")
            _write(root / "label" / f"{tile}.tif", (lulc % NUM_CLASSES).astype("uint8"), profile)
        return root

    return make


@pytest.fixture
def make_encoder() -> Callable[..., StandInEncoder]:
    """The stand-in encoder class (fresh instances: ``make_encoder({"S2L2A": 12}, dim=16)``)."""
    return StandInEncoder
