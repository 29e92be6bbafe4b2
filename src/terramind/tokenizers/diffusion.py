"""DDIM sampling of the DiVAE decoders with diffusers' ``DDIMScheduler`` configured as the release.

Configuration: 1000 training steps, linear betas 1e-4..0.02 rescaled to zero terminal SNR, x0-prediction,
"trailing" timestep spacing (10 steps: 999, 899, ..., 99), ``set_alpha_to_one``, no steps offset, eta 0,
and thresholding with ``sample_max_value=1`` -- which clamps the dynamic threshold to exactly 1, i.e. every
predicted x0 is clipped to [-1, 1] standardized units, and the last step returns that clipped x0.

Checked against the reference's own scheduler copy (diffusers 0.42.1): identical ``alphas_cumprod`` and, for
step counts that divide 1000 (5, 10, 20, 25, 50, ...), identical timesteps and bit-identical updates. For
other step counts the reference spaces steps by ``1000 // steps`` (and may run one step more); we keep
diffusers' evenly trailing spacing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMScheduler
from torch import Tensor

from terramind.core.errors import InputError

TRAIN_STEPS = 1000

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``(x_t, t) -> predicted x0``."""


def make_scheduler() -> Any:  # diffusers' DDIMScheduler (its methods are untyped for mypy)
    """Build a fresh ``DDIMScheduler`` with the release's sampling configuration."""
    return DDIMScheduler(
        num_train_timesteps=TRAIN_STEPS,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        rescale_betas_zero_snr=True,
        prediction_type="sample",
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        steps_offset=0,
        clip_sample=False,
        thresholding=True,
        sample_max_value=1.0,
    )


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """Draw the starting noise as the reference does: ``torch.randn(shape, generator=generator)``, CPU."""
    return torch.randn(shape, generator=generator)


def ddim_sample(denoise: Denoiser, noise: Tensor, steps: int) -> Tensor:
    """Run deterministic DDIM (eta 0) from ``noise`` for ``steps`` steps.

    Args:
        denoise: Predicts x0 from ``(x_t, t)``.
        noise: Initial sample ``(B, C, H, W)`` on the device the denoiser runs on.
        steps: Number of denoising steps, 1 to 1000.

    Returns:
        The final (clipped) x0, float32.
    """
    if not 1 <= steps <= TRAIN_STEPS:
        raise InputError(f"diffusion steps must be between 1 and {TRAIN_STEPS}, got {steps}")
    scheduler = make_scheduler()
    scheduler.set_timesteps(steps)
    x = noise.float()
    for t in scheduler.timesteps:
        x0 = denoise(x, t.to(x.device)).float()
        x = scheduler.step(x0, t, x).prev_sample
    return x
