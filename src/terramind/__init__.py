"""terramind: an open, tested implementation of TerraMind (arXiv 2504.11171).

The public verbs live in :mod:`terramind.api` and are re-exported here.
"""

from terramind.core.errors import CheckpointError, InputError, ModalityError, ShapeError, TerraMindError
from terramind.modalities import destandardize, get_modality, modality_names, standardize

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "InputError",
    "ModalityError",
    "ShapeError",
    "TerraMindError",
    "__version__",
    "destandardize",
    "get_modality",
    "modality_names",
    "standardize",
]
