"""THE table of TerraMind modalities: bands, statistics, vocabularies, official keys and aliases.

Numbers are the official v1/v0.1 pretraining tables (see test_catalog.py); band orders are the reference's
``PRETRAINED_BANDS`` (S2RGB is R, G, B as in the code and the example data, not the docs' B, G, R).
Nothing here is mutated at run time: offsets and band subsets are arguments of the functions that use them.
A new sensor is added by registration, which returns a NEW :class:`Catalog` (``DEFAULT_CATALOG.register``);
:func:`using_catalog` makes names resolve through it within a block (a ``ContextVar``: per thread and per
asyncio task), so no model built elsewhere in the process sees it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from terramind.core.errors import ModalityError
from terramind.modalities.spec import Kind, LulcClass, ModalitySpec, RasterFacts, Renderer

S2L2A_BANDS = (
    "COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2", "RED_EDGE_3",
    "NIR_BROAD", "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2",
)  # fmt: skip
S2L1C_BANDS = (*S2L2A_BANDS[:10], "CIRRUS", *S2L2A_BANDS[10:])

# ESRI 10 m land cover remapped to 0-9 (HF card of the LULC tokenizer); colours are ESRI's palette.
LULC_CLASSES = (
    LulcClass(0, "no data", "#000000"),
    LulcClass(1, "water", "#419bdf"),
    LulcClass(2, "trees", "#397d49"),
    LulcClass(3, "flooded vegetation", "#7a87c6"),
    LulcClass(4, "crops", "#e49635"),
    LulcClass(5, "built area", "#c4281b"),
    LulcClass(6, "bare ground", "#a59b8f"),
    LulcClass(7, "snow/ice", "#a8ebff"),
    LulcClass(8, "clouds", "#616161"),
    LulcClass(9, "rangeland", "#e3e2c3"),
)

# Hard limits: values no file of the modality can hold in any unit or scaling people use (a read refuses
# them). Each is at least ten times beyond the widest legitimate range: S2 reflectance x10000 stays below
# 65535 (uint16, offset included) and above -10000 (negative BOA with the +1000 offset removed); S2RGB is
# 8-bit; S1 backscatter is -100..+60 dB or linear power below 1e4; elevations lie in -11000..8849 m; NDVI in
# -1..1 (or x10000 when stored as integers); LULC ids are 0-255 at most. Expected dtypes are those of the
# pretraining tiles (TerraMesh).
_S2_8BIT = (
    "8 bits cannot hold Sentinel-2 reflectance x10000 (0-10000 and more): this looks like a visual product "
    "(e.g. TCI); use the 16-bit reflectance bands, or read an 8-bit RGB image as S2RGB"
)
_CLASS_FLOAT = "a class map holds whole class ids: write it as an integer raster (e.g. uint8)"
_S2_RASTER = RasterFacts(
    "true_colour", ("int16", "uint16"), (-1e5, 1e6), ("uint8", "int8"), _S2_8BIT, unit_scale=10000.0
)
_S1_RASTER = RasterFacts("sar", ("float32", "float64"), (-1e3, 1e5))

FSQ_8_8_8_6_5 = (8, 8, 8, 6, 5)
FSQ_7_5_5_5_5 = (7, 5, 5, 5, 5)

_MODALITIES = (
    ModalitySpec(
        name="S2L2A",
        description="Sentinel-2 L2A surface reflectance (DN, 12 bands)",
        input_kind=Kind.PIXEL,
        generable=True,
        bands=S2L2A_BANDS,
        unit="reflectance DN (x10000)",
        mean=(
            1390.458,
            1503.317,
            1718.197,
            1853.91,
            2199.1,
            2779.975,
            2987.011,
            3083.234,
            3132.22,
            3162.988,
            2424.884,
            1857.648,
        ),
        std=(
            2106.761,
            2141.107,
            2038.973,
            2134.138,
            2085.321,
            1889.926,
            1820.257,
            1871.918,
            1753.829,
            1797.379,
            1434.261,
            1334.311,
        ),
        mean_v01=(
            794.311,
            925.161,
            1183.128,
            1338.041,
            1667.254,
            2233.633,
            2460.96,
            2555.569,
            2619.542,
            2703.298,
            2406.497,
            1841.645,
        ),
        std_v01=(
            1164.883,
            1205.586,
            1223.713,
            1399.638,
            1403.298,
            1378.513,
            1434.924,
            1491.141,
            1454.089,
            1660.395,
            1473.248,
            1365.080,
        ),
        pixel_key="untok_sen2l2a@224",
        token_key="tok_sen2l2a@224",
        vocab_size=15360,
        fsq_levels=FSQ_8_8_8_6_5,
        tokenizer="terramind_v1_tokenizer_s2l2a",
        raster=_S2_RASTER,
        aliases=("sen2l2a", "s2", "sentinel2", "sentinel-2", "s2_l2a", "sen2"),
        versions=("v1", "v0.1"),
    ),
    ModalitySpec(
        name="S2L1C",
        description="Sentinel-2 L1C top-of-atmosphere reflectance (DN, 13 bands)",
        input_kind=Kind.PIXEL,
        generable=False,
        bands=S2L1C_BANDS,
        unit="reflectance DN (x10000)",
        mean=(
            2357.089,
            2137.385,
            2018.788,
            2082.986,
            2295.651,
            2854.537,
            3122.849,
            3040.56,
            3306.481,
            1473.847,
            506.07,
            2472.825,
            1838.929,
        ),
        std=(
            1624.683,
            1675.806,
            1557.708,
            1833.702,
            1823.738,
            1733.977,
            1732.131,
            1679.732,
            1727.26,
            1024.687,
            442.165,
            1331.411,
            1160.419,
        ),
        pixel_key="untok_sen2l1c@224",
        raster=_S2_RASTER,
        aliases=("sen2l1c", "s2_l1c"),
    ),
    ModalitySpec(
        name="S2RGB",
        description="Sentinel-2 true colour (8-bit R, G, B)",
        input_kind=Kind.PIXEL,
        generable=False,
        bands=("RED", "GREEN", "BLUE"),
        unit="8-bit digital number",
        mean=(87.271, 80.931, 66.667),
        std=(58.767, 47.663, 42.631),
        pixel_key="untok_sen2rgb@224",
        raster=RasterFacts("rgb8", ("uint8",), (-2550.0, 2550.0), unit_scale=255.0),
        aliases=("sen2rgb", "rgb", "s2_rgb"),
    ),
    ModalitySpec(
        name="S1GRD",
        description="Sentinel-1 GRD backscatter (dB, VV and VH)",
        input_kind=Kind.PIXEL,
        generable=True,
        bands=("VV", "VH"),
        unit="dB",
        mean=(-12.599, -20.293),
        std=(5.195, 5.890),
        mean_v01=(-12.599, -20.293),
        std_v01=(5.195, 5.890),
        pixel_key="untok_sen1grd@224",
        token_key="tok_sen1grd@224",
        vocab_size=15360,
        fsq_levels=FSQ_8_8_8_6_5,
        tokenizer="terramind_v1_tokenizer_s1grd",
        raster=_S1_RASTER,
        aliases=("sen1grd", "s1", "sentinel1", "sentinel-1", "sen1", "s1_grd"),
        versions=("v1", "v0.1"),
    ),
    ModalitySpec(
        name="S1RTC",
        description="Sentinel-1 radiometrically terrain-corrected backscatter (dB, VV and VH)",
        input_kind=Kind.PIXEL,
        generable=True,
        bands=("VV", "VH"),
        unit="dB",
        mean=(-10.93, -17.329),
        std=(4.391, 4.459),
        pixel_key="untok_sen1rtc@224",
        token_key="tok_sen1rtc@224",
        vocab_size=15360,
        fsq_levels=FSQ_8_8_8_6_5,
        tokenizer="terramind_v1_tokenizer_s1rtc",
        raster=_S1_RASTER,
        aliases=("sen1rtc", "s1_rtc"),
    ),
    ModalitySpec(
        name="DEM",
        description="Copernicus digital elevation model (m)",
        input_kind=Kind.PIXEL,
        generable=True,
        bands=("DEM",),
        unit="m",
        mean=(670.665,),
        std=(951.272,),
        mean_v01=(435.726,),
        std_v01=(560.326,),
        pixel_key="untok_dem@224",
        token_key="tok_dem@224",
        vocab_size=15360,
        fsq_levels=FSQ_8_8_8_6_5,
        tokenizer="terramind_v1_tokenizer_dem",
        raster=RasterFacts("terrain", ("int16", "float32", "float64"), (-1.2e5, 1e5)),
        aliases=("elevation", "copdem"),
        versions=("v1", "v0.1"),
    ),
    ModalitySpec(
        name="LULC",
        description="ESRI land use / land cover, classes 0-9",
        input_kind=Kind.TOKEN,
        generable=True,
        bands=("LULC",),
        unit="class id",
        mean=(0.0,),
        std=(1.0,),
        mean_v01=(0.0,),
        std_v01=(1.0,),
        token_key="tok_lulc@224",
        vocab_size=4375,
        fsq_levels=FSQ_7_5_5_5_5,
        tokenizer="terramind_v1_tokenizer_lulc",
        raster=RasterFacts(
            "classes", ("uint8",), (0.0, 255.0), ("float16", "float32", "float64"), _CLASS_FLOAT
        ),
        aliases=("landcover", "land_cover"),
        classes=LULC_CLASSES,
        versions=("v1", "v0.1"),
    ),
    ModalitySpec(
        name="NDVI",
        description="Normalised difference vegetation index from S2L2A",
        input_kind=Kind.TOKEN,
        generable=True,
        bands=("NDVI",),
        unit="index (-1..1)",
        mean=(0.327,),
        std=(0.322,),
        token_key="tok_ndvi@224",
        vocab_size=15360,
        fsq_levels=FSQ_8_8_8_6_5,
        tokenizer="terramind_v1_tokenizer_ndvi",
        raster=RasterFacts("diverging", ("float32", "float64"), (-1e5, 1e5), physical_bounds=(-1.0, 1.0)),
    ),
    ModalitySpec(
        name="coords",
        description="Tile centre as [lon, lat] degrees, tokenized as 'lat=.. lon=..' on a 0.25 degree grid",
        input_kind=Kind.SEQUENCE,
        generable=True,
        bands=("LON", "LAT"),
        unit="degrees",
        mean=(0.0, 0.0),
        std=(1.0, 1.0),  # identity: coordinates are tokenized, not standardised
        token_key="coords",
        vocab_size=30000,
        tokenizer="terramind_v1_coords_tokenizer",
        aliases=("coordinates", "location", "lonlat", "coord"),
        max_length=4,
    ),
    ModalitySpec(
        name="caption",
        description="Synthetic image caption (TerraMind v0.1 only)",
        input_kind=None,
        generable=False,
        bands=(),
        unit="text",
        mean=(),
        std=(),
        token_key="caption",
        vocab_size=30000,
        tokenizer="terramind_v01_caption_tokenizer",
        aliases=("text", "captions"),
        versions=("v0.1",),
        max_length=256,
    ),
)

MODALITIES: MappingProxyType[str, ModalitySpec] = MappingProxyType({m.name: m for m in _MODALITIES})

SUGGEST_CUTOFF = (
    0.66  # difflib ratio: one swapped or extra letter in a 3-6 letter name ('dme', 'lulcc') passes
)


def _normal(name: str) -> str:
    """Lower-case and drop separators, so ``S2_L2A``, ``s2-l2a`` and ``S2L2A`` meet."""
    return re.sub(r"[\s_\-]", "", name.lower())


def _names_of(spec: ModalitySpec) -> tuple[str, ...]:
    return (spec.name, *spec.aliases, *spec.keys)


def _check_record(spec: ModalitySpec) -> None:
    """Refuse a record whose statistics do not match its bands (registration time, not first use)."""
    if not _normal(spec.name):
        raise ModalityError(f"a modality needs a name, got {spec.name!r}")
    if spec.input_kind is Kind.PIXEL and not spec.bands:
        raise ModalityError(f"modality {spec.name!r}: give at least one band name")
    if not len(spec.bands) == len(spec.mean) == len(spec.std):
        raise ModalityError(
            f"modality {spec.name!r} has {len(spec.bands)} band(s) {list(spec.bands)} but "
            f"{len(spec.mean)} mean and {len(spec.std)} std value(s): give one mean and one std per band"
        )
    if any(not s > 0 for s in spec.std):  # also refuses NaN
        raise ModalityError(
            f"modality {spec.name!r}: every std must be positive (it divides), got {list(spec.std)}"
        )
    if len({b.upper() for b in spec.bands}) != len(spec.bands):
        raise ModalityError(f"modality {spec.name!r} names a band twice: {list(spec.bands)}")


class Catalog:
    """An immutable set of modality records with their alias table; :meth:`register` returns a new one.

    Args:
        specs: The records, in catalog order. Names, aliases and keys must be unique (case-insensitive).

    Raises:
        ModalityError: A name or alias that two records share, or a record whose statistics do not match
            its bands.
    """

    def __init__(self, specs: Iterable[ModalitySpec]) -> None:
        self._specs: MappingProxyType[str, ModalitySpec] = MappingProxyType({s.name: s for s in specs})
        table: dict[str, str] = {}
        for spec in self._specs.values():
            for alias in _names_of(spec):
                owner = table.setdefault(_normal(alias), spec.name)
                if owner != spec.name:
                    raise ModalityError(
                        f"modality {spec.name!r}: the name {alias!r} is taken by "
                        f"{'official' if self._specs[owner].official else 'registered'} modality "
                        f"{owner!r} (names are case-insensitive); choose another name"
                    )
        self._aliases: MappingProxyType[str, str] = MappingProxyType(table)

    @property
    def specs(self) -> MappingProxyType[str, ModalitySpec]:
        """Canonical name -> record, in catalog order."""
        return self._specs

    @property
    def aliases(self) -> MappingProxyType[str, str]:
        """Normalised name, alias or key -> canonical name."""
        return self._aliases

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normal(name) in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, name: str | ModalitySpec) -> ModalitySpec:
        """Return a record by any of its names (case-insensitive); a record is returned unchanged.

        Raises:
            ModalityError: For an unknown name, listing the valid names and the closest match.
        """
        if isinstance(name, ModalitySpec):
            return name
        canonical = self._aliases.get(_normal(str(name)))
        if canonical is None:
            close = self._closest(_normal(str(name)))
            hint = f" Did you mean {close!r}?" if close else ""
            raise ModalityError(
                f"unknown modality {name!r}.{hint} Valid names: {', '.join(self._specs)} "
                f"(case-insensitive; aliases such as 'S1' or 'untok_sen2l2a@224' work too; a new sensor "
                f"must be registered first, see terramind.modalities.pixel_modality)"
            )
        return self._specs[canonical]

    def _closest(self, normal: str) -> str | None:
        """Return the name whose alias is closest to ``normal``; None when none is close or two tie."""
        ratios = {a: difflib.SequenceMatcher(None, normal, a).ratio() for a in self._aliases}
        best = max(ratios.values())
        winners = {self._aliases[a] for a, r in ratios.items() if r == best}
        return winners.pop() if best >= SUGGEST_CUTOFF and len(winners) == 1 else None

    def register(self, *specs: ModalitySpec) -> Catalog:
        """Return a NEW catalog with ``specs`` added; this one is unchanged.

        Raises:
            ModalityError: A record whose band count does not match its mean/std, a non-positive std, or a
                name/alias colliding with a modality already in the catalog (official ones included).
        """
        for spec in specs:
            _check_record(spec)
        return Catalog((*self._specs.values(), *specs))

    def names(self, *, generable: bool | None = None, kind: Kind | None = None) -> tuple[str, ...]:
        """Canonical names, optionally filtered (see :func:`modality_names`)."""
        return tuple(
            m.name
            for m in self._specs.values()
            if (generable is None or m.generable == generable) and (kind is None or m.input_kind is kind)
        )


DEFAULT_CATALOG = Catalog(_MODALITIES)
ALIASES: MappingProxyType[str, str] = DEFAULT_CATALOG.aliases

_CURRENT: ContextVar[Catalog] = ContextVar("terramind_catalog", default=DEFAULT_CATALOG)


def current_catalog() -> Catalog:
    """Return the catalog names resolve through now.

    The default one, or that of the enclosing :func:`using_catalog` block (per thread and asyncio task).
    """
    return _CURRENT.get()


@contextmanager
def using_catalog(catalog: Catalog) -> Iterator[Catalog]:
    """Resolve modality names through ``catalog`` within the block; nothing global changes.

    Example::

        cat = DEFAULT_CATALOG.register(pixel_modality("LANDSAT", bands, mean, std))
        with using_catalog(cat):
            backbone = create_backbone("terramind_v1_tiny", ["LANDSAT"])
    """
    token = _CURRENT.set(catalog)
    try:
        yield catalog
    finally:
        _CURRENT.reset(token)


def pixel_modality(
    name: str,
    bands: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    unit: str = "unknown",
    description: str | None = None,
    aliases: Sequence[str] = (),
    renderer: Renderer | None = None,
    hard_limits: tuple[float, float] | None = None,
) -> ModalitySpec:
    """Build the record of a new pixel sensor (Landsat, PlanetScope, ...) for :meth:`Catalog.register`.

    Its patch embedding is freshly initialised wherever it is used; inputs are standardised with
    ``mean``/``std`` like the official modalities.

    Args:
        name: Canonical name (must not collide with any modality or alias, case-insensitive).
        bands: Band names in the files' channel order.
        mean: Standardisation mean per band.
        std: Standardisation std per band (positive).
        unit: Physical unit of the raw values.
        description: One human sentence (default names the sensor and its band count).
        aliases: Extra names.
        renderer: How quicklooks draw it; default ``true_colour`` when it has RED, GREEN and BLUE bands,
            else ``grey`` (its first band, stretched).
        hard_limits: Values no file of it can hold (a read refuses them); None: no limit.

    Raises:
        ModalityError: Band count different from the mean/std lengths, a non-positive std or a repeated band.
    """
    spec = ModalitySpec(
        name=str(name),
        description=description or f"registered sensor {name} ({len(bands)} bands)",
        input_kind=Kind.PIXEL,
        generable=False,
        bands=tuple(str(b) for b in bands),
        unit=unit,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        aliases=tuple(aliases),
        versions=(),
        raster=RasterFacts(renderer or _default_renderer(bands), hard_limits=hard_limits),
        official=False,
    )
    _check_record(spec)
    return spec


def _default_renderer(bands: Sequence[str]) -> Renderer:
    return "true_colour" if {"RED", "GREEN", "BLUE"} <= {b.upper() for b in bands} else "grey"


@dataclass(frozen=True)
class SensorSpec:
    """A new sensor as configs declare it (YAML ``sensors:`` entries); :meth:`record` registers it.

    Attributes:
        name: Its name (must not collide with any modality or alias, case-insensitive).
        bands: Band names in the files' channel order.
        mean: Standardisation mean per band.
        std: Standardisation std per band (positive).
        unit: Physical unit of the raw values.
        description: One human sentence.
        aliases: Extra names.
        renderer: Quicklook kind (default ``true_colour`` with RED/GREEN/BLUE bands, else ``grey``).
        hard_limits: Values no file of it can hold (a read refuses them).
    """

    name: str
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    unit: str = "unknown"
    description: str | None = None
    aliases: tuple[str, ...] = ()
    renderer: Renderer | None = None
    hard_limits: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.record()  # a band count that does not match mean/std fails where the config is read

    def record(self) -> ModalitySpec:
        """Return its catalog record (see :func:`pixel_modality`, which checks it)."""
        return pixel_modality(
            self.name,
            self.bands,
            self.mean,
            self.std,
            unit=self.unit,
            description=self.description,
            aliases=self.aliases,
            renderer=self.renderer,
            hard_limits=self.hard_limits,
        )


Sensor = SensorSpec | ModalitySpec | Mapping[str, Any]


def with_sensors(sensors: Sequence[Sensor] | None, base: Catalog | None = None) -> Catalog:
    """Register sensors given as records, :class:`SensorSpec` or mappings (``{name, bands, mean, std}``).

    The one path by which configs (fine-tuning's ``sensors:``, pretraining's new modalities) declare a
    sensor. Returns ``base`` (default: the current catalog) unchanged when there are none.

    Raises:
        ModalityError: A mapping with missing or unknown keys, or a record :meth:`Catalog.register` refuses.
    """
    base = base or current_catalog()
    specs = []
    for entry in sensors or ():
        if isinstance(entry, ModalitySpec | SensorSpec):
            specs.append(entry if isinstance(entry, ModalitySpec) else entry.record())
            continue
        try:
            specs.append(pixel_modality(**dict(entry)))
        except TypeError as err:
            raise ModalityError(
                f"sensor {dict(entry).get('name', entry)!r}: {err}; a sensor is "
                f"{{name, bands, mean, std}} with optional unit, description, aliases"
            ) from None
    return base.register(*specs) if specs else base


def get_modality(name: str | ModalitySpec) -> ModalitySpec:
    """Return the catalog record of a modality, by any of its names (case-insensitive).

    Names resolve through :func:`current_catalog`: the default catalog, or a registered one inside a
    :func:`using_catalog` block.

    Args:
        name: A canonical name (``S2L2A``), an alias (``s2``, ``sen1grd``, ``S1`` for S1GRD) or an official
            internal key (``untok_sen2l2a@224``). A record is returned unchanged.

    Returns:
        The frozen :class:`ModalitySpec`.

    Raises:
        ModalityError: For an unknown name, listing the valid names and the closest match.
    """
    return current_catalog().get(name)


def modality_names(*, generable: bool | None = None, kind: Kind | None = None) -> tuple[str, ...]:
    """Canonical names of the current catalog's modalities, optionally filtered.

    Args:
        generable: Keep only modalities the official model can (True) or cannot (False) generate.
        kind: Keep only modalities of this input kind.

    Returns:
        Names in catalog order.
    """
    return current_catalog().names(generable=generable, kind=kind)
