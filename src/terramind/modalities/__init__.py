"""The modality catalog: names, bands, statistics, vocabularies, official keys and aliases."""

from terramind.modalities.catalog import (
    ALIASES,
    LULC_CLASSES,
    MODALITIES,
    get_modality,
    modality_names,
)
from terramind.modalities.normalize import band_indices, destandardize, standardize, stats
from terramind.modalities.spec import Kind, LulcClass, ModalitySpec

__all__ = [
    "ALIASES",
    "LULC_CLASSES",
    "MODALITIES",
    "Kind",
    "LulcClass",
    "ModalitySpec",
    "band_indices",
    "destandardize",
    "get_modality",
    "modality_names",
    "standardize",
    "stats",
]
