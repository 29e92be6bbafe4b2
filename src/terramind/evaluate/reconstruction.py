"""How close a reconstruction is to its original: PSNR and SSIM in physical units, pixel accuracy for classes.

The one home of these scores (``terramind reconstruct`` reports them). Written here in a few lines of torch
rather than taken from torchmetrics, so that reconstruction is scored in a base install; ``tests/evaluate``
checks them against torchmetrics where it is installed.

SSIM follows Wang et al. (2004), "Image quality assessment: from error visibility to structural similarity":
an 11x11 Gaussian window with sigma 1.5, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` for data range ``L``,
computed at every pixel of the image reflect-padded by half a window, then averaged over pixels and channels
(torchmetrics' convention, so the numbers match what ``reconstruct`` reported before).

Nodata pixels are no part of a score: PSNR's error and the data range use valid pixels only; for SSIM the
invalid pixels of both images are set to the original's valid mean per channel (so that they add no
structure) and the SSIM map is averaged over valid pixels only; pixel accuracy counts valid pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from terramind.modalities import ModalitySpec

SSIM_WINDOW = 11  # Wang et al. 2004, section III-C
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr(
    original: torch.Tensor, reconstruction: torch.Tensor, data_range: float, valid: torch.Tensor | None = None
) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(L^2 / MSE)``, the MSE over ``valid`` pixels if given.

    Args:
        original: ``(C, H, W)`` reference.
        reconstruction: Same shape.
        data_range: ``L``.
        valid: ``(H, W)`` mask of the pixels to score (default all).
    """
    error = (original - reconstruction) ** 2
    mse = torch.mean(error if valid is None else error[:, valid])
    return float(10 * torch.log10(data_range**2 / mse))


def _gaussian_window(channels: int) -> torch.Tensor:
    """``(C, 1, K, K)`` normalised Gaussian window, one per channel (depthwise convolution)."""
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)


def ssim(
    original: torch.Tensor, reconstruction: torch.Tensor, data_range: float, valid: torch.Tensor | None = None
) -> float:
    """Mean structural similarity of two ``(C, H, W)`` images (sides of at least 6 pixels).

    Args:
        original: ``(C, H, W)`` reference.
        reconstruction: Same shape.
        data_range: ``L``.
        valid: ``(H, W)`` mask of the pixels to score (default all); see the module docstring.
    """
    if valid is not None:
        fill = original[:, valid].mean(dim=1)[:, None, None]  # (C, 1, 1): no structure where invalid
        original, reconstruction = (torch.where(valid, x, fill) for x in (original, reconstruction))
    pad = (SSIM_WINDOW - 1) // 2
    x = F.pad(original.double()[None], (pad, pad, pad, pad), mode="reflect")  # (1, C, H+10, W+10)
    y = F.pad(reconstruction.double()[None], (pad, pad, pad, pad), mode="reflect")
    stacked = torch.cat([x, y, x * x, y * y, x * y])  # (5, C, H+10, W+10): the five local moments at once
    mu_x, mu_y, xx, yy, xy = F.conv2d(stacked, _gaussian_window(x.shape[1]), groups=x.shape[1])  # (C, H, W)
    # variances clamped at 0: E[x^2] - E[x]^2 can round below zero on flat regions
    var_x, var_y = (xx - mu_x**2).clamp(min=0), (yy - mu_y**2).clamp(min=0)
    cov = xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean() if valid is None else index[:, valid].mean())


def reconstruction_scores(
    spec: ModalitySpec, original: np.ndarray, rec: np.ndarray, valid: np.ndarray | None = None
) -> dict[str, float]:
    """Score ``(C, H, W)`` physical values: PSNR/SSIM (range: the original's); pixel accuracy for classes.

    Args:
        spec: The modality.
        original: The input's values.
        rec: The reconstruction's values, same shape.
        valid: ``(H, W)`` mask of the pixels to score (the input's valid pixels; default all).
    """
    mask = np.ones(original.shape[-2:], bool) if valid is None else np.asarray(valid, bool)
    if spec.classes is not None:
        return {"pixel_accuracy": float((original == rec)[:, mask].mean())}
    target = torch.from_numpy(original.astype(np.float64))
    preds = torch.from_numpy(rec.astype(np.float64))
    values = target[:, torch.from_numpy(mask)]
    span = float(values.max() - values.min()) or 1.0
    scored = None if valid is None else torch.from_numpy(mask)
    return {"psnr_db": psnr(target, preds, span, scored), "ssim": ssim(target, preds, span, scored)}
