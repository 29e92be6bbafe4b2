"""Whole scenes: the tiling engine, sources, sinks and :func:`run_scene` (resume, progress, folder lock).

Generation, fine-tuned prediction and zero-shot water mapping are each only a tile function handed to
:func:`run_scene`; see :mod:`.run` for the flow, :mod:`.sinks` for the nodata convention.
"""

from terramind.scene.band_files import DEFAULT_RESAMPLING, BandFilesSource
from terramind.scene.engine import Carry, RowState, TileFn, TileLayout, blend_window, run_tiles
from terramind.scene.run import WORK_DIR, Progress, run_scene, tqdm_progress, work_dir_for
from terramind.scene.sinks import GeoTiffSink, SceneOutput, Sink, output_nodata
from terramind.scene.sources import (
    InputValue,
    RasterSource,
    Source,
    check_scene_inputs,
    combined,
    fill_values,
    notes,
    scan_scene,
    scene_source,
)

__all__ = [
    "DEFAULT_RESAMPLING",
    "WORK_DIR",
    "BandFilesSource",
    "Carry",
    "GeoTiffSink",
    "InputValue",
    "Progress",
    "RasterSource",
    "RowState",
    "SceneOutput",
    "Sink",
    "Source",
    "TileFn",
    "TileLayout",
    "blend_window",
    "check_scene_inputs",
    "combined",
    "fill_values",
    "notes",
    "output_nodata",
    "run_scene",
    "run_tiles",
    "scan_scene",
    "scene_source",
    "tqdm_progress",
    "work_dir_for",
]
