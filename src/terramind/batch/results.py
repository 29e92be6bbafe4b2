"""The results table of a batch (``OUTPUT/results.parquet``) and the STAC collection of its outputs.

One row per scene that was attempted: ``name``, ``status`` (``done``, ``failed`` or ``partial``: interrupted,
its resume state kept in the scene's folder), ``outputs`` (paths), ``tiles``, ``seconds`` (wall time on the
worker), ``attempts`` and ``error`` (the message of the last failure). The job's settings are stored in the
table's metadata: a rerun with other settings is refused (``--overwrite`` starts afresh), a rerun with the
same ones skips the done scenes and runs the others again (the engine resumes the partial ones). The table is
rewritten after every scene, atomically (:func:`terramind.core.files.atomic_path`), so it is whole at any
moment the run is stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from terramind.core.errors import InputError, ResumeError
from terramind.core.files import atomic_path
from terramind.core.optional import require

RESULTS = "results.parquet"
COLLECTION = "collection.json"
STATUSES = ("done", "failed", "partial")
_SETTINGS_KEY = b"terramind_batch"


@dataclass(frozen=True)
class SceneRecord:
    """One row of the results table (see the module docstring)."""

    name: str
    status: str
    outputs: tuple[str, ...] = ()
    tiles: int = 0
    seconds: float = 0.0
    attempts: int = 0
    error: str = ""


def read_results(path: Path, settings: Mapping[str, Any] | None = None) -> dict[str, SceneRecord]:
    """Read a results table (empty when there is none yet).

    Args:
        path: ``OUTPUT/results.parquet``.
        settings: The settings of the run about to start: the table's must be the same.

    Raises:
        ResumeError: The table was written by a run with other settings (which it names).
        InputError: The file is not a results table.
    """
    if not path.exists():
        return {}
    pq = require("pyarrow.parquet", "batch")
    try:
        table = pq.read_table(path)
        saved = json.loads((table.schema.metadata or {})[_SETTINGS_KEY])
        rows = table.to_pylist()
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{str(path)!r} is not a batch results table ({err}): move it away") from None
    if settings is not None and saved != _jsonable(settings):
        changed = sorted(k for k in {*saved, *settings} if saved.get(k) != _jsonable(settings).get(k))
        raise ResumeError(
            f"{str(path)!r} records a run with other settings ({', '.join(changed)} differ): rerun with the "
            f"same options, choose another --output, or pass --overwrite to start afresh"
        )
    return {r["name"]: _from_row(r) for r in rows}


def _from_row(row: Mapping[str, Any]) -> SceneRecord:
    return SceneRecord(
        str(row["name"]), str(row["status"]), tuple(row["outputs"] or ()), int(row["tiles"]),
        float(row["seconds"]), int(row["attempts"]), str(row["error"] or ""),
    )  # fmt: skip


def write_results(path: Path, records: Sequence[SceneRecord], settings: Mapping[str, Any]) -> Path:
    """Write the results table atomically (verified by reading it back)."""
    pa = require("pyarrow", "batch")
    pq = require("pyarrow.parquet", "batch")
    schema = pa.schema([
        ("name", pa.string()), ("status", pa.string()), ("outputs", pa.list_(pa.string())),
        ("tiles", pa.int64()), ("seconds", pa.float64()), ("attempts", pa.int64()), ("error", pa.string()),
    ], metadata={_SETTINGS_KEY: json.dumps(_jsonable(settings))})  # fmt: skip
    columns = {f.name: [getattr(r, f.name) for r in records] for f in fields(SceneRecord)}
    columns["outputs"] = [list(o) for o in columns["outputs"]]
    table = pa.table(columns, schema=schema)
    with atomic_path(path, verify=pq.read_table) as tmp:
        pq.write_table(table, tmp)
    return path


def _jsonable(settings: Mapping[str, Any]) -> Any:
    """Return settings as they read back from JSON (tuples become lists), for comparison."""
    return json.loads(json.dumps(settings, default=str, sort_keys=True))


def write_collection(folder: Path, records: Sequence[SceneRecord], kind: str) -> Path:
    """Write a STAC collection of every done scene's outputs, with relative links.

    ``folder/collection.json`` links one item per scene, kept beside its outputs
    (``folder/<scene>/<scene>.json``), so the folder opens in any STAC browser or QGIS wherever it is copied.

    An item's geometry is the WGS84 footprint of its first raster output; it has one asset per output file.
    Needs pystac (extra ``stac``).
    """
    pystac = require("pystac", "stac")
    items = [_item(pystac, r) for r in records if r.status == "done" and r.outputs]
    extent = pystac.Extent(
        pystac.SpatialExtent([_union([i.bbox for i in items])] if items else [[-180.0, -90.0, 180.0, 90.0]]),
        pystac.TemporalExtent([[min(i.datetime for i in items) if items else None, None]]),
    )
    collection = pystac.Collection(
        id=f"terramind-batch-{kind}", description=f"terramind batch {kind}: {len(items)} scene(s)",
        extent=extent,
    )  # fmt: skip
    body = collection.to_dict(include_self_link=False)
    root = {"rel": "root", "href": f"./{COLLECTION}", "type": "application/json"}
    body["links"] = [root] + [
        {"rel": "item", "href": f"./{i.id}/{i.id}.json", "type": "application/geo+json"} for i in items
    ]
    for item in items:
        record = item.to_dict(include_self_link=False)
        record["collection"] = collection.id
        up = {"href": f"../{COLLECTION}", "type": "application/json"}
        record["links"] = [{"rel": rel, **up} for rel in ("root", "parent", "collection")]
        _write_json(folder / item.id / f"{item.id}.json", record)
    return _write_json(folder / COLLECTION, body)


def _write_json(path: Path, body: Mapping[str, Any]) -> Path:
    with atomic_path(path, verify=lambda p: json.loads(p.read_text())) as tmp:
        tmp.write_text(json.dumps(body, indent=1, default=str))
    return path


def _item(pystac: Any, record: SceneRecord) -> Any:
    from rasterio.warp import transform_bounds

    from terramind.data.geotiff import open_georef

    rasters = [Path(p) for p in record.outputs if p.endswith(".tif")]
    grid = open_georef(rasters[0]) if rasters else None
    if grid is not None and grid.crs is not None:
        left, top = grid.transform @ (0, 0)
        right, bottom = grid.transform @ (grid.width, grid.height)
        west, south, east, north = transform_bounds(grid.crs, "EPSG:4326", left, bottom, right, top)
    else:
        west, south, east, north = -180.0, -90.0, 180.0, 90.0
    polygon = [[[west, south], [east, south], [east, north], [west, north], [west, south]]]
    when = (grid.time if grid is not None else None) or datetime.now(timezone.utc)
    item = pystac.Item(
        id=record.name, geometry={"type": "Polygon", "coordinates": polygon}, bbox=[west, south, east, north],
        datetime=when, properties={"terramind:tiles": record.tiles},
    )  # fmt: skip
    for path in record.outputs:
        media = pystac.MediaType.COG if path.endswith(".tif") else "application/vnd.apache.parquet"
        asset = pystac.Asset(href=f"./{Path(path).name}", media_type=media, roles=["data"])
        item.add_asset(Path(path).stem, asset)
    return item


def _union(boxes: Sequence[Sequence[float]]) -> list[float]:
    return [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]


def summary(records: Sequence[SceneRecord], skipped: int, seconds: float) -> str:
    """One line: scenes done/failed/partial, skipped, tiles per second, wall time."""
    count = {s: sum(r.status == s for r in records) for s in STATUSES}
    tiles = sum(r.tiles for r in records if r.status == "done")
    rate = f"{tiles / seconds:.2f} tiles/s" if seconds > 0 else "n/a"
    return (
        f"batch: {count['done']} done, {count['failed']} failed, {count['partial']} partial, "
        f"{skipped} skipped (done before); {tiles} tiles, {rate}, wall {seconds:.1f} s"
    )
