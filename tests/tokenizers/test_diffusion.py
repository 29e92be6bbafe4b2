"""The DDIM configuration of the release (tokenizers/diffusion.py), on diffusers' scheduler."""

from __future__ import annotations

import pytest
import torch

from terramind.core.errors import InputError
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


def test_schedule_table_and_timesteps_are_diffusers_own() -> None:
    from terramind.tokenizers.diffusion import alphas_cumprod, trailing_timesteps

    sched = make_scheduler()
    assert torch.equal(alphas_cumprod(), sched.alphas_cumprod)
    for steps in (1, 3, 7, 10, 50, 999, 1000):
        sched.set_timesteps(steps)
        assert trailing_timesteps(steps) == sched.timesteps.tolist()


@pytest.mark.parametrize("steps", [1, 3, 10, 50])
def test_every_update_is_bit_identical_to_diffusers_step(steps: int) -> None:
    """Our precomputed updates against ``DDIMScheduler.step`` on the same x_t and raw x0, every step."""
    from terramind.tokenizers.diffusion import ddim_plan

    sched = make_scheduler()
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(steps)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    for step, t in zip(ddim_plan(steps), sched.timesteps, strict=True):
        raw = torch.randn(2, 3, 8, 8, generator=gen) * 1.5  # partly outside [-1, 1]: the clip matters
        expected = sched.step(raw, t, x).prev_sample
        ours = step.update(x, raw)
        assert step.t == int(t)
        assert torch.equal(ours, expected)
        x = expected


def test_sampling_matches_a_diffusers_loop_bit_for_bit() -> None:
    weight = torch.randn(3, 3, 1, 1, generator=torch.Generator().manual_seed(0))

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # any deterministic function of (x, t)
        return torch.nn.functional.conv2d(x, weight) * (1 + t.float() / 1000)

    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    sched = make_scheduler()
    sched.set_timesteps(10)
    x = noise
    for t in sched.timesteps:
        x = sched.step(denoise(x, t), t, x).prev_sample
    assert torch.equal(ddim_sample(denoise, noise, 10), x)


def test_out_of_range_steps_are_refused() -> None:
    with pytest.raises(InputError, match="between 1 and 1000"):
        ddim_sample(lambda x, t: x, torch.zeros(1, 1, 4, 4), 0)
