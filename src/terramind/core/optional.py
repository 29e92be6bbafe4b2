"""Import optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from terramind.core.errors import TerraMindError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an error telling which ``terramind`` extra provides it.

    Args:
        module: Importable module name, e.g. ``"lightning"``.
        extra: The pip extra that installs it, e.g. ``"train"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise TerraMindError(
            f"{module!r} is not installed: pip install 'terramind[{extra}]' (after CPU torch: "
            f"pip install torch==2.13.0)"
        ) from err
