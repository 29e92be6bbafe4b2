"""A STAC item describing a run's outputs (``--stac``), so a scene can be published as it was written.

:func:`write_stac_item` writes one item JSON (pystac, extra ``stac``) beside the outputs: geometry and bbox
of the grid in EPSG:4326, the datetime of the input (a STAC item input's ``datetime``, else a GeoTIFF's time
tag, else now, said in a note), one asset per output GeoTIFF (relative href, the COG media type, role
``data``) and properties naming the model and the options the run used (``terramind:*``). It is written
atomically (:func:`terramind.core.files.atomic_path`), after the outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rasterio.warp import transform_geom

from terramind.core.errors import InputError
from terramind.core.files import atomic_path
from terramind.core.optional import require
from terramind.data.geotiff import GeoRef, as_path, open_georef
from terramind.scene.band_files import band_files_in
from terramind.scene.stac import is_stac_item, read_item
from terramind.scene.warp import bounds

ITEM_NAME = "item.json"  # the item of a run that writes a folder of outputs
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def item_path(output: Path, *, folder: bool) -> Path:
    """Where the item of a run goes: ``item.json`` in an output folder, ``<stem>_item.json`` beside a file."""
    return output / ITEM_NAME if folder else output.with_name(f"{output.stem}_item.json")


def _time_of(value: Path | str | Sequence[Path]) -> datetime | None:
    if not isinstance(value, (str, Path)):
        return open_georef(value[0]).time
    path = as_path(value)
    if is_stac_item(path):
        return read_item(path).time
    if path.is_dir():
        files = band_files_in(path)
        return open_georef(files[0]).time if files else None
    return open_georef(path).time


def input_datetime(inputs: Mapping[str, Path | str | Sequence[Path]]) -> datetime | None:
    """Return the acquisition time of the first input stating one (STAC ``datetime``, GeoTIFF tag)."""
    for value in inputs.values():
        found = _time_of(value)
        if found is not None:
            return found
    return None


def _geometry(georef: GeoRef) -> dict[str, Any]:
    """Return the grid's footprint as a GeoJSON polygon in EPSG:4326 (edges densified)."""
    if georef.crs is None:
        raise InputError("the scene has no CRS: a STAC item needs a georeferenced scene (drop --stac)")
    left, bottom, right, top = bounds(georef)
    steps = 8
    ring = [(left + (right - left) * i / steps, top) for i in range(steps)]
    ring += [(right, top - (top - bottom) * i / steps) for i in range(steps)]
    ring += [(right - (right - left) * i / steps, bottom) for i in range(steps)]
    ring += [(left, bottom + (top - bottom) * i / steps) for i in range(steps)]
    ring.append(ring[0])
    geometry: dict[str, Any] = transform_geom(
        georef.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]}
    )
    return geometry


def _bbox(geometry: Mapping[str, Any]) -> list[float]:
    xs = [p[0] for p in geometry["coordinates"][0]]
    ys = [p[1] for p in geometry["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def write_stac_item(
    path: Path,
    outputs: Sequence[Path],
    georef: GeoRef,
    *,
    item_id: str,
    when: datetime | None,
    properties: Mapping[str, Any],
    overwrite: bool = True,
) -> tuple[Path, bool]:
    """Write the STAC item of a run's outputs.

    Args:
        path: The item JSON to write.
        outputs: The output GeoTIFFs (on ``georef``), one asset each, keyed by file stem.
        georef: The outputs' grid.
        item_id: The item's id.
        when: The input's acquisition time (None: now, and the second return value is False).
        properties: More properties (model, options), written as they are (JSON values).
        overwrite: Replace an existing item.

    Returns:
        The path written, and whether the datetime came from the input.

    Raises:
        TerraMindError: pystac is not installed (extra ``stac``).
        InputError: A scene without a CRS.
    """
    pystac = require("pystac", "stac")
    geometry = _geometry(georef)
    stamp = when or datetime.now(timezone.utc)
    item = pystac.Item(item_id, geometry, _bbox(geometry), stamp, dict(properties))
    for out in outputs:
        href = str(out.relative_to(path.parent)) if out.parent == path.parent else str(out.resolve())
        item.add_asset(
            out.stem, pystac.Asset(href, media_type=COG_MEDIA_TYPE, roles=["data"], title=out.stem)
        )
    item.set_self_href(None)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(item.to_dict(include_self_link=False), indent=1))
    return path, when is not None
