"""Pure standardisation with the catalog's statistics: ``(x - (mean + offset)) / std`` per band.

The S2 offset (post-2022 Sentinel-2 products carry +1000 DN) is an explicit argument, added to the mean as
the reference's ``offset=`` does, but never stored: the tables stay untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

import numpy as np
import torch

from terramind.core.errors import ModalityError, ShapeError
from terramind.modalities.catalog import get_modality
from terramind.modalities.spec import ModalitySpec

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)
Version = Literal["v1", "v0.1"]


def stats(
    modality: str | ModalitySpec,
    *,
    version: Version = "v1",
    bands: Sequence[str] | None = None,
    offset: float | Sequence[float] = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (with offset added) and std of a modality, for all bands or a named subset.

    Args:
        modality: Modality name or record.
        version: ``"v1"`` or ``"v0.1"`` statistics.
        bands: Band names to select, in the order wanted; None keeps the official order.
        offset: Value(s) added to the mean, e.g. 1000 for S2 products with the +1000 DN offset.

    Returns:
        ``(mean, std)`` as float64 arrays of one value per band.
    """
    spec = get_modality(modality)
    if not spec.bands:
        raise ModalityError(f"{spec.name} is a text modality: it has no band statistics")
    mean, std = (spec.mean, spec.std) if version == "v1" else (spec.mean_v01, spec.std_v01)
    if mean is None or std is None:
        raise ModalityError(
            f"{spec.name} has no {version} statistics (it exists in {', '.join(spec.versions)})"
        )
    idx = band_indices(spec, bands) if bands is not None else list(range(spec.num_bands))
    mean_a = np.asarray(mean, dtype=np.float64)[idx] + np.broadcast_to(np.asarray(offset, float), (len(idx),))
    return mean_a, np.asarray(std, dtype=np.float64)[idx]


def band_indices(modality: str | ModalitySpec, bands: Sequence[str]) -> list[int]:
    """Positions of named bands in the official order (names are case-insensitive).

    Raises:
        ModalityError: If a band is not one of the modality's bands.
    """
    spec = get_modality(modality)
    lookup = {b.upper(): i for i, b in enumerate(spec.bands)}
    unknown = [b for b in bands if b.upper() not in lookup]
    if unknown:
        raise ModalityError(f"{spec.name} has no band(s) {unknown}; its bands are {list(spec.bands)}")
    return [lookup[b.upper()] for b in bands]


def _apply(x: ArrayT, mean: np.ndarray, std: np.ndarray, name: str, inverse: bool) -> ArrayT:
    if x.ndim < 3 or x.shape[-3] != len(mean):
        raise ShapeError(
            f"{name}: expected channels on axis -3 with {len(mean)} bands, got shape {tuple(x.shape)}"
        )
    shape = (len(mean), 1, 1)
    if isinstance(x, torch.Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.float32
        m = torch.as_tensor(mean, dtype=dtype, device=x.device).reshape(shape)
        s = torch.as_tensor(std, dtype=dtype, device=x.device).reshape(shape)
        xf = x.to(dtype)
        return xf * s + m if inverse else (xf - m) / s
    xf = np.asarray(x, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
    m_np, s_np = mean.reshape(shape).astype(xf.dtype), std.reshape(shape).astype(xf.dtype)
    return xf * s_np + m_np if inverse else (xf - m_np) / s_np


def standardize(
    modality: str | ModalitySpec,
    x: ArrayT,
    *,
    offset: float | Sequence[float] = 0.0,
    version: Version = "v1",
    bands: Sequence[str] | None = None,
) -> ArrayT:
    """Map physical values to the model's standardised units, ``(x - (mean + offset)) / std``.

    Args:
        modality: Modality name or record.
        x: Array of shape ``(C, H, W)`` or ``(B, C, H, W)``; integer input becomes float32.
        offset: Added to the mean (S2: 1000 for products with the +1000 DN offset).
        version: Which pretraining statistics.
        bands: The band names of ``x``'s channels when it holds a subset.

    Returns:
        A new array of the same type; the input is not modified.
    """
    spec = get_modality(modality)
    mean, std = stats(spec, version=version, bands=bands, offset=offset)
    return _apply(x, mean, std, spec.name, inverse=False)


def destandardize(
    modality: str | ModalitySpec,
    x: ArrayT,
    *,
    offset: float | Sequence[float] = 0.0,
    version: Version = "v1",
    bands: Sequence[str] | None = None,
) -> ArrayT:
    """Inverse of :func:`standardize`: ``x * std + mean + offset``.

    Args:
        modality: Modality name or record.
        x: Standardised array of shape ``(C, H, W)`` or ``(B, C, H, W)``.
        offset: Added to the mean, as in :func:`standardize`.
        version: Which pretraining statistics.
        bands: The band names of ``x``'s channels when it holds a subset.

    Returns:
        A new array in physical units.
    """
    spec = get_modality(modality)
    mean, std = stats(spec, version=version, bands=bands, offset=offset)
    return _apply(x, mean, std, spec.name, inverse=True)
