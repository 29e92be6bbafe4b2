"""DDIM sampling of the DiVAE decoders, configured as the release, without a scheduler object per step.

Configuration of the release (diffusers' ``DDIMScheduler`` arguments): 1000 training steps, linear betas
1e-4..0.02 rescaled to zero terminal SNR, x0-prediction, "trailing" timestep spacing (10 steps: 999, 899,
..., 99), ``set_alpha_to_one``, no steps offset, eta 0, and thresholding with ``sample_max_value=1`` -- which
clamps the dynamic threshold to exactly 1, i.e. every predicted x0 is clipped to [-1, 1] standardized units,
and the last step returns that clipped x0.

We compute the schedule once per step count (:func:`ddim_plan`) and apply each update with the same tensor
operations, in the same order and on the same float32 scalars, as diffusers 0.42.1's ``DDIMScheduler.step``:
the updates are bit-identical to it (tests/tokenizers/test_diffusion.py checks every step against diffusers).
What we drop is what costs on a GPU and changes nothing: the per-step ``torch.quantile`` of the dynamic
threshold (a sort of every pixel, whose result is then clamped to exactly 1), the per-step timestep upload and
the Python-side scheduler state. The loop has no host synchronisation: the timesteps go to the device in one
copy and the scalars stay on the host as kernel arguments. One difference, for broken inputs only: a NaN in a
predicted x0 stays in its pixel, where diffusers' quantile spreads it over the whole sample.

For step counts that divide 1000 (5, 10, 20, 25, 50, ...) the timesteps equal the reference's own scheduler
copy; for other counts the reference spaces steps by ``1000 // steps`` (and may run one step more); we keep
diffusers' evenly trailing spacing. diffusers itself is needed only by :func:`make_scheduler` (training and
tests), not to sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from terramind.core.errors import InputError

TRAIN_STEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02  # linear schedule of the release (DDPM's)

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``(x_t, t) -> predicted x0``."""


def make_scheduler() -> Any:  # diffusers' DDIMScheduler (its methods are untyped for mypy)
    """Build diffusers' ``DDIMScheduler`` with the release's sampling configuration (needs diffusers)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=TRAIN_STEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
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


def alphas_cumprod() -> Tensor:
    """Cumulative alpha products ``(1000,)`` float32 of the release's betas (zero terminal SNR).

    Algorithm 1 of Lin et al. 2023 ("Common diffusion noise schedules and sample steps are flawed"): shift the
    square roots of the cumulative products so the last is 0, rescale so the first is unchanged, and turn them
    back into betas; the float32 operations are those of diffusers, so the table is bit-identical to its.
    """
    betas = torch.linspace(BETA_START, BETA_END, TRAIN_STEPS, dtype=torch.float32)
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root -= last
    root *= first / (first - last)
    bar = root**2
    betas = 1 - torch.cat([bar[0:1], bar[1:] / bar[:-1]])
    return torch.cumprod(1.0 - betas, dim=0)


def trailing_timesteps(steps: int) -> list[int]:
    """Timesteps of "trailing" spacing, e.g. ``[999, 899, ..., 99]`` for 10 steps (diffusers' arithmetic)."""
    ratio = TRAIN_STEPS / steps
    return [int(t) for t in np.round(np.arange(TRAIN_STEPS, 0, -ratio)).astype(np.int64) - 1]


@dataclass(frozen=True)
class DDIMStep:
    """One deterministic DDIM update, ``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps`` (eq. 12, eta 0).

    The coefficients are float32 0-d tensors on the host, computed exactly as diffusers computes them.

    Attributes:
        t: Timestep the denoiser sees.
        sqrt_alpha: ``sqrt(alpha_bar_t)``.
        sqrt_beta: ``sqrt(1 - alpha_bar_t)``.
        sqrt_alpha_prev: ``sqrt(alpha_bar_prev)`` (1 after the last step).
        direction: ``sqrt(1 - alpha_bar_prev - sigma_t^2)`` with ``sigma_t = 0``.
    """

    t: int
    sqrt_alpha: Tensor
    sqrt_beta: Tensor
    sqrt_alpha_prev: Tensor
    direction: Tensor

    def update(self, x: Tensor, x0: Tensor) -> Tensor:
        """Return ``x_prev`` from ``x_t`` and the denoiser's raw ``x0``, both float32.

        As in diffusers (``use_clipped_model_output=False``), the noise estimate uses the raw x0 and only the
        x0 term is clipped to [-1, 1] (the dynamic threshold, clamped to exactly 1).
        """
        eps = (x - self.sqrt_alpha * x0) / self.sqrt_beta
        return self.sqrt_alpha_prev * x0.clamp(-1.0, 1.0) + self.direction * eps


def ddim_plan(steps: int) -> list[DDIMStep]:
    """Return the updates of a ``steps``-step DDIM sampling, in order.

    Raises:
        InputError: ``steps`` outside 1-1000.
    """
    if not 1 <= steps <= TRAIN_STEPS:
        raise InputError(f"diffusion steps must be between 1 and {TRAIN_STEPS}, got {steps}")
    table = alphas_cumprod()
    plan = []
    for t in trailing_timesteps(steps):
        prev = t - TRAIN_STEPS // steps  # diffusers' previous timestep, also for uneven spacings
        alpha, alpha_prev = table[t], table[prev] if prev >= 0 else torch.tensor(1.0)
        beta, beta_prev = 1 - alpha, 1 - alpha_prev
        sigma = 0.0 * ((beta_prev / beta) * (1 - alpha / alpha_prev)) ** 0.5  # eta = 0
        plan.append(DDIMStep(t, alpha**0.5, beta**0.5, alpha_prev**0.5, (1 - alpha_prev - sigma**2) ** 0.5))
    return plan


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """Draw the starting noise as the reference does: ``torch.randn(shape, generator=generator)``, CPU."""
    return torch.randn(shape, generator=generator)


def ddim_sample(denoise: Denoiser, noise: Tensor, steps: int) -> Tensor:
    """Run deterministic DDIM (eta 0) from ``noise`` for ``steps`` steps.

    Args:
        denoise: Predicts x0 from ``(x_t, t)``; ``t`` is a 0-d int64 tensor on the noise's device.
        noise: Initial sample ``(B, C, H, W)`` on the device the denoiser runs on.
        steps: Number of denoising steps, 1 to 1000.

    Returns:
        The final (clipped) x0, float32.
    """
    plan = ddim_plan(steps)
    x = noise.float()
    timesteps = torch.tensor([s.t for s in plan], dtype=torch.int64).to(x.device)  # one copy, not one a step
    for i, step in enumerate(plan):
        x = step.update(x, denoise(x, timesteps[i]).float())
    return x
