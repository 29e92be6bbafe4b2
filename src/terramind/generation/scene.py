"""Generation as a whole-scene job: the generator's tile function, its weights digest, GeoTIFF in and out.

The scene engine (:mod:`terramind.scene`) does the work; this module only makes the generator a tile function
(:func:`generator_tile_fn`), digests its weights for the resume key (:func:`generator_digest`) and wires
GeoTIFF inputs and outputs to :func:`terramind.scene.run_scene` (:func:`generate_scene`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from terramind.checkpoints.digest import state_digest
from terramind.generation.generate import Generator
from terramind.generation.options import GenerationOptions
from terramind.scene import (
    DEFAULT_RESAMPLING,
    GeoTiffSink,
    SceneOutput,
    TileFn,
    TileLayout,
    run_scene,
    scene_source,
)
from terramind.scene.state import CHECKPOINT_SECONDS


def generate_scene(
    fn: TileFn,
    inputs: Mapping[str, Path],
    outputs: Sequence[SceneOutput],
    *,
    work_dir: Path,
    tile: int = 224,
    overlap: int = 32,
    batch: int = 4,
    fill: Mapping[str, np.ndarray],
    settings: Mapping[str, object] | None = None,
    weights: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
    lock_dir: Path | None = None,
    checkpoint_seconds: float = CHECKPOINT_SECONDS,
    grid: str | None = None,
    resampling: str = DEFAULT_RESAMPLING,
) -> list[Path]:
    """Generate whole-scene outputs tile by tile, resumably.

    Args:
        fn: Tile function returning, per output modality, ``(B, channels, T, T)`` (LULC: logits).
        inputs: Input per modality, in any form :func:`terramind.scene.scene_source` reads.
        outputs: The GeoTIFFs to write.
        work_dir: Folder for strips and progress (created; removed after success).
        tile: Tile side in pixels.
        overlap: Overlap of neighbouring tiles in pixels.
        batch: Tiles per call of ``fn``.
        fill: Per input, values put into invalid pixels.
        settings: Everything else that determines the result (model, seed, steps...), for the resume check.
        weights: Digest of the weights behind ``fn`` (:func:`generator_digest`), for the resume check.
        overwrite: Replace existing outputs and a stale work folder.
        progress: Factory ``(total tiles, tiles already done) -> update(n)`` for a progress display.
        lock_dir: Folder whose writer lock is held during the run (default: the work folder's parent).
        checkpoint_seconds: Within a row, save the tiles done at most this often (0: after every batch).
        grid: The input whose grid the outputs are on (default: the first's; others are warped onto it).
        resampling: Resampling of continuous inputs onto the grid (class maps: nearest).

    Returns:
        The written output paths.

    Raises:
        OutputError: An output that exists without ``overwrite``, or a folder that cannot be written.
        BusyError: Another run is writing into the same folder.
        ResumeError: The work folder holds an interrupted run with other weights, inputs or options.
        DiskFullError: The disk filled up (the run can be resumed once space is freed).
    """
    source = scene_source(inputs, grid=grid, resampling=resampling)  # any input form, warped onto one grid
    layout = TileLayout(source.georef.height, source.georef.width, tile, overlap)
    return run_scene(
        fn, source, [GeoTiffSink(outputs)], layout, work_dir, fill=fill, batch=batch, settings=settings,
        weights=weights, overwrite=overwrite, progress=progress, lock_dir=lock_dir,
        checkpoint_seconds=checkpoint_seconds,
    )  # fmt: skip


def generator_digest(generator: Generator) -> str:
    """Digest of the weights a generator actually uses: its model and every tokenizer's state dict.

    Tokenizers loaded on demand are loaded for this (one at a time; the last one stays held for the run).
    A duck-typed generator without a ``model`` (a test double) is digested by its type.
    """
    modules: dict[str, Any] = {"model": getattr(generator, "model", generator)}
    resident, loaders = getattr(generator, "tokenizers", {}), getattr(generator, "loaders", {})
    for name in sorted({*resident, *loaders}):
        modules[f"tokenizer.{name}"] = generator._tokenizer(name)  # same package: the on-demand loader
    return state_digest(modules)


def generator_tile_fn(
    generator: Generator,
    outputs: Sequence[SceneOutput],
    options: GenerationOptions | None = None,
    *,
    seed: int = 0,
    offset: Mapping[str, float] | None = None,
    keep_decoders: bool = False,
) -> TileFn:
    """Wrap a :class:`Generator` as a tile function (categorical outputs as logits, for blending).

    The caller decides whether the on-demand decoders stay resident: with ``keep_decoders=True`` the
    generator's :meth:`~Generator.keep_loaded` is called before the first tile batch, so the decoders are
    read once for the whole scene instead of once per batch. Pass it when the scene has more than one tile
    batch; a scene of one batch (a single tile) is cheaper without it, as it keeps the one-decoder-at-a-time
    peak memory.

    Args:
        generator: The generator (inputs in physical units, as read from the files).
        outputs: The scene outputs, in the generator's output order.
        options: Decoding options (default: :class:`GenerationOptions` defaults).
        seed: Seed of all sampling; tiles are seeded by their index, so results do not depend on batching.
        offset: Per modality, a value added to the mean (S2 products with the +1000 DN offset).
        keep_decoders: Make the decoders resident before the first batch (see above).
    """
    opts = options or GenerationOptions()
    loaded = not keep_decoders

    def fn(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
        nonlocal loaded
        if not loaded:
            generator.keep_loaded()
            loaded = True
        batch = {name: torch.from_numpy(np.ascontiguousarray(x)) for name, x in tiles.items()}
        result = generator.generate(
            batch, options=opts, seed=seed, offset=offset, sample_indices=indices, return_logits=True
        )
        picked = {
            o.modality: result[f"{o.modality}_logits" if o.categorical else o.modality] for o in outputs
        }
        return {name: t.float().cpu().numpy() for name, t in picked.items()}

    return fn
