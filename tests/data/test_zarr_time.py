"""One decoding of zarr ``time`` arrays for TerraMesh samples and ImpactMesh series."""

from __future__ import annotations

import numpy as np
import pytest

from terramind.core.errors import InputError
from terramind.data.series import zarr_days
from terramind.data.terramesh import _decode_time
from terramind.data.zarr_time import NO_TIME_NS, zarr_time_ns


class Array(np.ndarray):
    """A numpy array with zarr's ``attrs``."""

    attrs: dict[str, str]


def _array(values: list[int] | np.ndarray, units: str | None = None) -> Array:
    out = np.asarray(values).view(Array)
    out.attrs = {} if units is None else {"units": units}
    return out


def test_units_and_origin_with_a_time_of_day() -> None:
    # 2 hours after 2020-01-01 06:00 UTC; whole seconds are exact in float64 ns
    ns = zarr_time_ns(_array([2], "hours since 2020-01-01 06:00:00"))
    assert ns.tolist() == [(np.datetime64("2020-01-01T08:00", "ns") - np.datetime64(0, "ns")).astype(float)]
    assert _decode_time(_array([2], "hours since 2020-01-01 06:00:00")) == "2020-01-01T08:00:00+00:00"


def test_datetime64_and_the_no_date_threshold() -> None:
    values = np.array([0, int(NO_TIME_NS), 86400 * 10**9], dtype="datetime64[ns]")
    assert zarr_days(_array(values)).tolist() == [0.0, 0.0, 1.0]  # 0 and 1e6 ns: "no date"
    assert _decode_time(_array(values[:1])) is None


@pytest.mark.parametrize(
    ("units", "says"),
    [("fortnights since 2020-01-01", "not understood"), ("days since June", "origin 'June' is not a date")],
)
def test_units_not_understood(units: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        zarr_days(_array([1], units))  # a series refuses them ...
    assert _decode_time(_array([1], units)) is None  # ... a TerraMesh sample reports "no timestamp"
