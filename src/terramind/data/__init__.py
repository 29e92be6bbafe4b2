"""Data: GeoTIFF input/output with georeference, and tile validation against the modality catalog."""

from terramind.data.geotiff import (
    GeoRef,
    Raster,
    RasterWriter,
    open_georef,
    read_raster,
    read_window,
    write_raster,
)
from terramind.data.validate import Finding, validate_tile

__all__ = [
    "Finding",
    "GeoRef",
    "Raster",
    "RasterWriter",
    "open_georef",
    "read_raster",
    "read_window",
    "validate_tile",
    "write_raster",
]
