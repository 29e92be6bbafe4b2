"""The modality catalog: names, bands, statistics, vocabularies, official keys and aliases.

The default catalog is immutable; a new sensor is registered into a new :class:`Catalog`
(``DEFAULT_CATALOG.register(pixel_modality(...))``) used within :func:`using_catalog` or passed as
``sensors=`` to the fine-tuning backbone and datamodule.
"""

from terramind.modalities.catalog import (
    ALIASES,
    DEFAULT_CATALOG,
    LULC_CLASSES,
    MODALITIES,
    Catalog,
    Sensor,
    SensorSpec,
    current_catalog,
    get_modality,
    modality_names,
    pixel_modality,
    using_catalog,
    with_sensors,
)
from terramind.modalities.normalize import band_indices, destandardize, standardize, stats
from terramind.modalities.spec import Kind, LulcClass, ModalitySpec
from terramind.modalities.tokens import EOS_ID, PAD_ID, PATCH_SIZE, SENTINEL_BASE_ID

__all__ = [
    "ALIASES",
    "DEFAULT_CATALOG",
    "EOS_ID",
    "LULC_CLASSES",
    "MODALITIES",
    "PAD_ID",
    "PATCH_SIZE",
    "SENTINEL_BASE_ID",
    "Catalog",
    "Kind",
    "LulcClass",
    "ModalitySpec",
    "Sensor",
    "SensorSpec",
    "band_indices",
    "current_catalog",
    "destandardize",
    "get_modality",
    "modality_names",
    "pixel_modality",
    "standardize",
    "stats",
    "using_catalog",
    "with_sensors",
]
