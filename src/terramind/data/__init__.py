"""Data: GeoTIFF in/out with georeference, tile validation, GeoTIFF folders as samples (no Lightning)."""

from terramind.data.geotiff import (
    GeoRef,
    Raster,
    RasterWriter,
    open_georef,
    read_raster,
    read_window,
    write_raster,
)
from terramind.data.tiles import (
    GeoTiffDataset,
    ModalityInput,
    match_files,
    modality_inputs,
    prepare_input,
)
from terramind.data.validate import Finding, validate_tile

__all__ = [
    "Finding",
    "GeoRef",
    "GeoTiffDataset",
    "ModalityInput",
    "Raster",
    "RasterWriter",
    "match_files",
    "modality_inputs",
    "open_georef",
    "prepare_input",
    "read_raster",
    "read_window",
    "validate_tile",
    "write_raster",
]
