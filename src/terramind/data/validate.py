"""Check a tile against the modality catalog before it reaches the model.

**The reading policy** (:mod:`terramind.data.policy`: refused dtypes, the hard limits of impossible
values, NaN masking, "no valid pixels") is applied by every reader that knows the modality and raises before
the model loads; it has its own module because the reader applies it and this module reads through the
reader.

**The advisory checks** (:func:`validate_tile`, for ``terramind inspect``) return :class:`Finding` records
(``ok``, ``warning`` or ``error``) instead of raising, so a user sees everything that is off at once. The
detection thresholds live in :data:`THRESHOLDS` and the small per-modality tables below, not in the checks.
Statistics are accumulated window by window (:func:`summarize_file`), so the memory needed does not grow
with the raster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np
from rasterio.windows import Window

from terramind.core.errors import InputError
from terramind.data.geotiff import (
    GeoRef,
    PathLike,
    Raster,
    band_positions,
    open_georef,
    open_raster,
    read_window,
)
from terramind.modalities import MODALITIES, PATCH_SIZE, ModalitySpec, get_modality

Level = Literal["ok", "note", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One result of a validation check.

    Attributes:
        level: ``"ok"``, ``"note"`` (fine, but handled for you: say how), ``"warning"`` (usable, but check it)
            or ``"error"`` (the model would be misled).
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
    patch: int = PATCH_SIZE
    pretrain_size: int = 224
    s2_offset: float = 1000.0
    offset_min: float = 1000.0
    unit_max: float = 1.5
    linear_fraction: float = 0.9


THRESHOLDS = Thresholds()

# Derived views of the catalog's raster facts (modalities/catalog.py), by modality name; the checks read
# the record itself, so a registered sensor's facts apply too.
# dtypes of the pretraining tiles (TerraMesh); others are read as they are but flagged.
EXPECTED_DTYPES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {m.name: m.raster.dtypes for m in MODALITIES.values() if m.raster and m.raster.dtypes}
)
# The factor that undoes a 0–1 scaling, per modality whose raw unit is a digital number.
UNIT_SCALE: Mapping[str, float] = MappingProxyType(
    {m.name: m.raster.unit_scale for m in MODALITIES.values() if m.raster and m.raster.unit_scale}
)
# Hard physical bounds: values outside are wrong, not just unusual.
PHYSICAL_BOUNDS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {m.name: m.raster.physical_bounds for m in MODALITIES.values() if m.raster and m.raster.physical_bounds}
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


@dataclass
class TileSummary:
    """What the advisory checks need of a raster, accumulated window by window (bounded memory).

    Per-band arrays have one entry per band; valid values are finite and not the file's nodata.

    Attributes:
        path: The file.
        georef: Its georeference.
        dtype: Its dtype.
        valid: Valid values per band.
        total: Sum of the valid values per band.
        min: Minimum valid value per band (NaN when none).
        max: Maximum valid value per band (NaN when none).
        min_nonzero: Minimum valid value other than 0 per band (NaN when none).
        positive: Valid values above 0 per band.
        nonfinite: NaN/inf values in all bands.
        nodata: Values equal to the nodata value in all bands.
        classes: Valid value -> count over all bands (categorical modalities only).
    """

    path: Path
    georef: GeoRef
    dtype: np.dtype
    valid: np.ndarray
    total: np.ndarray
    min: np.ndarray
    max: np.ndarray
    min_nonzero: np.ndarray
    positive: np.ndarray
    nonfinite: int = 0
    nodata: int = 0
    classes: dict[float, int] | None = field(default=None)

    @property
    def bands(self) -> int:
        """Number of bands."""
        return len(self.valid)

    @property
    def size(self) -> int:
        """Number of values (bands x height x width)."""
        return self.bands * self.georef.width * self.georef.height

    def add(self, data: np.ndarray) -> None:
        """Accumulate one ``(C, h, w)`` window of the raster."""
        nodata = self.georef.nodata
        finite = np.isfinite(data) if np.issubdtype(data.dtype, np.floating) else np.ones(data.shape, bool)
        valid = finite.copy()
        if nodata is not None and not np.isnan(nodata):
            is_nodata = data == nodata
            self.nodata += int(is_nodata.sum())
            valid &= ~is_nodata
        self.nonfinite += int((~finite).sum())
        for i in range(data.shape[0]):
            values = data[i][valid[i]].astype(np.float64)
            if not values.size:
                continue
            self.valid[i] += values.size
            self.total[i] += values.sum()
            self.min[i] = np.fmin(self.min[i], values.min())
            self.max[i] = np.fmax(self.max[i], values.max())
            self.positive[i] += int((values > 0).sum())
            nonzero = values[values != 0]
            if nonzero.size:
                self.min_nonzero[i] = np.fmin(self.min_nonzero[i], nonzero.min())
        if self.classes is not None:
            ids, counts = np.unique(data[valid], return_counts=True)
            for v, c in zip(ids.tolist(), counts.tolist(), strict=True):
                self.classes[v] = self.classes.get(v, 0) + c


def _empty(path: Path, georef: GeoRef, dtype: np.dtype, bands: int, categorical: bool) -> TileSummary:
    nan = np.full(bands, np.nan)
    zeros = np.zeros(bands, np.int64)
    return TileSummary(
        path, georef, np.dtype(dtype), zeros.copy(), np.zeros(bands), nan.copy(), nan.copy(), nan.copy(),
        zeros.copy(), classes={} if categorical else None,
    )  # fmt: skip


def summarize(raster: Raster, modality: str | ModalitySpec) -> TileSummary:
    """Summarise a raster already in memory."""
    spec = get_modality(modality)
    georef = _sized(raster.georef, raster.data.shape[2], raster.data.shape[1])
    out = _empty(raster.path, georef, raster.data.dtype, raster.data.shape[0], spec.classes is not None)
    out.add(raster.data)
    return out


def _sized(georef: GeoRef, width: int, height: int) -> GeoRef:
    """Return the georeference with the data's size (an in-memory raster may disagree with its georef)."""
    if (georef.width, georef.height) == (width, height):
        return georef
    return GeoRef(georef.crs, georef.transform, width, height, georef.nodata, georef.time, georef.band_names)


def windows(width: int, height: int, block: int) -> Iterator[Window]:
    """Square windows of at most ``block`` pixels a side covering a raster, row by row."""
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def summarize_strips(
    path: PathLike, georef: GeoRef, strips: Iterable[np.ndarray], modality: str | ModalitySpec
) -> TileSummary:
    """Summarise a scene read strip by strip by another reader (band files, a STAC item, a URL).

    Args:
        path: What the scene is (for the report).
        georef: Its grid; pixels equal to ``georef.nodata`` are counted as nodata.
        strips: ``(C, h, W)`` float32 strips of the modality's bands, top to bottom.
        modality: Catalog name or record.

    Raises:
        InputError: No valid pixel at all.
    """
    spec = get_modality(modality)
    out: TileSummary | None = None
    for strip in strips:
        if out is None:
            out = _empty(Path(str(path)), georef, strip.dtype, strip.shape[0], spec.classes is not None)
        out.add(strip)
    if out is None or not out.valid.any():
        raise InputError(
            f"{str(path)!r} has no valid pixels: every value is nodata or NaN; pass a scene with data"
        )
    return out


def summarize_file(path: PathLike, modality: str | ModalitySpec, *, block: int = 1024) -> TileSummary:
    """Summarise a raster file window by window: memory stays bounded by one window, whatever its size.

    The modality's bands are read (by the file's band names when it has them) through
    :func:`terramind.data.geotiff.read_window`, so the reading policy applies to every window, and a file
    without a single valid pixel is refused.

    Args:
        path: The raster.
        modality: Catalog name or record.
        block: Window side in pixels.

    Returns:
        The :class:`TileSummary`.

    Raises:
        InputError: Unreadable, truncated or corrupt file, refused values, NaN/inf without a declared
            nodata value, no valid pixels.
        ShapeError: Band count differs from the modality's.
    """
    spec = get_modality(modality)
    georef = open_georef(path)
    index = band_positions(georef, path, spec)
    first = read_window(path, Window(0, 0, 1, 1), band_indexes=index)  # for the dtype
    georef = GeoRef(
        georef.crs, georef.transform, georef.width, georef.height, georef.nodata, georef.time,
        tuple(georef.band_names[i] for i in index),
    )  # fmt: skip
    out = _empty(Path(path), georef, first.dtype, len(index), spec.classes is not None)
    for window in windows(georef.width, georef.height, block):
        out.add(read_window(path, window, band_indexes=index, modality=spec))
    if out.nonfinite and georef.nodata is None:  # the reading policy: NaN is masked only as declared nodata
        raise InputError(
            f"{str(path)!r} has {out.nonfinite} non-finite (NaN/inf) value(s) and no nodata value: set the "
            f"file's nodata (e.g. gdal_edit.py -a_nodata nan) so NaN is masked, or fill them"
        )
    if not out.valid.any():
        raise InputError(
            f"{str(path)!r} has no valid pixels: every value is nodata ({georef.nodata}) or NaN; pass a "
            f"tile with data"
        )
    return out


SAMPLE_SIDE = 512  # longest side of the decimated read that decides a scene's S1 unit


def summarize_sample(
    path: PathLike,
    modality: str | ModalitySpec,
    *,
    side: int = SAMPLE_SIDE,
    band_indexes: Sequence[int] | None = None,
) -> TileSummary:
    """Summarise a decimated read of a raster (at most ``side`` px a side; a COG reads its overviews).

    Enough for scene-wide facts such as the unit of S1 backscatter (:func:`s1_power_unit`) without reading
    a whole scene. ``band_indexes`` (0-based) picks the bands; by default the modality's, by the file's band
    names when it has them.

    Raises:
        InputError: The file cannot be opened or read.
    """
    spec = get_modality(modality)
    georef = open_georef(path)
    index = list(band_indexes) if band_indexes is not None else band_positions(georef, path, spec)
    scale = max(1.0, max(georef.width, georef.height) / side)
    shape = (len(index), max(1, round(georef.height / scale)), max(1, round(georef.width / scale)))
    with open_raster(path) as dataset:
        data = dataset.read([i + 1 for i in index], out_shape=shape)
    return summarize(Raster(data, georef, Path(str(path))), spec)


S1Unit = Literal["dB", "linear", "ambiguous"]


def s1_power_unit(summary: TileSummary, thresholds: Thresholds = THRESHOLDS) -> S1Unit:
    """Tell S1 backscatter in dB from linear power by its signs.

    In dB almost every value is negative; linear power is never negative. At least
    ``thresholds.linear_fraction`` positive values and none negative: ``linear``; that many positive but some
    negative: ``ambiguous`` (neither unit explains it); otherwise ``dB``.
    """
    n = int(summary.valid.sum())
    if not n or float(summary.positive.sum() / n) < thresholds.linear_fraction:
        return "dB"
    return "ambiguous" if bool((summary.min < 0).any()) else "linear"


def _summary(tile: Raster | TileSummary, spec: ModalitySpec) -> TileSummary:
    return tile if isinstance(tile, TileSummary) else summarize(tile, spec)


def band_stats(tile: Raster | TileSummary, modality: str | ModalitySpec) -> list[BandStats]:
    """Per-band min/mean/max of the valid pixels beside the pretraining mean and std.

    Args:
        tile: A raster in memory, or the :func:`summarize_file` summary of a file of any size.
        modality: Catalog name or record.

    Bands beyond the modality's band count are skipped (the band-count check reports them).
    """
    spec = get_modality(modality)
    summary = _summary(tile, spec)
    out = []
    for i, (name, mean, std) in enumerate(zip(spec.bands, spec.mean, spec.std, strict=True)):
        if i >= summary.bands:
            break
        n = summary.valid[i]
        avg = summary.total[i] / n if n else np.nan
        out.append(BandStats(name, float(summary.min[i]), float(avg), float(summary.max[i]), mean, std))
    return out


def _band_count(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    count = summary.bands
    if count != spec.num_bands:
        return [
            Finding(
                "error",
                f"{count} band(s), but {spec.name} has {spec.num_bands}: {', '.join(spec.bands)} (in order)",
            )
        ]
    return [Finding("ok", f"{count} band(s), as {spec.name} expects")]


def _dtype(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    dtype, expected = str(summary.dtype), spec.raster.dtypes if spec.raster else ()
    if expected and dtype not in expected:
        return [
            Finding(
                "warning",
                f"dtype {dtype}: pretraining tiles were {' or '.join(expected)}; values are used as they are",
            )
        ]
    return [Finding("ok", f"dtype {dtype}")]


def _size(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    h, w = summary.georef.height, summary.georef.width
    if h % t.patch or w % t.patch:
        return [
            Finding(
                "note",
                f"size {w}x{h} is not a multiple of the {t.patch}-pixel patch: the commands mirror-pad it "
                f"at the bottom and right and crop outputs back (embed --resize {t.pretrain_size} resamples "
                f"small patches instead)",
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


def _finite(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    findings = []
    if summary.nonfinite:
        findings.append(
            Finding(
                "error",
                f"{summary.nonfinite / summary.size:.2%} of the values are NaN/inf: fill them "
                f"(e.g. with the band mean) first",
            )
        )
    if summary.nodata:
        findings.append(
            Finding(
                "warning",
                f"{summary.nodata / summary.size:.2%} of the values are nodata ({summary.georef.nodata}): "
                f"the model sees them as data",
            )
        )
    return findings or [Finding("ok", "all values finite")]


def _ranges(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    if spec.classes is not None:  # class ids have no meaningful mean/std
        return []
    far = [
        f"{s.name} mean {s.mean:.4g} outside [{s.pretrain_mean - t.k_std * s.pretrain_std:.4g}, "
        f"{s.pretrain_mean + t.k_std * s.pretrain_std:.4g}]"
        for s in band_stats(summary, spec)
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


def _s2_offset(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    # DN 0 is no data in offset products, so the minima leave it out
    minima = {
        name: float(summary.min_nonzero[i])
        for i, name in enumerate(spec.bands[: summary.bands])
        if not np.isnan(summary.min_nonzero[i])
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


def _unit_scaled(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    if not summary.valid.any():
        return []
    lo, hi = float(np.nanmin(summary.min)), float(np.nanmax(summary.max))
    if hi > t.unit_max:
        return []
    if hi <= 0:  # scaling cannot make these reflectances: multiplying keeps them at or below 0
        return [
            Finding(
                "error",
                f"every value is 0 or negative ({lo:.3g}..{hi:.3g}): {spec.name} ({spec.unit}) is "
                f"positive; this is not {spec.name} data, or it was shifted or inverted",
            )
        ]
    scale = spec.raster.unit_scale if spec.raster is not None else None
    if scale is None:  # no digital-number unit to scale back to
        return []
    return [
        Finding(
            "error",
            f"values look scaled to 0-1 (max {hi:.3g}): multiply by {scale:g} ({spec.name} is expected in "
            f"{spec.unit})",
        )
    ]


def _s1_linear(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    if s1_power_unit(summary, t) != "dB":
        share = float(summary.positive.sum() / summary.valid.sum())
        return [
            Finding(
                "error",
                f"{share:.0%} of the values are positive: this looks like linear power, not dB; "
                f"convert with 10*log10(x)",
            )
        ]
    return []


def _class_ids(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    if spec.classes is None or summary.classes is None:
        return []
    present: Mapping[float, int] = dict(sorted(summary.classes.items()))
    total = sum(present.values())
    names = {c.id: c.name for c in spec.classes}
    bad = [v for v in present if v not in names]
    if bad:
        return [
            Finding(
                "error",
                f"class ids outside {min(names)}-{max(names)}: {[_number(v) for v in bad[:5]]}"
                f"{' ...' if len(bad) > 5 else ''}; remap to the {spec.name} classes "
                f"({', '.join(f'{k} {v}' for k, v in names.items())})",
            )
        ]
    if not total:
        return []
    shares = ", ".join(f"{names[int(i)]} {_share(c / total)}" for i, c in present.items())
    findings = [Finding("ok", f"classes present: {shares}")]
    if 0 in names and present.get(0):
        findings.append(Finding("warning", f"{present[0] / total:.1%} of the pixels are 'no data'"))
    return findings


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _share(fraction: float) -> str:
    return f"{fraction:.0%}" if fraction >= 0.01 else "<1%"


def _bounds(summary: TileSummary, spec: ModalitySpec, t: Thresholds) -> list[Finding]:
    bounds = spec.raster.physical_bounds if spec.raster is not None else None
    if bounds is None:
        return []
    lo, hi = bounds
    if not summary.valid.any():
        return []
    vmin, vmax = float(np.nanmin(summary.min)), float(np.nanmax(summary.max))
    if vmin < lo or vmax > hi:
        return [
            Finding(
                "error",
                f"values span {vmin:.4g}..{vmax:.4g}, outside the valid {lo:g}..{hi:g} of {spec.name}: "
                f"check its scaling",
            )
        ]
    return [Finding("ok", f"values within {lo:g}..{hi:g}")]


Check = Callable[[TileSummary, ModalitySpec, Thresholds], list[Finding]]
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
    tile: Raster | TileSummary, modality: str | ModalitySpec, *, thresholds: Thresholds = THRESHOLDS
) -> list[Finding]:
    """Check a tile against a modality: bands, dtype, size, finiteness, value ranges, known pitfalls.

    Args:
        tile: The tile in memory (e.g. ``read_raster(path, allow_nonfinite=True)``), or the
            :func:`summarize_file` summary of a file of any size (read window by window).
        modality: Catalog name or record.
        thresholds: Detection thresholds.

    Returns:
        Findings in check order; ``error`` ones mean the model would get wrong input.

    Raises:
        ModalityError: Unknown modality.
    """
    spec = get_modality(modality)
    summary = _summary(tile, spec)
    checks = COMMON_CHECKS
    if summary.bands == spec.num_bands:  # detectors index bands by name
        checks = checks + MODALITY_CHECKS.get(spec.name, ())
    return [finding for check in checks for finding in check(summary, spec, thresholds)]
