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

__all__ = [
    "GeoRef",
    "Raster",
    "RasterWriter",
    "open_georef",
    "read_raster",
    "read_window",
    "write_raster",
]
