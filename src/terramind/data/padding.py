"""Reflect-padding of rasters to a size the model takes, and the crop back: one home for both.

Every TerraMind model and tokenizer reads images whose sides are multiples of the 16 px patch
(:data:`terramind.modalities.tokens.PATCH_SIZE`). Inputs of any other size (a 120 px BigEarthNet patch, a
7 x 300 px strip) are padded at the bottom and right by mirroring the image (``numpy`` ``reflect`` mode,
repeated for pads longer than the image), run, and the outputs cropped back to the input's size, so the
pixel grid and georeference of the input are kept. The scene engine pads a scene smaller than one tile the
same way (:func:`reflect_pad`).
"""

from __future__ import annotations

import numpy as np

from terramind.modalities.tokens import PATCH_SIZE


def padding_to_multiple(height: int, width: int, multiple: int = PATCH_SIZE) -> tuple[int, int]:
    """Rows and columns to add at the bottom and right so both sides become multiples of ``multiple``.

    Args:
        height: Image rows.
        width: Image columns.
        multiple: Side multiple the consumer needs (the patch size, or more for a diffusion decoder).

    Returns:
        ``(pad_bottom, pad_right)``, each in ``[0, multiple)``.
    """
    return -height % multiple, -width % multiple


def reflect_pad(x: np.ndarray, bottom: int, right: int) -> np.ndarray:
    """Mirror-pad the last two axes of ``x`` (``(..., H, W)``) by ``bottom`` rows and ``right`` columns.

    Args:
        x: Array whose last two axes are rows and columns (values or class ids).
        bottom: Rows to add below.
        right: Columns to add on the right.

    Returns:
        ``x`` itself when nothing is added, else the padded copy ``(..., H + bottom, W + right)``.
    """
    if not bottom and not right:
        return x
    pad = [(0, 0)] * (x.ndim - 2) + [(0, bottom), (0, right)]
    # numpy reflects repeatedly when a pad is longer than the image (and repeats a one-pixel side)
    return np.pad(x, pad, mode="reflect")


def pad_to_multiple(x: np.ndarray, multiple: int = PATCH_SIZE) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad ``(..., H, W)`` to sides that are multiples of ``multiple``; also return the padding.

    Args:
        x: Array whose last two axes are rows and columns.
        multiple: Side multiple to reach.

    Returns:
        The padded array and ``(pad_bottom, pad_right)``; crop outputs back with :func:`crop_to`.
    """
    bottom, right = padding_to_multiple(x.shape[-2], x.shape[-1], multiple)
    return reflect_pad(x, bottom, right), (bottom, right)


def crop_to(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Return the top-left ``height`` x ``width`` of the last two axes (undoes :func:`pad_to_multiple`)."""
    return x[..., :height, :width]
