"""Zero-shot water mapping (arXiv 2504.11171): generate LULC from S2 and read off the water class.

No training: the pretrained model generates a land-cover map (LULC) from the input scene, tile by tile
through the whole-scene engine (:func:`terramind.scene.run_scene`), and every pixel of class *water*
(optionally also *flooded vegetation*) is water. The mask is a sink transform: each blended LULC strip is
turned into water 0/1 (255: no data) as it is written, so the scene streams and the LULC map is never read
back whole. With a reference mask the result is scored by IoU, precision, recall and
F1 of the water class over the labelled pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from terramind.core.errors import InputError, ShapeError
from terramind.data.tiles import read_label
from terramind.modalities import LULC_CLASSES
from terramind.scene import (
    DEFAULT_RESAMPLING,
    GeoTiffSink,
    InputValue,
    Progress,
    SceneOutput,
    TileFn,
    TileLayout,
    fill_values,
    output_nodata,
    run_scene,
    scene_source,
    work_dir_for,
)

WATER = ("water",)
FLOODED_VEGETATION = ("flooded vegetation",)
NO_DATA = int(output_nodata("classes"))  # where the generated LULC is "no data" (invalid input pixels)
WATER_COLOURS = {0: (230, 230, 230), 1: (65, 155, 223)}


def class_ids(names: Sequence[str]) -> tuple[int, ...]:
    """LULC class ids of class names, from the catalog's class table."""
    table = {c.name: c.id for c in LULC_CLASSES}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise InputError(f"unknown LULC class(es) {unknown}; classes are {list(table)}")
    return tuple(table[n] for n in names)


def water_mask(lulc: np.ndarray, flooded_vegetation: bool = False) -> np.ndarray:
    """Boolean water mask of a LULC class map (class *water*, plus *flooded vegetation* if asked)."""
    names = WATER + (FLOODED_VEGETATION if flooded_vegetation else ())
    return np.isin(lulc, class_ids(names))


@dataclass(frozen=True)
class BinaryScores:
    """Scores of a binary (water / not water) map over the valid pixels.

    Attributes:
        iou: Intersection over union of the positive class, ``tp / (tp + fp + fn)``.
        precision: ``tp / (tp + fp)``.
        recall: ``tp / (tp + fn)``.
        f1: Harmonic mean of precision and recall.
        tp: True-positive pixels.
        fp: False-positive pixels.
        fn: False-negative pixels.
        valid: Pixels scored.
    """

    iou: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    tp: int
    fp: int
    fn: int
    valid: int

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain dict for JSON: undefined scores are None (``null``), never NaN."""
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"water IoU {_text(self.iou)}  precision {_text(self.precision)}  recall {_text(self.recall)}  "
            f"F1 {_text(self.f1)}  ({self.valid} labelled pixels)"
        )


def _ratio(num: int, den: int) -> float | None:
    """``num / den``; None when undefined (0/0: no positive pixels in prediction or truth)."""
    return num / den if den else None


def _text(value: float | None) -> str:
    return "undefined (no positive pixels)" if value is None else f"{value:.4f}"


def binary_scores(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> BinaryScores:
    """Score a predicted boolean map against the truth over the valid pixels.

    Ratios with an empty denominator (no water in prediction or truth) are undefined: None, never NaN, so
    ``json.dumps(scores.as_dict(), allow_nan=False)`` always gives valid JSON.

    Raises:
        ShapeError: When the maps differ in shape.
    """
    if pred.shape != truth.shape or (valid is not None and valid.shape != pred.shape):
        raise ShapeError(f"prediction {pred.shape} and label {truth.shape} differ in shape")
    keep = np.ones(pred.shape, bool) if valid is None else valid.astype(bool)
    p, t = pred.astype(bool)[keep], truth.astype(bool)[keep]
    tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return BinaryScores(
        iou=_ratio(tp, tp + fp + fn),
        precision=precision,
        recall=recall,
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        tp=tp,
        fp=fp,
        fn=fn,
        valid=int(keep.sum()),
    )


def read_water_label(
    path: str | Path, *, water_values: Sequence[float] = (1,), ignore_values: Sequence[float] = (-1, 255)
) -> tuple[np.ndarray, np.ndarray]:
    """Read a reference mask: ``(water, valid)`` boolean maps.

    A water label holds 0 (not water), ``water_values`` (water) and unlabelled pixels: ``ignore_values``,
    the file's nodata value or non-finite values, which are not scored. Anything else is refused.

    Raises:
        InputError: Not one band, fractional values, or values that are neither water, not-water nor
            unlabelled (counted per value).
    """
    path = Path(path)
    label = read_label(path)
    data, nodata = label.data[0], label.georef.nodata
    invalid = ~np.isfinite(data) | np.isin(data, list(ignore_values))
    if nodata is not None:
        invalid |= data == nodata
    known = invalid | np.isin(data, [0, *water_values])
    if not known.all():
        values, counts = np.unique(data[~known], return_counts=True)
        more = f" ... and {len(values) - 8} more value(s)" if len(values) > 8 else ""
        listed = ", ".join(
            f"{v:g} ({c} px)" for v, c in list(zip(values.tolist(), counts.tolist(), strict=True))[:8]
        )
        unlabelled = [*ignore_values, *([nodata] if nodata is not None else [])]
        raise InputError(
            f"water label {str(path)!r} holds values other than 0 (not water), "
            f"{', '.join(f'{v:g}' for v in water_values)} (water) and unlabelled {unlabelled}: "
            f"{listed}{more}; remap it to a 0/1 mask (e.g. a class map: water class -> 1, others -> 0)"
        )
    return np.isin(data, list(water_values)) & ~invalid, ~invalid


def lulc_path(output: Path) -> Path:
    """Where ``--keep-lulc`` keeps the generated LULC map of the water mask ``output``."""
    return output.with_name(f"{output.stem}_lulc.tif")


def water_output(path: Path, flooded_vegetation: bool = False) -> SceneOutput:
    """Build the water-mask output: LULC logits -> classes -> water 0/1 (255: LULC "no data"), per strip."""
    lulc = SceneOutput.for_modality("LULC", path)
    water_mask(np.zeros(1), flooded_vegetation)  # an unknown class name fails before the run

    def to_water(classes: np.ndarray) -> np.ndarray:  # (h, W) LULC ids -> (h, W) uint8
        return np.where(classes == lulc.nodata, NO_DATA, water_mask(classes, flooded_vegetation)).astype(
            np.uint8
        )

    return SceneOutput(
        "water", path, lulc.reads, lulc.channels, True, "uint8", NO_DATA, WATER_COLOURS, ("water",), to_water
    )


def map_water(
    lulc_fn: TileFn,
    inputs: Mapping[str, InputValue],
    output: Path,
    *,
    flooded_vegetation: bool = False,
    grid: str | None = None,
    resampling: str = DEFAULT_RESAMPLING,
    offset: Mapping[str, float] | None = None,
    keep_lulc: bool = False,
    tile: int = 224,
    overlap: int = 32,
    batch: int = 4,
    settings: Mapping[str, object] | None = None,
    weights: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Generate the LULC map of a scene and write its water mask (uint8: 1 water, 0 not, 255 no data).

    Strips and resume state live in a work folder beside the output (``.terramind-zeroshot-<stem>``, removed
    after success, kept for resuming after an interruption); with ``keep_lulc`` a second sink publishes the
    LULC map as ``<output stem>_lulc.tif``, and then an existing file there needs ``overwrite`` like the mask
    itself. The output folder's writer lock is held throughout.

    Args:
        lulc_fn: Tile function returning ``{"LULC": (B, 10, T, T) logits}`` for input tiles, e.g.
            :func:`terramind.generation.scene.generator_tile_fn` of a generator with output LULC.
        inputs: Input per modality (any of S2L1C, S2L2A, S1GRD, S1RTC), in any form
            :func:`terramind.scene.scene_source` reads.
        output: Water-mask GeoTIFF to write (on the target grid).
        flooded_vegetation: Count *flooded vegetation* as water too.
        grid: The input whose grid the mask is on (default: the first input's; others are warped).
        resampling: Resampling of continuous inputs onto the grid.
        offset: Per modality, the DN offset added to the mean; invalid pixels are filled with the offset
            mean (pass the same offsets to ``lulc_fn``).
        keep_lulc: Keep the generated LULC map as ``<output stem>_lulc.tif``.
        tile: Tile size of the generation.
        overlap: Overlap of neighbouring tiles (blended).
        batch: Tiles per model call.
        settings: What else determines the result (model, seed), for resuming an interrupted run.
        weights: Digest of the weights behind ``lulc_fn``, for resuming an interrupted run.
        overwrite: Replace existing outputs.
        progress: Progress display factory (e.g. :func:`terramind.scene.tqdm_progress`).

    Returns:
        The water-mask path.
    """
    sinks = [GeoTiffSink([water_output(output, flooded_vegetation)])]
    if keep_lulc:
        sinks.append(GeoTiffSink([SceneOutput.for_modality("LULC", lulc_path(output))]))
    source = scene_source(inputs, grid=grid, resampling=resampling)
    layout = TileLayout(source.georef.height, source.georef.width, tile, overlap)
    options = {"flooded_vegetation": flooded_vegetation, "grid": grid, "resampling": resampling,
               "offset": dict(offset or {}), **(settings or {})}  # fmt: skip
    fill = fill_values(list(inputs), offset)
    run_scene(
        lulc_fn, source, sinks, layout, work_dir_for(output, "zeroshot"), fill=fill,
        batch=batch, settings=options, weights=weights, overwrite=overwrite, progress=progress,
        lock_dir=output.parent,
    )  # fmt: skip
    return output
