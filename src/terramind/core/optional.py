"""Import optional dependencies with an error that names the extra to install.

The base install (``pip install terramind``) runs inference: generation, tokenizers, embeddings, zero-shot.
Training, fine-tuning and shard writing need the ``train`` extra (Lightning, torchmetrics, webdataset, ...);
parquet output the ``embed`` extra; TerraMesh shards the ``terramesh`` extra. Code that needs one imports it
through :func:`require`, so a base install answers with one line naming the extra instead of a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from terramind.core.errors import TerraMindError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an error telling which ``terramind`` extra provides it.

    ``module`` may be one of ours that imports the optional library (``terramind.finetune.tasks``): the
    message names the library that is actually missing.

    Args:
        module: Importable module name, e.g. ``"lightning"``.
        extra: The pip extra that installs it, e.g. ``"train"``.

    Returns:
        The imported module.

    Raises:
        TerraMindError: The module, or a library it imports, is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = err.name or module
        if missing.split(".")[0] == "terramind":  # one of ours failed to import: a bug, not a missing extra
            raise
        raise TerraMindError(
            f"{missing!r} is not installed: pip install 'terramind[{extra}]' (after CPU torch: "
            f"pip install torch==2.13.0)"
        ) from err
