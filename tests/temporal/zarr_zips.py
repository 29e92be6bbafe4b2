"""Write zarr-zip samples as the TerraMesh/ImpactMesh releases store them (shared by the temporal tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr


def write_zip(
    path: Path, arrays: dict[str, np.ndarray], attrs: dict[str, dict[str, Any]] | None = None
) -> None:
    """A zarr v2 group in a zip, arrays with optional attributes (by array name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = zarr.storage.ZipStore(str(path), mode="w")
    group = zarr.open_group(store, mode="w", zarr_format=2)
    for name, data in arrays.items():
        array = group.create_array(
            name, shape=data.shape, dtype=data.dtype, attributes=(attrs or {}).get(name)
        )
        array[...] = data
    store.close()
