"""Check a tile against the modality catalog before it reaches the model.

Two kinds of checks live here.

**The reading policy** (:func:`check_pixels`, :func:`check_dtype`), applied by every reader of
:mod:`terramind.data.geotiff` that knows the modality, raises before the model loads:

- complex and boolean rasters are refused for every modality, and the dtypes of :data:`REFUSED_DTYPES`
  for the modalities named there, with the reason (8-bit Sentinel-2 cannot hold reflectance x10000; class
  maps must be integers);
- values outside :data:`HARD_LIMITS` — physically impossible, out by orders of magnitude, such as 1e30 or
  Sentinel-2 reflectance of a million — are refused with their count and range: no rescaling rescues them;
- NaN where the file declares a nodata value is masked: it becomes the nodata value and the count is
  logged; NaN without a declared nodata, and ±inf always, are refused with their count (readers that mask
  themselves pass ``allow_nonfinite``);
- an input without a single valid pixel (all nodata or NaN) is refused: "no valid pixels".

**The advisory checks** (:func:`validate_tile`, for ``terramind inspect``) return :class:`Finding` records
(``ok``, ``warning`` or ``error``) instead of raising, so a user sees everything that is off at once. The
detection thresholds live in :data:`THRESHOLDS` and the small per-modality tables below, not in the checks.
Statistics are accumulated window by window (:func:`summarize_file`), so the memory needed does not grow
with the raster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from terramind.core.errors import InputError
from terramind.modalities import ModalitySpec, get_modality

if TYPE_CHECKING:  # geotiff imports this module for the reading policy
    from terramind.data.geotiff import Raster

log = logging.getLogger(__name__)

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One result of a validation check.

    Attributes:
        level: ``"ok"``, ``"warning"`` (usable, but check it) or ``"error"`` (the model would be misled).
        message: What was found and, for problems, what to do.
    """

    level: Level
    message: str


@dataclass(frozen=True)
class Thresholds:
    """Detection thresholds of :func:`validate_tile`.

    Attributes:
        k_std: A band whose mean lies outside pretraining ``mean ± k_std·std`` gets a warning.
        patch: Tile sides must be multiples of the patch size.
        pretrain_size: Side length the model was pretrained on.
        s2_offset: The DN offset of Sentinel-2 processing baseline 04.00 and later (products since
            2022-01-25, and archives reprocessed with it).
        offset_min: With the offset, dark pixels no longer reach 0: every band's minimum (ignoring 0, the
            no-data value of such products) is at or above this. CIRRUS (B10, L1C only) is near 0 without
            the offset over almost any scene, so its minimum alone is a strong sign.
        unit_max: Reflectance scaled to 0–1 (or an 8-bit image scaled to 0–1) has no value above this.
        linear_fraction: S1 in dB is mostly negative; when at least this fraction of values is positive
            the backscatter is probably linear power.
    """

    k_std: float = 3.0
    patch: int = 16
    pretrain_size: int = 224
    s2_offset: float = 1000.0
    offset_min: float = 1000.0
    unit_max: float = 1.5
    linear_fraction: float = 0.9


THRESHOLDS = Thresholds()

# dtypes of the pretraining tiles (TerraMesh); others are read as they are but flagged.
EXPECTED_DTYPES: dict[str, tuple[str, ...]] = {
    "S2L2A": ("int16", "uint16"),
    "S2L1C": ("int16", "uint16"),
    "S2RGB": ("uint8",),
    "S1GRD": ("float32", "float64"),
    "S1RTC": ("float32", "float64"),
    "DEM": ("int16", "float32", "float64"),
    "LULC": ("uint8",),
    "NDVI": ("float32", "float64"),
}
# The factor that undoes a 0–1 scaling, per modality whose raw unit is a digital number.
UNIT_SCALE: dict[str, float] = {"S2L2A": 10000.0, "S2L1C": 10000.0, "S2RGB": 255.0}
# Hard physical bounds: values outside are wrong, not just unusual.
PHYSICAL_BOUNDS: dict[str, tuple[float, float]] = {"NDVI": (-1.0, 1.0)}
# Values no file of the modality can hold in any unit or scaling people use: a read refuses them. Each is
# at least ten times beyond the widest legitimate range: S2 reflectance x10000 stays below 65535 (uint16,
# offset included) and above -10000 (negative BOA with the +1000 offset removed); S2RGB is 8-bit; S1
# backscatter is -100..+60 dB or linear power below 1e4; elevations lie in -11000..8849 m; NDVI in -1..1 (or
# x10000 when stored as integers); LULC ids are 0-255 at most.
HARD_LIMITS: dict[str, tuple[float, float]] = {
    "S2L2A": (-1e5, 1e6),
    "S2L1C": (-1e5, 1e6),
    "S2RGB": (-2550.0, 2550.0),
    "S1GRD": (-1e3, 1e5),
    "S1RTC": (-1e3, 1e5),
    "DEM": (-1.2e5, 1e5),
    "NDVI": (-1e5, 1e5),
    "LULC": (0.0, 255.0),
}
# dtypes a modality's files cannot have, with the reason (complex and bool are refused for all).
_S2_8BIT = (
    "8 bits cannot hold Sentinel-2 reflectance x10000 (0-10000 and more): this looks like a visual product "
    "(e.g. TCI); use the 16-bit reflectance bands, or read an 8-bit RGB image as S2RGB"
)
_CLASS_FLOAT = "a class map holds whole class ids: write it as an integer raster (e.g. uint8)"
REFUSED_DTYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "S2L2A": (("uint8", "int8"), _S2_8BIT),
    "S2L1C": (("uint8", "int8"), _S2_8BIT),
    "LULC": (("float16", "float32", "float64"), _CLASS_FLOAT),
}


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
    refused, reason = REFUSED_DTYPES.get(spec.name, ((), ""))
    if str(kind) in refused:
        raise InputError(f"{where} is {kind}, which {spec.name} cannot be: {reason}")


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
    if np.issubdtype(data.dtype, np.floating):
        data = _nonfinite(data, nodata, where, allow_nonfinite)
    valid = np.isfinite(data) if np.issubdtype(data.dtype, np.floating) else np.ones(data.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= data != nodata
    if require_valid and not valid.any():
        raise InputError(
            f"{where} has no valid pixels: every value is nodata ({nodata}) or NaN; pass a tile with data"
        )
    _check_limits(data[valid], spec, where)
    return data


def _nonfinite(data: np.ndarray, nodata: float | None, where: str, allow: bool) -> np.ndarray:
    nan, bad = np.isnan(data), ~np.isfinite(data)
    if allow or not bad.any():
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
    if spec.name not in HARD_LIMITS or not values.size:
        return
    lo, hi = HARD_LIMITS[spec.name]
    out = (values < lo) | (values > hi)
    if out.any():
        bad = values[out]
        raise InputError(
            f"{where} has {int(out.sum())} value(s) that no {spec.name} file can hold "
            f"({float(bad.min()):.4g}..{float(bad.max()):.4g}, outside {lo:g}..{hi:g} in any unit): "
            f"the file is corrupt or not {spec.name} ({spec.unit}); check how it was produced"
        )


@dataclass(frozen=True)
class BandStats:
    """Summary of one band next to the pretraining statistics.

    Attributes:
        name: Band name from the catalog.
        min: Minimum of the valid (finite, not nodata) values; NaN when there are none.
        mean: Mean of the valid values.
        max: Maximum of the valid values.
        pretrain_mean: v1 pretraining mean of the band.
        pretrain_std: v1 pretraining std of the band.
    """

    name: str
    min: float
    mean: float
    max: float
    pretrain_mean: float
    pretrain_std: float


def valid_mask(raster: Raster) -> np.ndarray:
    """Boolean ``(C, H, W)`` mask of pixels that are finite and not the file's nodata value."""
    data = raster.data
    valid = np.isfinite(data) if np.issubdtype(data.dtype, np.floating) else np.ones(data.shape, bool)
    nodata = raster.georef.nodata
    if nodata is not None and not np.isnan(nodata):
        valid &= data != nodata
    return valid


def band_stats(raster: Raster, modality: str | ModalitySpec) -> list[BandStats]:
    """Per-band min/mean/max of the valid pixels beside the pretraining mean and std.

    Bands beyond the modality's band count are skipped (the band-count check reports them).
    """
    spec = get_modality(modality)
    valid = valid_mask(raster)
    out = []
    for i, (name, mean, std) in enumerate(zip(spec.bands, spec.mean, spec.std, strict=True)):
        if i >= raster.data.shape[0]:
            break
        values = raster.data[i][valid[i]].astype(np.float64)
        lo, avg, hi = (values.min(), values.mean(), values.max()) if values.size else (np.nan,) * 3
        out.append(BandStats(name, float(lo), float(avg), float(hi), mean, std))
    return out


def _band_count(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    count = raster.data.shape[0]
    if count != spec.num_bands:
        return [
            Finding(
                "error",
                f"{count} band(s), but {spec.name} has {spec.num_bands}: {', '.join(spec.bands)} (in order)",
            )
        ]
    return [Finding("ok", f"{count} band(s), as {spec.name} expects")]


def _dtype(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    dtype, expected = str(raster.data.dtype), EXPECTED_DTYPES.get(spec.name, ())
    if expected and dtype not in expected:
        return [
            Finding(
                "warning",
                f"dtype {dtype}: pretraining tiles were {' or '.join(expected)}; values are used as they are",
            )
        ]
    return [Finding("ok", f"dtype {dtype}")]


def _size(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    h, w = raster.data.shape[1:]
    if h % t.patch or w % t.patch:
        return [
            Finding(
                "error",
                f"size {w}x{h} is not a multiple of the {t.patch}-pixel patch: crop or pad it "
                f"(e.g. to {t.pretrain_size}x{t.pretrain_size})",
            )
        ]
    if (h, w) != (t.pretrain_size, t.pretrain_size):
        return [
            Finding(
                "warning",
                f"size {w}x{h}: the model was pretrained on {t.pretrain_size}x{t.pretrain_size} tiles "
                f"(other sizes interpolate the position embeddings; large scenes are better tiled)",
            )
        ]
    return [Finding("ok", f"size {w}x{h}, the pretraining size")]


def _finite(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    data = raster.data
    bad = int((~np.isfinite(data)).sum()) if np.issubdtype(data.dtype, np.floating) else 0
    findings = []
    if bad:
        findings.append(
            Finding(
                "error",
                f"{bad / data.size:.2%} of the values are NaN/inf: fill them (e.g. with the band mean) first",
            )
        )
    nodata = raster.georef.nodata
    if nodata is not None and not np.isnan(nodata) and (share := float((data == nodata).mean())) > 0:
        findings.append(
            Finding(
                "warning", f"{share:.2%} of the values are nodata ({nodata}): the model sees them as data"
            )
        )
    return findings or [Finding("ok", "all values finite")]


def _ranges(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    if spec.classes is not None:  # class ids have no meaningful mean/std
        return []
    far = [
        f"{s.name} mean {s.mean:.4g} outside [{s.pretrain_mean - t.k_std * s.pretrain_std:.4g}, "
        f"{s.pretrain_mean + t.k_std * s.pretrain_std:.4g}]"
        for s in band_stats(raster, spec)
        if abs(s.mean - s.pretrain_mean) > t.k_std * s.pretrain_std
    ]
    if far:
        return [
            Finding(
                "warning",
                f"values far from the pretraining statistics (mean ± {t.k_std:g}·std): {'; '.join(far)}; "
                f"check the unit ({spec.unit})",
            )
        ]
    return [Finding("ok", f"band means within the pretraining mean ± {t.k_std:g}·std")]


def _s2_offset(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    valid = valid_mask(raster) & (raster.data != 0)  # DN 0 is no data in offset products
    minima = {
        name: float(raster.data[i][valid[i]].min())
        for i, name in enumerate(spec.bands[: raster.data.shape[0]])
        if valid[i].any()
    }
    if not minima:
        return []
    reasons = []
    if "CIRRUS" in minima and minima["CIRRUS"] >= t.offset_min:
        reasons.append(f"CIRRUS minimum {minima['CIRRUS']:.0f} >= {t.offset_min:.0f}")
    if min(minima.values()) >= t.offset_min:
        reasons.append(f"every band's minimum >= {t.offset_min:.0f} (lowest {min(minima.values()):.0f})")
    if reasons:
        return [
            Finding(
                "warning",
                f"likely +{t.s2_offset:.0f} DN offset (Sentinel-2 processing baseline 04.00 or later): "
                f"{' and '.join(reasons)}; standardise with offset={t.s2_offset:.0f}",
            )
        ]
    return [Finding("ok", f"no sign of the +{t.s2_offset:.0f} DN offset")]


def _unit_scaled(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    values = raster.data[valid_mask(raster)]
    if values.size and float(values.max()) <= t.unit_max:
        scale = UNIT_SCALE[spec.name]
        return [
            Finding(
                "error",
                f"values look scaled to 0-1 (max {float(values.max()):.3g}): multiply by {scale:g} "
                f"({spec.name} is expected in {spec.unit})",
            )
        ]
    return []


def _s1_linear(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    values = raster.data[valid_mask(raster)]
    if values.size and (share := float((values > 0).mean())) >= t.linear_fraction:
        return [
            Finding(
                "error",
                f"{share:.0%} of the values are positive: this looks like linear power, not dB; "
                f"convert with 10*log10(x)",
            )
        ]
    return []


def _class_ids(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    if spec.classes is None:
        return []
    values = raster.data[valid_mask(raster)]
    ids, counts = np.unique(values, return_counts=True)
    names = {c.id: c.name for c in spec.classes}
    bad = [v for v in ids.tolist() if v not in names]
    if bad:
        return [
            Finding(
                "error",
                f"class ids outside {min(names)}-{max(names)}: {bad[:5]}"
                f"{' ...' if len(bad) > 5 else ''}; remap to the {spec.name} classes "
                f"({', '.join(f'{k} {v}' for k, v in names.items())})",
            )
        ]
    shares = ", ".join(f"{names[int(i)]} {_share(c / values.size)}" for i, c in zip(ids, counts, strict=True))
    findings = [Finding("ok", f"classes present: {shares}")]
    if 0 in names and 0 in ids:
        findings.append(
            Finding("warning", f"{counts[ids == 0][0] / values.size:.1%} of the pixels are 'no data'")
        )
    return findings


def _share(fraction: float) -> str:
    return f"{fraction:.0%}" if fraction >= 0.01 else "<1%"


def _bounds(raster: Raster, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    lo, hi = PHYSICAL_BOUNDS[spec.name]
    values = raster.data[valid_mask(raster)]
    if values.size and (float(values.min()) < lo or float(values.max()) > hi):
        return [
            Finding(
                "error",
                f"values span {float(values.min()):.4g}..{float(values.max()):.4g}, outside the valid "
                f"{lo:g}..{hi:g} of {spec.name}: check its scaling",
            )
        ]
    return [Finding("ok", f"values within {lo:g}..{hi:g}")]


Check = Callable[["Raster", ModalitySpec, Thresholds], list[Finding]]
# Checks that every image modality gets, then the detectors specific to a modality.
COMMON_CHECKS: tuple[Check, ...] = (_band_count, _dtype, _size, _finite, _ranges)
MODALITY_CHECKS: dict[str, tuple[Check, ...]] = {
    "S2L2A": (_s2_offset, _unit_scaled),
    "S2L1C": (_s2_offset, _unit_scaled),
    "S2RGB": (_unit_scaled,),
    "S1GRD": (_s1_linear,),
    "S1RTC": (_s1_linear,),
    "LULC": (_class_ids,),
    "NDVI": (_bounds,),
}


def validate_tile(
    raster: Raster, modality: str | ModalitySpec, *, thresholds: Thresholds = THRESHOLDS
) -> list[Finding]:
    """Check a tile against a modality: bands, dtype, size, finiteness, value ranges, known pitfalls.

    Args:
        raster: The tile, e.g. from ``read_raster(path, allow_nonfinite=True)``.
        modality: Catalog name or record.
        thresholds: Detection thresholds.

    Returns:
        Findings in check order; ``error`` ones mean the model would get wrong input.

    Raises:
        ModalityError: Unknown modality.
    """
    spec = get_modality(modality)
    checks = COMMON_CHECKS
    if raster.data.shape[0] == spec.num_bands:  # detectors index bands by name
        checks = checks + MODALITY_CHECKS.get(spec.name, ())
    return [finding for check in checks for finding in check(raster, spec, thresholds)]
