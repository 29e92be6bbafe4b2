"""The +1000 DN offset of Sentinel-2 products, read from the product's own metadata (one rule, every command).

From processing baseline 04.00 (products since 2022-01-25, and archives reprocessed with it) Sentinel-2 L1C
and L2A digital numbers carry a +1000 offset: reflectance = (DN + ADD_OFFSET) / 10000 with
``RADIO_ADD_OFFSET`` (L1C) / ``BOA_ADD_OFFSET`` (L2A) = -1000. TerraMind standardises with the pretraining
statistics of DN without the offset, so such a product needs ``offset=1000`` (added to the mean).

:func:`product_offset` reads what an input says about itself, wherever it says it:

- a STAC item: ``s2:processing_baseline`` (unless ``earthsearch:boa_offset_applied``), :mod:`.stac`;
- a band-files folder or SAFE product: ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` in the folder or above it
  (``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET`` when present, else ``PROCESSING_BASELINE``); an L1C product given
  as S2L2A (or the reverse) is refused, saying which it is;
- a GeoTIFF: the same names as tags (as GDAL's SENTINEL2 driver copies them into a translated product).

An explicit ``--offset`` always wins; the caller prints the choice either way (:func:`offset_note`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from terramind.core.errors import InputError
from terramind.data.geotiff import as_path, is_gdal_path, open_raster
from terramind.modalities import get_modality
from terramind.scene.stac import DN_OFFSET, OFFSET_BASELINE, PRODUCT_MODALITY, is_stac_item, read_item

OPTICAL = ("S2L1C", "S2L2A")  # modalities whose products may carry the offset
MTD_PATTERN = "MTD_MSIL*.xml"
MTD_LEVELS = 4  # the metadata file is looked for in the folder and this many folders above (granule -> SAFE)
_ADD_OFFSET_RE = re.compile(r"<(?:BOA|RADIO)_ADD_OFFSET[^>]*>\s*(-?[\d.]+)\s*<")
_BASELINE_RE = re.compile(r"<PROCESSING_BASELINE>\s*([\d.]+)\s*<")


@dataclass(frozen=True)
class ProductOffset:
    """The DN offset an input's metadata implies, and where it was read.

    Attributes:
        offset: The value to add to the mean (1000 or 0).
        source: What said so (for the printed note).
        kind: What the input is, as the note names it (``item``, ``metadata``, ``tags``).
    """

    offset: float
    source: str
    kind: str = "metadata"


def _from_fields(
    add_offsets: Sequence[float], baseline: str | None, where: str, kind: str = "metadata"
) -> ProductOffset | None:
    """Read the offset from ADD_OFFSET values (they win) or the baseline; None when neither is given."""
    if add_offsets:
        values = set(add_offsets)
        if len(values) > 1:
            raise InputError(
                f"{where} gives different ADD_OFFSET values {sorted(values)} per band: give --offset MOD=N"
            )
        return ProductOffset(-values.pop(), f"{where}: ADD_OFFSET {add_offsets[0]:g}", kind)
    if baseline is None:
        return None
    try:
        offset = DN_OFFSET if float(baseline) >= OFFSET_BASELINE else 0.0
    except ValueError:
        return None
    return ProductOffset(offset, f"{where}: processing baseline {baseline}", kind)


def _mtd_file(folder: Path) -> Path | None:
    for place in [folder, *folder.parents][: MTD_LEVELS + 1]:
        found = sorted(place.glob(MTD_PATTERN))
        if found:
            return found[0]
    return None


def _from_mtd(modality: str, folder: Path) -> ProductOffset | None:
    mtd = _mtd_file(folder)
    if mtd is None:
        return None
    level = "L1C" if "L1C" in mtd.name.upper() else "L2A"
    if PRODUCT_MODALITY[level] != modality:
        raise InputError(
            f"{str(folder)!r} is a Sentinel-2 {level} product ({mtd.name}), not {modality}: give it as "
            f"--input {PRODUCT_MODALITY[level]}={folder}"
        )
    text = mtd.read_text(errors="replace")
    baseline = _BASELINE_RE.search(text)
    values = [float(v) for v in _ADD_OFFSET_RE.findall(text)]
    return _from_fields(values, baseline.group(1) if baseline else None, mtd.name)


def _from_tags(path: Path) -> ProductOffset | None:
    with open_raster(path) as dataset:
        tags = {k.upper(): v for k, v in dataset.tags().items()}
    values = [float(v) for k, v in tags.items() if re.match(r"^(BOA|RADIO)_ADD_OFFSET", k)]
    return _from_fields(values, tags.get("PROCESSING_BASELINE"), f"{path.name} tags", "tags")


def product_offset(modality: str, value: Path | str | Sequence[Path]) -> ProductOffset | None:
    """Return the DN offset an input's metadata implies (None: it says nothing, or it is not S2 optical).

    Args:
        modality: The modality the input is given as.
        value: A STAC item, a band-files folder/SAFE, a list of band files, or a raster file/URL.

    Raises:
        InputError: A product of the other processing level, or contradictory offsets.
    """
    name = get_modality(modality).name
    if name not in OPTICAL:
        return None
    if not isinstance(value, (str, Path)):  # band files: the metadata of the folder they lie in
        first = as_path(value[0])
        return None if is_gdal_path(first) else _from_mtd(name, first.parent)
    path = as_path(value)
    if is_stac_item(path):
        scene = read_item(path)
        why = f"STAC item with processing baseline {scene.baseline or '(not given)'}"
        return ProductOffset(scene.offset, why, "item")
    if path.is_dir():
        return _from_mtd(name, path)
    return None if is_gdal_path(path) else _from_tags(path)


def product_offsets(inputs: Mapping[str, Path | str | Sequence[Path]]) -> dict[str, ProductOffset]:
    """Per input whose metadata says something about the offset, what it says."""
    found = {get_modality(n).name: product_offset(n, v) for n, v in inputs.items()}
    return {n: f for n, f in found.items() if f is not None}


def resolve_offsets(
    inputs: Mapping[str, Path | str | Sequence[Path]],
    given: Mapping[str, float] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Per modality the DN offset to use: a given one wins, else what the product metadata implies.

    Args:
        inputs: The scene's sources by modality.
        given: Offsets the user gave (``--offset``), by modality.
        say: Called with one note per input whose metadata says something (the choice made).

    Returns:
        Offsets by modality: the given ones plus those found in the metadata.
    """
    offsets = dict(given or {})
    for name, found in product_offsets(inputs).items():
        if say is not None:
            say(offset_note(name, found, offsets.get(name)))
        offsets.setdefault(name, found.offset)
    return offsets


def offset_note(modality: str, found: ProductOffset, given: float | None) -> str:
    """Return the line that states the offset used for an input, and why."""
    if given is not None:
        return (
            f"{modality}: {found.source}: using --offset {modality}={given:g} as given (the {found.kind} "
            f"implies {found.offset:g})"
        )
    return f"{modality}: {found.source}: DN offset {found.offset:g} applied (--offset {modality}=N overrides)"
