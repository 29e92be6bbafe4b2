"""The ``time`` arrays of zarr samples, decoded once for both readers (TerraMesh and ImpactMesh series).

A ``time`` array holds ``datetime64`` values, or numbers with a CF ``units`` attribute
``"<unit> since <origin>"`` (default ``nanoseconds since 1970-01-01``; ``<unit>`` one of :data:`UNIT_NS`,
``<origin>`` an ISO date or date and time, UTC unless it says otherwise). Values at or below
:data:`NO_TIME_NS` nanoseconds since 1970-01-01 mean "no date" (TerraMesh's convention: DEM stores 0).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from terramind.core.errors import InputError

NO_TIME_NS = 1e6  # time values at or below this many ns since the epoch mean "no date"
UNIT_NS = {
    "nanoseconds": 1,
    "microseconds": 10**3,
    "milliseconds": 10**6,
    "seconds": 10**9,
    "minutes": 60 * 10**9,
    "hours": 3600 * 10**9,
    "days": 86400 * 10**9,
}
DEFAULT_UNITS = "nanoseconds since 1970-01-01"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def zarr_time_ns(array: Any) -> np.ndarray:
    """Return the nanoseconds since 1970-01-01 of each value of a zarr ``time`` array (NaN: "no date").

    Args:
        array: A zarr (or numpy) array; its ``attrs`` may hold ``units``.

    Returns:
        ``(N,)`` float64 (exact for whole seconds: their nanosecond counts are multiples of 2**9).

    Raises:
        InputError: The ``units`` attribute is not ``"<unit> since <origin>"`` with a known unit and an ISO
            origin.
    """
    values = np.asarray(array[...]).reshape(-1)
    if np.issubdtype(values.dtype, np.datetime64):
        ns = values.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    else:
        scale, origin = _units(str(getattr(array, "attrs", {}).get("units", DEFAULT_UNITS)))
        ns = values.astype(np.float64) * scale + origin
    return np.where(ns <= NO_TIME_NS, np.nan, ns)


def _units(units: str) -> tuple[int, float]:
    """Return the nanoseconds per unit and the origin's nanoseconds since 1970-01-01 of CF ``units``."""
    unit, _, origin = units.partition(" since ")
    hint = f"use '<unit> since <ISO date>' with a unit among {', '.join(UNIT_NS)}"
    if unit.strip() not in UNIT_NS:
        raise InputError(f"time units {units!r} not understood: {hint}")
    try:
        base = datetime.fromisoformat(origin.strip())
    except ValueError:
        raise InputError(f"time units {units!r}: origin {origin.strip()!r} is not a date: {hint}") from None
    base = base.replace(tzinfo=timezone.utc) if base.tzinfo is None else base
    return UNIT_NS[unit.strip()], (base - _EPOCH) / timedelta(microseconds=1) * 1000
