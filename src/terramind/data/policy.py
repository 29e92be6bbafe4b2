"""The reading policy: what every reader of :mod:`terramind.data.geotiff` that knows the modality refuses.

Applied before the model loads, so that garbage never reaches it:

- complex and boolean rasters are refused for every modality, and the dtypes the catalog's raster facts
  refuse for a modality (:data:`REFUSED_DTYPES`), with the reason (8-bit Sentinel-2 cannot hold reflectance
  x10000; class maps must be integers);
- values outside the catalog's hard limits (:data:`HARD_LIMITS`) — physically impossible, out by orders of
  magnitude, such as 1e30 or Sentinel-2 reflectance of a million — are refused with their count and range:
  no rescaling rescues them (values that are merely unusual are :mod:`terramind.data.validate`'s advisory
  findings);
- NaN where the file declares a nodata value is masked: it becomes the nodata value and the count is
  logged; NaN without a declared nodata, and ±inf always, are refused with their count (readers that mask
  themselves pass ``allow_nonfinite``);
- an input without a single valid pixel (all nodata or NaN) is refused: "no valid pixels".

It lives apart from :mod:`terramind.data.validate` because the reader applies it and the validator reads
through the reader.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from terramind.core.errors import InputError
from terramind.modalities import MODALITIES, ModalitySpec

log = logging.getLogger(__name__)

# Derived views of the catalog's raster facts (modalities/catalog.py says why each number), by modality name;
# the checks read the record itself, so a registered sensor's facts apply too.
HARD_LIMITS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {m.name: m.raster.hard_limits for m in MODALITIES.values() if m.raster and m.raster.hard_limits}
)
# dtypes a modality's files cannot have, with the reason (complex and bool are refused for all).
REFUSED_DTYPES: Mapping[str, tuple[tuple[str, ...], str]] = MappingProxyType(
    {
        m.name: (m.raster.refused_dtypes, m.raster.refused_reason)
        for m in MODALITIES.values()
        if m.raster and m.raster.refused_dtypes
    }
)


def check_dtype(dtype: np.dtype, spec: ModalitySpec, where: str) -> None:
    """Refuse a raster dtype that no file of the modality can have.

    Args:
        dtype: The file's dtype.
        spec: The modality.
        where: The file (and window), for the message.

    Raises:
        InputError: A complex or boolean raster, or a dtype of :data:`REFUSED_DTYPES`.
    """
    kind = np.dtype(dtype)
    if np.issubdtype(kind, np.complexfloating) or kind == np.bool_:
        raise InputError(
            f"{where} is a {kind} raster: {spec.name} needs real {spec.unit} values; take the magnitude "
            f"(or the intended component) and write it as a real-valued raster"
        )
    facts = spec.raster
    if facts is not None and str(kind) in facts.refused_dtypes:
        raise InputError(f"{where} is {kind}, which {spec.name} cannot be: {facts.refused_reason}")


def check_pixels(
    data: np.ndarray,
    spec: ModalitySpec,
    nodata: float | None,
    where: str,
    *,
    allow_nonfinite: bool = False,
    require_valid: bool = True,
) -> np.ndarray:
    """Apply the reading policy (module docstring) to pixels just read.

    Args:
        data: ``(C, H, W)`` values in the file's dtype.
        spec: The modality.
        nodata: The file's nodata value.
        where: The file (and window), for the messages.
        allow_nonfinite: Leave NaN/inf in place for a caller that masks them itself.
        require_valid: Refuse data without a single valid pixel (off for windows of a larger scene).

    Returns:
        ``data``, with NaN replaced by the nodata value when one is declared (and not ``allow_nonfinite``).

    Raises:
        InputError: Refused dtype, impossible values, unmasked non-finite values, no valid pixels.
    """
    check_dtype(data.dtype, spec, where)
    if not allow_nonfinite:
        data = mask_nonfinite(data, nodata, where)
    valid = np.isfinite(data) if np.issubdtype(data.dtype, np.floating) else np.ones(data.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= data != nodata
    if require_valid and not valid.any():
        raise InputError(
            f"{where} has no valid pixels: every value is nodata ({nodata}) or NaN; pass a tile with data"
        )
    _check_limits(data[valid], spec, where)
    return data


def mask_nonfinite(data: np.ndarray, nodata: float | None, where: str) -> np.ndarray:
    """Mask NaN as the declared nodata value (logging the count); refuse NaN without one, and ±inf.

    Args:
        data: ``(C, H, W)`` values.
        nodata: The file's nodata value.
        where: The file (and window), for the messages.

    Returns:
        ``data`` with NaN replaced by ``nodata`` (unchanged for integer data or a NaN nodata).

    Raises:
        InputError: NaN without a declared nodata value, or any ±inf (counted per band).
    """
    if not np.issubdtype(data.dtype, np.floating):
        return data
    nan, bad = np.isnan(data), ~np.isfinite(data)
    if not bad.any():
        return data
    if nodata is None or (bad & ~nan).any():
        per_band = bad.reshape(bad.shape[0], -1).sum(axis=1)
        which = [i + 1 for i, n in enumerate(per_band) if n]
        raise InputError(
            f"{where} has {int(bad.sum())} non-finite (NaN/inf) value(s) in band(s) {which}"
            + (" and no nodata value" if nodata is None else "")
            + ": set the file's nodata (e.g. gdal_edit.py -a_nodata nan) so NaN is masked, or fill them"
        )  # fmt: skip
    if not np.isnan(nodata):
        data = np.where(nan, data.dtype.type(nodata), data)
    log.warning("%s: %d NaN value(s) masked as nodata (%s)", where, int(nan.sum()), nodata)
    return data


def _check_limits(values: np.ndarray, spec: ModalitySpec, where: str) -> None:
    limits = spec.raster.hard_limits if spec.raster is not None else None
    if limits is None or not values.size:
        return
    lo, hi = limits
    out = (values < lo) | (values > hi)
    if out.any():
        bad = values[out]
        raise InputError(
            f"{where} has {int(out.sum())} value(s) that no {spec.name} file can hold "
            f"({float(bad.min()):.4g}..{float(bad.max()):.4g}, outside {lo:g}..{hi:g} in any unit): "
            f"the file is corrupt or not {spec.name} ({spec.unit}); check how it was produced"
        )
