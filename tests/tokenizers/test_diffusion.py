"""The DDIM configuration of the release (tokenizers/diffusion.py), on diffusers' scheduler."""

from __future__ import annotations

import torch

from terramind.tokenizers import ddim_sample, make_scheduler


def test_trailing_timesteps_and_zero_terminal_snr() -> None:
    sched = make_scheduler()
    sched.set_timesteps(10)
    assert sched.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    sched.set_timesteps(50)
    assert sched.timesteps.tolist()[:3] == [999, 979, 959] and int(sched.timesteps[-1]) == 19
    assert float(sched.alphas_cumprod[-1]) == 0.0  # zero terminal SNR: pure noise at t=999


def test_sampling_returns_the_clipped_x0_of_the_last_step() -> None:
    calls: list[int] = []

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(int(t))
        return torch.full_like(x, 3.0)  # far outside [-1, 1]

    out = ddim_sample(denoise, torch.randn(1, 2, 8, 8), steps=5)
    assert calls == [999, 799, 599, 399, 199]
    assert torch.equal(out, torch.ones(1, 2, 8, 8))  # thresholding with sample_max_value=1 clips to 1
