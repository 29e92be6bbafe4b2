"""Thinking-in-Modalities (TiM, arXiv 2504.11171): generate intermediate tokens with a frozen model.

A frozen copy of the full pretrained model predicts the tokens of one or more modalities (default LULC)
from the raw inputs in a single decoding pass, as the reference does (all positions at once, temperature
1, top-p 0.8, fresh randomness each call). The ids are then fed, like any token input, to the trainable
backbone, whose own token embedding of that modality is fine-tuned. The generator never receives gradients:
its parameters are frozen, it runs under ``torch.no_grad`` and its outputs are discrete ids.

``cache=True`` generates once per distinct input and reuses the ids afterwards (keyed by a hash of the
sample's input values, so augmented views get their own entry): faster, but no longer the reference's
stochastic regeneration.

The filter and the tempered distribution are :mod:`terramind.layers.sampling`'s, shared with generation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from terramind.core.errors import ModalityError
from terramind.layers.sampling import SamplingConfig, probabilities
from terramind.modalities import get_modality
from terramind.model.backbone import input_key
from terramind.model.terramind import TerraMind

PATCH = 16  # pixels per token side (model/config.py)


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_p: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one id per position from ``(B, n, V)`` logits.

    Top-p filters the unscaled logits before the temperature, as in the reference wrapper;
    temperature 0 means greedy. One generator (or the global stream) serves the whole batch: TiM draws
    fresh tokens each call, as the reference does, and needs no per-sample streams.

    Returns:
        (B, n) long ids.
    """
    cfg = SamplingConfig(temperature=temperature, top_p=top_p)
    if cfg.greedy:
        return logits.argmax(dim=-1)
    probs = probabilities(logits, cfg)
    ids = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)  # (B*n, 1)
    return ids.reshape(probs.shape[:-1])


class TiMGenerator(nn.Module):
    """The frozen generator of Thinking-in-Modalities.

    Args:
        model: The full pretrained model; it needs input embeddings for the raw modalities and decoder
            embeddings for the TiM modalities. It is frozen here (``requires_grad_(False)``, eval mode).
        modalities: Modalities to generate (image token modalities, e.g. ``["LULC"]``).
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus mass.
        cache: Generate once per distinct input and reuse the ids.
    """

    def __init__(
        self,
        model: TerraMind,
        modalities: Sequence[str] = ("LULC",),
        *,
        temperature: float = 1.0,
        top_p: float = 0.8,
        cache: bool = False,
    ) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.targets = {get_modality(m).name: _target_key(m) for m in modalities}
        missing = [k for k in self.targets.values() if k not in model.decoder_embeddings]
        if missing:
            raise ModalityError(
                f"the TiM generator has no decoder embedding for {missing}; build it with them"
            )
        self.temperature, self.top_p, self.cache = temperature, top_p, cache
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> TiMGenerator:
        """Keep the frozen model in eval mode whatever the surrounding module's mode."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(
        self, inputs: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Generate the TiM modalities that are not among the inputs.

        Args:
            inputs: ``{modality name: tensor}`` as the backbone takes them (standardized pixels); TiM
                modalities already present are not generated, and are not fed to the generator.
            generator: Random generator for reproducible sampling (None: torch's global one).

        Returns:
            ``{TiM modality name: (B, h, w) long ids}``, ``h, w`` the inputs' token grid.
        """
        given = {get_modality(m).name for m in inputs}
        wanted = {n: k for n, k in self.targets.items() if n not in given}
        sources = {n: x for n, x in inputs.items() if get_modality(n).name not in self.targets}
        return {name: self._rows(sources, name, key, generator) for name, key in wanted.items()}

    def _rows(
        self, sources: Mapping[str, torch.Tensor], name: str, key: str, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Ids of one TiM modality for the batch, from the cache where possible."""
        if not self.cache:
            return self._generate(sources, key, generator)
        hashes = {n: _hash_rows(x) for n, x in sources.items()}
        batch = next(iter(sources.values())).shape[0]
        ids = [_join(name, hashes, i) for i in range(batch)]
        todo = [i for i, k in enumerate(ids) if k not in self._cache]
        if todo:
            fresh = self._generate({n: x[todo] for n, x in sources.items()}, key, generator)
            self._cache.update({ids[i]: row.cpu() for i, row in zip(todo, fresh, strict=True)})
        device = next(iter(sources.values())).device
        return torch.stack([self._cache[k] for k in ids]).to(device)

    def _generate(
        self, inputs: Mapping[str, torch.Tensor], key: str, generator: torch.Generator | None
    ) -> torch.Tensor:
        """One ROAR pass: every position of the target grid decoded at once."""
        first = next(iter(inputs.values()))
        grid = (first.shape[-2] // PATCH, first.shape[-1] // PATCH)
        encoded = self.model.encode({input_key(n): x for n, x in inputs.items()})
        positions = torch.arange(grid[0] * grid[1], device=first.device).expand(first.shape[0], -1)  # (B, n)
        logits = self.model.decode_logits(encoded, key, positions, grid)  # (B, n, V)
        ids = sample_tokens(logits, temperature=self.temperature, top_p=self.top_p, generator=generator)
        return ids.reshape(first.shape[0], *grid)  # (B, h*w) -> (B, h, w)


def _target_key(name: str) -> str:
    spec = get_modality(name)
    if spec.token_key is None or not spec.generable or not spec.is_image:
        raise ModalityError(f"{spec.name} cannot be a TiM modality: it is not a generable image modality")
    return spec.token_key


def _hash_rows(x: torch.Tensor) -> list[str]:
    """Hash each sample of a batch of a batch (the cache key of that sample's input)."""
    return [
        hashlib.blake2b(row.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()
        for row in x
    ]


def _join(target: str, hashes: Mapping[str, list[str]], i: int) -> str:
    """Cache key of sample ``i``: the target modality and the hashes of all its inputs."""
    return target + "|" + "|".join(f"{name}:{h[i]}" for name, h in sorted(hashes.items()))
