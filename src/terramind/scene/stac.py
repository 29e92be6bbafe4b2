"""A scene given as a STAC item (Earth Search, Planetary Computer, CDSE): its band assets as band files.

:func:`stac_source` reads an item JSON (a local file or a URL, with pystac, extra ``stac``), picks one asset
per band by its ``eo:bands`` name or common name, else by its asset key (``B02``, ``blue``, ``nir08``), and
reads them through :class:`~terramind.scene.band_files.BandFilesSource`. The item's product type (from
``s2:product_type``, ``processing:level``, the collection or the id) must match the modality it is given as:
an L1C item given as S2L2A is refused, saying which it is.

**The +1000 DN offset.** From processing baseline 04.00 (``s2:processing_baseline``), Sentinel-2 digital
numbers carry a +1000 offset. :attr:`StacScene.offset` says it for an item that has not had it removed
(``earthsearch:boa_offset_applied``), for the caller to use as the offset unless
the user gave ``--offset`` (:mod:`terramind.scene.offsets`, the rule for every kind of input).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from terramind.core.errors import InputError
from terramind.core.optional import require
from terramind.data.geotiff import GeoRef, as_path
from terramind.modalities import get_modality
from terramind.scene.band_files import DEFAULT_RESAMPLING, BandFilesSource, catalog_band

# STAC common band names (eo extension; Earth Search's asset keys) -> Sentinel-2 band ids
COMMON_NAMES: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12",
}  # fmt: skip
PRODUCT_MODALITY = {"L1C": "S2L1C", "L2A": "S2L2A"}  # Sentinel-2 processing level -> catalog modality
OFFSET_BASELINE = 4.0  # processing baseline from which DN carry the offset
DN_OFFSET = 1000.0
_BAND_ID_RE = re.compile(r"^B(0?[1-9]|1[0-2]|8A)$", re.IGNORECASE)
_LEVEL_RE = re.compile(r"(L1C|L2A|MSI1C|MSI2A)", re.IGNORECASE)


@dataclass(frozen=True)
class StacScene:
    """What a Sentinel-2 STAC item says about its scene.

    Attributes:
        item: Where the item was read from.
        level: ``L1C``, ``L2A`` or None when the item does not say.
        level_source: The property the level was read from (for messages).
        baseline: The processing baseline (``"05.10"``), None when absent.
        offset_removed: The publisher already removed the offset (``earthsearch:boa_offset_applied``).
        bands: Catalog band name -> asset href.
        time: The item's ``datetime`` (None when it gives only a range).
    """

    item: str
    level: str | None
    level_source: str
    baseline: str | None
    offset_removed: bool
    bands: dict[str, str] = field(default_factory=dict)
    time: datetime | None = None

    @property
    def offset(self) -> float:
        """The DN offset the item's pixels carry: 1000 from baseline 04.00 unless removed, else 0."""
        if self.baseline is None or self.offset_removed:
            return 0.0
        try:
            return DN_OFFSET if float(self.baseline) >= OFFSET_BASELINE else 0.0
        except ValueError:
            return 0.0


def is_stac_item(path: Path | str) -> bool:
    """Whether an input names a STAC item (a ``.json`` file or URL)."""
    return os.fspath(path).lower().endswith(".json")


def _asset_band(key: str, asset: Any) -> str | None:
    """Return the catalog band an asset holds (by its one ``eo:bands`` entry, else its key), or None."""
    entries = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    candidates = [key]
    if len(entries) == 1:
        candidates = [str(entries[0].get("name", "")), str(entries[0].get("common_name", "")), key]
    elif len(entries) > 1:
        return None  # a multi-band asset (the true-colour image)
    for text in candidates:
        text = text.strip()
        if _BAND_ID_RE.match(text):
            return catalog_band(text)
        if text.lower() in COMMON_NAMES:
            return catalog_band(COMMON_NAMES[text.lower()])
    return None


def _level(item: Any) -> tuple[str | None, str]:
    props = item.properties
    for key, text in (
        ("s2:product_type", props.get("s2:product_type")),
        ("processing:level", props.get("processing:level")),
        ("collection", item.collection_id), ("id", item.id),
    ):  # fmt: skip
        found = _LEVEL_RE.search(str(text or ""))
        if found:
            level = found.group(1).upper().replace("MSI1C", "L1C").replace("MSI2A", "L2A")
            return level, f"{key} {text}"
    return None, "no product type"


def read_item(path: Path | str) -> StacScene:
    """Read a STAC item (local JSON or URL) and what it says about the Sentinel-2 scene.

    Raises:
        InputError: The file cannot be read or is not a STAC item.
        TerraMindError: pystac is not installed (extra ``stac``).
    """
    pystac = require("pystac", extra="stac")
    text = os.fspath(path)
    try:
        item = pystac.Item.from_file(text)
    except FileNotFoundError as err:
        raise InputError(f"STAC item {text!r} does not exist: check the path") from err
    except Exception as err:  # pystac raises JSON, key and HTTP errors of many kinds
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"{text!r} is not a readable STAC item ({first}): give an item JSON (not a collection or search)"
        ) from err
    bands: dict[str, str] = {}
    for key, asset in item.assets.items():
        band = _asset_band(key, asset)
        if band is not None and band not in bands:
            bands[band] = asset.get_absolute_href() or asset.href
    level, source = _level(item)
    baseline = item.properties.get("s2:processing_baseline")
    removed = bool(item.properties.get("earthsearch:boa_offset_applied", False))
    baseline_text = None if baseline is None else str(baseline)
    return StacScene(text, level, source, baseline_text, removed, bands, item.datetime)


def stac_source(
    modality: str, path: Path | str, *, resampling: str = DEFAULT_RESAMPLING, grid: GeoRef | None = None
) -> BandFilesSource:
    """Return the band files of a STAC item as one input of ``modality``.

    Raises:
        InputError: An item of another product type than ``modality``, or a band without an asset.
    """
    spec = get_modality(modality)
    scene = read_item(path)
    if scene.level is not None and PRODUCT_MODALITY.get(scene.level, spec.name) != spec.name:
        other = PRODUCT_MODALITY[scene.level]
        raise InputError(
            f"STAC item {scene.item!r} is a Sentinel-2 {scene.level} product ({scene.level_source}), not "
            f"{spec.name}: give it as --input {other}={scene.item}"
        )
    missing = [b for b in spec.bands if b not in scene.bands]
    if missing:
        raise InputError(
            f"STAC item {scene.item!r} has no asset for {spec.name} band(s) {', '.join(missing)} (assets are "
            f"matched by eo:bands name/common name or key, e.g. B02/blue)"
        )
    hrefs = {b: as_path(h) for b, h in scene.bands.items()}
    return BandFilesSource(modality, hrefs, resampling=resampling, grid=grid)
