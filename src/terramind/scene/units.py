"""Sentinel-1 backscatter in linear power, read as the dB the model was trained on.

TerraMind's S1GRD and S1RTC are backscatter in dB. Products are also distributed in linear power (sigma0,
gamma0); given as they are, the model would read nonsense. Whether an input is linear power is decided the
way ``terramind inspect`` diagnoses it (:func:`terramind.data.validate.s1_power_unit`, one home), on a
decimated read of the scene (:func:`terramind.data.validate.summarize_sample`):

- dB (most values negative): read as it is;
- linear power (nearly all values positive, none negative): converted, ``10 * log10(x)``, and the
  conversion is stated once; nodata stays nodata, and power 0 (no return, -inf dB) is nodata too;
- mostly positive but with negative values (neither unit explains it): refused with the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from terramind.core.errors import InputError
from terramind.data.validate import s1_power_unit, summarize_sample
from terramind.modalities import get_modality

BACKSCATTER = ("S1GRD", "S1RTC")  # modalities in dB whose products also come in linear power


def needs_decibels(modality: str, path: Path, band_indexes: Sequence[int] | None = None) -> bool:
    """Whether an S1 input holds linear power (to be converted to dB); False for other modalities.

    Args:
        modality: The input's modality.
        path: The raster.
        band_indexes: 0-based bands read (default: the modality's, found as the readers find them).

    Raises:
        InputError: Mostly positive values with some negative ones: neither dB nor linear power.
    """
    if get_modality(modality).name not in BACKSCATTER:
        return False
    unit = s1_power_unit(summarize_sample(path, modality, band_indexes=band_indexes))
    if unit == "ambiguous":
        raise InputError(
            f"{modality} input {str(path)!r}: most values are positive, as in linear power, but some are "
            f"negative, which linear power never is; give backscatter in dB (10*log10 of linear power), or "
            f"linear power without negative values"
        )
    return unit == "linear"


def decibel_note(modality: str, path: Path) -> str:
    """Return the line that states the conversion of one input."""
    return f"{modality} input {str(path)!r} looks like linear power: converted to dB (10*log10(x))"


def to_decibels(power: np.ndarray) -> np.ndarray:
    """``10 * log10(power)`` as float32; NaN (invalid) where power is NaN or not above 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(power.astype(np.float32))
    return np.where(np.isfinite(out), out, np.nan).astype(np.float32)
