"""Manifests: the scenes of a batch, each one's sources by modality, checked before any scene starts.

A manifest is one of:

- a CSV or Parquet table with one column per input modality, named by its catalog name or any alias
  (``S2L2A``, ``S1RTC``, ...), and an optional ``name`` column (the scene's output subfolder; default the
  first source's stem). Each cell is any source the scene engine reads (a GeoTIFF/COG, a GDAL URL, a
  band-files folder or ``.SAFE``, a STAC item); an empty cell leaves that modality out of the row. Relative
  local paths are relative to the manifest's folder;
- a folder of scenes laid out as ``DIR/<MODALITY>/<scene>.tif`` (as ``examples/``), matched by file name;
- a STAC ItemCollection (``.json``/``.geojson``, type ``FeatureCollection``): one Sentinel-2 scene per item,
  its modality from the item's product type (L1C/L2A). Each item is written beside the results (the scene
  engine reads items from files), with its asset links made absolute.

:func:`read_manifest` refuses, in one message naming the row, an unknown modality column, a local source that
does not exist (URLs are left to the scene engine at run time) and two rows with one output name.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from terramind.core.errors import InputError, TerraMindError
from terramind.core.files import atomic_path
from terramind.core.optional import require
from terramind.data.geotiff import is_gdal_path
from terramind.modalities import get_modality

NAME = "name"  # the optional column naming a scene's output subfolder
TABLE_SUFFIXES = (".csv", ".parquet")
STAC_SUFFIXES = (".json", ".geojson")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class Scene:
    """One scene of a batch.

    Attributes:
        name: Output subfolder name (unique in the batch).
        inputs: Canonical modality -> source, as text (a local path or a GDAL URL).
        row: Where the scene came from, for messages (``manifest.csv row 3``).
    """

    name: str
    inputs: Mapping[str, str]
    row: str = ""


def read_manifest(path: str | Path, *, items_dir: Path | None = None) -> list[Scene]:
    """Read and check a manifest (table, folder of scenes or STAC ItemCollection).

    Args:
        path: The manifest.
        items_dir: Where the items of a STAC ItemCollection are written (default: beside the collection).

    Returns:
        The scenes, in manifest order.

    Raises:
        InputError: A missing or empty manifest, a missing local source, duplicated output names.
        ModalityError: A column (or folder) that names no modality.
    """
    src = Path(path)
    if src.is_dir():
        return check_scenes(_folder_scenes(src), str(src))
    if not src.is_file():
        raise InputError(f"manifest {str(src)!r} does not exist: give a CSV, Parquet, folder or STAC JSON")
    suffix = src.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        rows = _csv_rows(src) if suffix == ".csv" else _parquet_rows(src)
        return check_scenes(scenes_from_rows(rows, src.name, base=src.parent), src.name)
    if suffix in STAC_SUFFIXES:
        return check_scenes(_stac_scenes(src, items_dir or src.parent), src.name)
    raise InputError(
        f"manifest {src.name!r}: give a .csv or .parquet table, a folder of scenes or a STAC ItemCollection "
        f"(.json)"
    )


def scenes_from_rows(
    rows: Sequence[Mapping[str, Any]], where: str, *, base: Path | None = None, first_row: int = 2
) -> list[Scene]:
    """Build scenes from table rows ``{column: cell}`` (modality columns and an optional ``name``).

    Args:
        rows: The table's rows.
        where: The manifest's name, for messages.
        base: Folder that relative local paths are relative to (None: as given).
        first_row: Number of the first row in messages (2: a CSV's first row after its header).

    Raises:
        ModalityError: A column that names no modality (with the closest name when one is clear).
        InputError: No rows, no modality columns, or a row without any source.
    """
    if not rows:
        raise InputError(f"manifest {where!r} has no rows: one row per scene")
    columns = _modality_columns(list(rows[0]), where)
    scenes = []
    for i, row in enumerate(rows):
        label = f"{where} row {first_row + i}"
        inputs = {
            mod: _source(str(row[col]).strip(), base)
            for col, mod in columns.items()
            if row.get(col) is not None and str(row[col]).strip()
        }
        if not inputs:
            raise InputError(f"{label} has no source: fill at least one of {', '.join(columns)}")
        given = str(row.get(NAME) or "").strip()
        scenes.append(Scene(given or _stem(next(iter(inputs.values()))), inputs, label))
    return scenes


def _modality_columns(columns: Sequence[str], where: str) -> dict[str, str]:
    """Column -> canonical modality, for every column but ``name``."""
    out: dict[str, str] = {}
    for col in columns:
        if col.strip().lower() == NAME:
            continue
        try:
            mod = get_modality(col.strip()).name
        except TerraMindError as err:
            raise type(err)(f"manifest {where!r} column {col!r}: {err}") from None
        if mod in out.values():
            raise InputError(f"manifest {where!r}: two columns name {mod}: {', '.join(columns)}")
        out[col] = mod
    if not out:
        raise InputError(f"manifest {where!r} has no modality column (e.g. S2L2A); columns: {list(columns)}")
    return out


def _source(text: str, base: Path | None) -> str:
    if is_gdal_path(text) or base is None or Path(text).is_absolute():
        return text
    return str(base / text)


def _stem(source: str) -> str:
    name = Path(source.rstrip("/")).name
    return name.removesuffix(".SAFE") if name.endswith(".SAFE") else Path(name).stem


def check_scenes(scenes: Sequence[Scene], where: str) -> list[Scene]:
    """Check what can be checked before any scene runs: local sources exist, output names are unique.

    Raises:
        InputError: Naming the row and the source or the rows that share a name.
    """
    for scene in scenes:
        for mod, source in scene.inputs.items():
            if not is_gdal_path(source) and not Path(source).exists():
                raise InputError(f"{scene.row or where}: {mod} source {source!r} does not exist")
        if not _SAFE_NAME.match(scene.name):
            raise InputError(
                f"{scene.row or where}: output name {scene.name!r} is not a plain folder name (letters, "
                f"digits, . _ + -)"
            )
    rows: dict[str, list[str]] = defaultdict(list)
    for scene in scenes:
        rows[scene.name].append(scene.row or where)
    clashes = {name: where_ for name, where_ in rows.items() if len(where_) > 1}
    if clashes:
        name, places = next(iter(clashes.items()))
        raise InputError(
            f"manifest {where!r}: {len(clashes)} output name(s) used twice, e.g. {name!r} by "
            f"{' and '.join(places)}: give each row a unique '{NAME}'"
        )
    return list(scenes)


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(newline="") as f:
            return [row for row in csv.DictReader(f) if any((v or "").strip() for v in row.values())]
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"manifest {str(path)!r} is not a text CSV with a header row: {err}") from None


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    pq = require("pyarrow.parquet", "batch")
    try:
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as err:
        raise InputError(f"manifest {str(path)!r} is not a readable Parquet table: {err}") from None
    return rows


def _folder_scenes(folder: Path) -> list[Scene]:
    """``DIR/<MODALITY>/<scene>.tif``: one scene per file name found in every modality folder."""
    from terramind.data.tiles import match_files

    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise InputError(f"manifest folder {str(folder)!r} has no modality folders (DIR/S2L2A/<scene>.tif)")
    columns = _modality_columns([p.name for p in subfolders], str(folder))
    matched = match_files({columns[p.name]: p for p in subfolders})
    return [
        Scene(name, {mod: str(path) for mod, path in files.items()}, f"{folder.name}/*/{name}.tif")
        for name, files in matched.items()
    ]


def _stac_scenes(path: Path, items_dir: Path) -> list[Scene]:
    """One scene per item of an ItemCollection, each item written to ``items_dir`` for the scene engine."""
    from terramind.scene.stac import PRODUCT_MODALITY, read_item

    pystac = require("pystac", "stac")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"manifest {str(path)!r} is not JSON: {err}") from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not data.get("features"):
        raise InputError(
            f"manifest {str(path)!r} is not a STAC ItemCollection with items (type FeatureCollection)"
        )
    items_dir.mkdir(parents=True, exist_ok=True)
    scenes = []
    for i, feature in enumerate(data["features"]):
        item = pystac.Item.from_dict(feature)
        for asset in item.assets.values():  # relative hrefs are relative to the collection file
            if not is_gdal_path(asset.href) and not Path(asset.href).is_absolute():
                asset.href = str((path.parent / asset.href).resolve())
        target = items_dir / f"{item.id}.json"
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps(item.to_dict(include_self_link=False)))
        level = read_item(target).level
        if level not in PRODUCT_MODALITY:
            raise InputError(
                f"{path.name} item {i + 1} ({item.id}): product type unknown (not Sentinel-2 L1C/L2A): "
                f"give a CSV manifest naming its modality"
            )
        scenes.append(Scene(item.id, {PRODUCT_MODALITY[level]: str(target)}, f"{path.name} item {i + 1}"))
    return scenes
