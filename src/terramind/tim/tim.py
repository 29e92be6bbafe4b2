"""Thinking-in-Modalities (TiM, arXiv 2504.11171): generate intermediate tokens with a frozen model.

A frozen copy of the full pretrained model predicts the tokens of one or more modalities (default LULC)
from the raw inputs in a single decoding pass, as the reference does (all positions at once, temperature
1, top-p 0.8, fresh randomness each call). The ids are then fed, like any token input, to the trainable
backbone, whose own token embedding of that modality is fine-tuned. The generator never receives gradients:
its parameters are frozen, it runs under ``torch.no_grad`` and its outputs are discrete ids.

Decoding is the generation package's: the ``single`` strategy of :func:`~terramind.generation.decode_grid`
and its sampler, with one random stream per sample seeded from ``(seed, sample index, purpose)`` as for
generated tiles, so a sample's tokens do not depend on the batch it is in, and never torch's global
generator. Without a seed each call draws a fresh one (the reference's stochastic regeneration), kept in
``last_seed`` so a call can be repeated.

``cache=True`` generates once per distinct input and reuses the ids afterwards (keyed by a hash of the
sample's input values, so augmented views get their own entry): faster, but no longer the reference's
stochastic regeneration. The cache holds at most ``cache_size`` samples and forgets the least recently used.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from terramind.core.errors import InputError, ModalityError
from terramind.generation import decode_grid, get_strategy
from terramind.layers.sampling import SamplingConfig, fresh_seed, generators
from terramind.modalities import get_modality
from terramind.modalities.tokens import PATCH_SIZE as PATCH  # pixels per token side
from terramind.model.backbone import input_key
from terramind.model.terramind import TerraMind

CACHE_SIZE = 50_000  # samples; 14 x 14 int64 ids are 1.6 kB each, so 80 MB of host memory per modality


class TiMGenerator(nn.Module):
    """The frozen generator of Thinking-in-Modalities.

    Args:
        model: The full pretrained model; it needs input embeddings for the raw modalities and decoder
            embeddings for the TiM modalities. It is frozen here (``requires_grad_(False)``, eval mode).
        modalities: Modalities to generate (image token modalities, e.g. ``["LULC"]``).
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus mass.
        cache: Generate once per distinct input and reuse the ids.
        cache_size: Most samples the cache holds (least recently used ones are dropped first).
    """

    def __init__(
        self,
        model: TerraMind,
        modalities: Sequence[str] = ("LULC",),
        *,
        temperature: float = 1.0,
        top_p: float = 0.8,
        cache: bool = False,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()
        self.targets = {get_modality(m).name: _target_key(m) for m in modalities}
        missing = [k for k in self.targets.values() if k not in model.decoder_embeddings]
        if missing:
            raise ModalityError(
                f"the TiM generator has no decoder embedding for {missing}; build it with them"
            )
        if cache_size < 1:
            raise InputError(f"cache_size must be >= 1, got {cache_size}")
        self.sampling = SamplingConfig(temperature=temperature, top_p=top_p)
        self.cache, self.cache_size = cache, cache_size
        self.last_seed: int | None = None
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def train(self, mode: bool = True) -> TiMGenerator:
        """Keep the frozen model in eval mode whatever the surrounding module's mode."""
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        *,
        seed: int | None = None,
        sample_indices: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generate the TiM modalities that are not among the inputs.

        Args:
            inputs: ``{modality name: tensor}`` as the backbone takes them (standardized pixels); TiM
                modalities already present are not generated, and are not fed to the generator.
            seed: Seed of the sampling; None draws a fresh one (kept in ``last_seed``).
            sample_indices: Index of each sample for seeding (default 0..B-1).

        Returns:
            ``{TiM modality name: (B, h, w) long ids}``, ``h, w`` the inputs' token grid.
        """
        given = {get_modality(m).name for m in inputs}
        wanted = {n: k for n, k in self.targets.items() if n not in given}
        sources = {n: x for n, x in inputs.items() if get_modality(n).name not in self.targets}
        if not wanted:
            return {}
        seed = self.last_seed = fresh_seed() if seed is None else int(seed)
        batch = next(iter(sources.values())).shape[0]
        indices = list(range(batch)) if sample_indices is None else [int(i) for i in sample_indices]
        if len(indices) != batch:
            raise InputError(f"sample_indices has {len(indices)} entries for a batch of {batch}")
        return {name: self._rows(sources, name, key, seed, indices) for name, key in wanted.items()}

    def _rows(
        self, sources: Mapping[str, torch.Tensor], name: str, key: str, seed: int, indices: list[int]
    ) -> torch.Tensor:
        """Ids of one TiM modality for the batch, from the cache where possible."""
        if not self.cache:
            return self._generate(sources, name, key, seed, indices)
        hashes = {n: _hash_rows(x) for n, x in sources.items()}
        ids = [_join(name, hashes, i) for i in range(len(indices))]
        todo = [i for i, k in enumerate(ids) if k not in self._cache]
        fresh: dict[str, torch.Tensor] = {}
        if todo:
            subset = {n: x[todo] for n, x in sources.items()}
            rows = self._generate(subset, name, key, seed, [indices[i] for i in todo])
            fresh = {ids[i]: row.cpu() for i, row in zip(todo, rows, strict=True)}
        out = [fresh[k] if k in fresh else self._cache[k] for k in ids]  # before eviction can drop any
        for k in ids:
            self._remember(k, fresh.get(k))
        return torch.stack(out).to(next(iter(sources.values())).device)

    def _remember(self, key: str, row: torch.Tensor | None) -> None:
        """Store (or touch) one cached sample and drop the least recently used beyond ``cache_size``."""
        if row is not None:
            self._cache[key] = row
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _generate(
        self, inputs: Mapping[str, torch.Tensor], name: str, key: str, seed: int, indices: Sequence[int]
    ) -> torch.Tensor:
        """One pass of the ``single`` strategy: every position of the target grid decoded at once."""
        first = next(iter(inputs.values()))
        grid = (first.shape[-2] // PATCH, first.shape[-1] // PATCH)
        encoded = self.model.encode({input_key(n): x for n, x in inputs.items()})

        def logits_fn(ids: torch.Tensor, known: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            # one pass: nothing is known yet, so the encoder input is the raw inputs alone
            return self.model.decode_logits(encoded, key, positions, grid)  # (B, n, V)

        ids = decode_grid(
            logits_fn, get_strategy("single"), batch=first.shape[0], total=grid[0] * grid[1], steps=1,
            sampling=self.sampling, gens=generators(seed, indices, f"tim/{name}"), device=first.device,
        )  # fmt: skip
        return ids.reshape(first.shape[0], *grid)  # (B, h*w) -> (B, h, w)


def _target_key(name: str) -> str:
    spec = get_modality(name)
    if spec.token_key is None or not spec.generable or not spec.is_image:
        raise ModalityError(f"{spec.name} cannot be a TiM modality: it is not a generable image modality")
    return spec.token_key


def _hash_rows(x: torch.Tensor) -> list[str]:
    """Hash each sample of a batch (the cache key of that sample's input)."""
    return [
        hashlib.blake2b(row.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()
        for row in x
    ]


def _join(target: str, hashes: Mapping[str, list[str]], i: int) -> str:
    """Cache key of sample ``i``: the target modality and the hashes of all its inputs."""
    return target + "|" + "|".join(f"{name}:{h[i]}" for name, h in sorted(hashes.items()))
