"""The frozen record that describes one modality (see catalog.py for the table of all of them)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Literal

DecoderKind = Literal["diffusion", "vit", "vocab"]


class Kind(enum.Enum):
    """How the official model takes a modality in.

    PIXEL: raw values through a 16x16 linear patch embedding. TOKEN: discrete FSQ tokenizer ids.
    SEQUENCE: a short WordPiece sequence (coordinates, captions).
    """

    PIXEL = "pixel"
    TOKEN = "token"
    SEQUENCE = "sequence"


@dataclass(frozen=True)
class LulcClass:
    """One land-use/land-cover class of the ESRI LULC map remapped to 0-9 (TerraMind v1)."""

    id: int
    name: str
    colour: str  # hex "#rrggbb"


Renderer = Literal["true_colour", "rgb8", "sar", "terrain", "classes", "diverging", "grey"]


@dataclass(frozen=True)
class RasterFacts:
    """What files of a raster modality look like: read by ``data/policy.py``, ``data/validate.py``, ``viz/``.

    Attributes:
        renderer: How ``viz`` draws it (``true_colour`` uses RED/GREEN/BLUE, ``classes`` the class colours).
        dtypes: dtypes of the pretraining tiles (TerraMesh); others are read as they are but flagged.
        hard_limits: Values no file can hold in any unit people use (a read refuses them), or None.
        refused_dtypes: dtypes no file of the modality can have ...
        refused_reason: ... and why (the refusal message).
        unit_scale: Factor that undoes a 0-1 scaling of a digital-number unit, or None.
        physical_bounds: Bounds outside which values are wrong, not just unusual, or None.
    """

    renderer: Renderer = "grey"
    dtypes: tuple[str, ...] = ()
    hard_limits: tuple[float, float] | None = None
    refused_dtypes: tuple[str, ...] = ()
    refused_reason: str = ""
    unit_scale: float | None = None
    physical_bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class ModalitySpec:
    """Everything the library knows about one modality; instances live only in the catalog.

    Attributes:
        name: Canonical name, e.g. ``"S2L2A"``.
        description: One human sentence.
        input_kind: How the official v1 model accepts it as input (None: not an input in v1).
        generable: Whether the official model can generate it (has a decoder embedding and tokenizer).
        bands: Band names in the official channel order.
        unit: Physical unit of the raw values.
        mean: v1 pretraining standardisation mean per band.
        std: v1 pretraining standardisation std per band.
        mean_v01: v0.1 mean per band, None where v0.1 did not use the modality.
        std_v01: v0.1 std per band.
        pixel_key: Official internal key of the patch embedding (``untok_sen2l2a@224``), if any.
        token_key: Official internal key of the token embedding (``tok_sen2l2a@224``, ``coords``), if any.
        vocab_size: Size of the token vocabulary (FSQ codebook or WordPiece vocabulary).
        fsq_levels: FSQ levels of the image tokenizer, first dimension least significant.
        tokenizer: Name of the tokenizer artefact it needs (``terramind_v1_tokenizer_s2l2a``).
        aliases: Extra names it is known by (resolution is case-insensitive).
        classes: Class table for categorical modalities (LULC).
        versions: Model versions that know the modality.
        max_length: Token budget of a sequence modality.
        raster: File facts of a raster modality (None for text and coordinates).
        official: True for the released modalities; False for a sensor a user registered
            (:func:`terramind.modalities.pixel_modality`): a pixel input with a freshly initialised embedding.
    """

    name: str
    description: str
    input_kind: Kind | None
    generable: bool
    bands: tuple[str, ...]
    unit: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mean_v01: tuple[float, ...] | None = None
    std_v01: tuple[float, ...] | None = None
    pixel_key: str | None = None
    token_key: str | None = None
    vocab_size: int | None = None
    fsq_levels: tuple[int, ...] | None = None
    tokenizer: str | None = None
    aliases: tuple[str, ...] = ()
    classes: tuple[LulcClass, ...] | None = None
    versions: tuple[str, ...] = ("v1",)
    max_length: int | None = None
    raster: RasterFacts | None = None
    official: bool = True

    @property
    def num_bands(self) -> int:
        """Number of channels of the raw modality."""
        return len(self.bands)

    @property
    def is_image(self) -> bool:
        """True for image modalities (pixel or token grids), False for sequences."""
        return self.max_length is None

    @property
    def decoder_kind(self) -> DecoderKind | None:
        """Its tokenizer's decoder: ``diffusion`` (DiVAE), ``vit`` (class maps), ``vocab`` (text) or None."""
        if self.fsq_levels is not None:
            return "vit" if self.classes is not None else "diffusion"
        return "vocab" if self.max_length is not None and self.vocab_size is not None else None

    @property
    def tokenizer_channels(self) -> int:
        """Channels its image tokenizer's encoder takes: one-hot classes for class maps, else the bands."""
        return len(self.classes) if self.classes is not None else self.num_bands

    @property
    def codebook_size(self) -> int | None:
        """Distinct ids of its FSQ tokenizer (the product of the levels), None without one."""
        return math.prod(self.fsq_levels) if self.fsq_levels is not None else None

    @property
    def is_new_sensor(self) -> bool:
        """True for a registered pixel sensor: no official embedding, so the model initialises one."""
        return not self.official and self.input_kind is Kind.PIXEL

    @property
    def keys(self) -> tuple[str, ...]:
        """All official internal keys of this modality."""
        return tuple(k for k in (self.pixel_key, self.token_key) if k is not None)
