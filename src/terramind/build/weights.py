"""One weights specification and one resolver for every artefact: models, backbones and tokenizers.

A weights argument anywhere in the library (``weights=``, ``tokenizer_weights=``, CLI ``--weights``) is a
:data:`WeightsSpec`:

* ``None``, ``"random"`` (or its alias ``"none"``): random initialisation, deterministic (below);
* ``"hub"``: the official release file, downloaded once into the Hugging Face cache;
* a file path (``.pt``/``.pth``/``.ckpt``/``.safetensors``);
* a folder holding release files under their release names (``TerraMind_v1_base.pt``,
  ``TerraMind_Tokenizer_S2L2A.pt``, the coordinate vocabulary's ``config.json``);
* for the tokenizers of a generator or a fine-tuning backbone only: a mapping modality -> one of the above,
  keyed by any alias of the modality; it must name every tokenizer it serves (a missing entry is an error,
  never a silent random tokenizer).

:func:`resolve` turns one specification into a local file (or None for random init); :func:`pick` takes
one modality's entry out of a specification that may be a mapping.

Deterministic random weights: every randomly initialised artefact is built under :func:`seeded` with a seed
derived from its name, ``zlib.crc32(name.encode())``, where the name is

* ``"terramind_v1_tiny"`` (any size) for a full model,
* ``"backbone:terramind_v1_tiny"`` for a backbone (any modalities, merge, depth, band selection),
* ``"tim:terramind_v1_tiny"`` for the frozen generator of a fine-tuning backbone with TiM,
* ``"tokenizer:S2L2A"`` for the decoder part of a tokenizer (quantiser projection and decoder) and
  ``"tokenizer:S2L2A:encoder"`` for its encoder, so a decode-only random tokenizer is exactly the decoder
  part of the full random tokenizer of the same modality.

The seed is set on a fork of the CPU generator (``torch.random.fork_rng``): the caller's random stream is
untouched, and two builds, in one process or two, are bit-identical. Randomness in results then comes only
from the ``seed`` a caller passes to generation.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeAlias

import torch

from terramind.checkpoints.io import HubFile, fetch
from terramind.core.errors import CheckpointError
from terramind.modalities import get_modality

Weights: TypeAlias = str | os.PathLike[str] | None
"""One artefact's weights: None/``"random"``/``"none"``, ``"hub"``, a file, or a folder of release files."""

WeightsSpec: TypeAlias = Weights | Mapping[str, Weights]
""":data:`Weights`, or (tokenizers only) a mapping modality -> :data:`Weights`."""

RANDOM_NAMES = ("random", "none")  # spellings of random initialisation besides None


def is_random(weights: Weights) -> bool:
    """Tell whether ``weights`` asks for random initialisation (None, ``"random"``, ``"none"``)."""
    return weights is None or (isinstance(weights, str) and weights.lower() in RANDOM_NAMES)


def resolve(weights: WeightsSpec, hub: HubFile, *, what: str) -> Path | None:
    """Return the local file that ``weights`` names for one artefact, or None for random initialisation.

    ``"hub"`` is downloaded now (or found in the cache); a folder must hold the release file
    (``hub.filename``). Whether a file exists and can be read is checked when it is read.

    Args:
        weights: The specification (not a mapping: use :func:`pick` first).
        hub: Where the artefact's release file lives.
        what: The artefact, for messages (``"terramind_v1_tiny"``, ``"the S2L2A tokenizer"``).

    Raises:
        CheckpointError: A mapping, a folder without the release file, or the hub unreachable without a
            cached copy.
    """
    if isinstance(weights, Mapping):
        raise CheckpointError(
            f"weights for {what} must be 'hub', 'random', a file or a folder, not a mapping: a mapping per "
            f"modality is only for tokenizer_weights"
        )
    if weights is None or is_random(weights):
        return None
    if os.fspath(weights) == "hub":
        return fetch(hub)
    path = Path(weights)
    if path.is_dir():
        if not (path / hub.filename).is_file():
            raise CheckpointError(
                f"folder {str(path)!r} has no {hub.filename} for {what}: put the release file there "
                f"({hub.url}) or pass the file itself"
            )
        return path / hub.filename
    return path


def pick(weights: WeightsSpec, modality: str, *, argument: str = "tokenizer_weights") -> Weights:
    """Return one modality's entry of a specification: the entry of a mapping, else ``weights`` itself.

    Args:
        weights: A specification shared by several tokenizers, or a mapping modality -> specification
            (keys are any alias of a modality name).
        modality: Canonical modality name.
        argument: Name of the argument, for messages.

    Raises:
        CheckpointError: A mapping without an entry for ``modality``.
        ModalityError: A mapping key that is no modality.
    """
    if not isinstance(weights, Mapping):
        return weights
    given = {get_modality(k).name: v for k, v in weights.items()}
    if modality not in given:
        raise CheckpointError(
            f"{argument} has no entry for {modality}: add {modality!r}: 'hub' or a file ('random' for "
            f"random weights)"
        )
    return given[modality]


def seed_of(name: str) -> int:
    """Return the random-initialisation seed of an artefact: ``zlib.crc32`` of its name (module docstring)."""
    return zlib.crc32(name.encode())


@contextmanager
def seeded(name: str) -> Iterator[None]:
    """Run the block on the CPU generator seeded from ``name``, restoring the caller's state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed_of(name))
        yield
