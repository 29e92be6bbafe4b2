"""Batch jobs: what a worker does with ONE scene, through the same functions the single-scene commands use.

A job is a frozen record of a command's options with two steps: :meth:`~Job.load` builds the model (once per
worker and set of input modalities; the worker keeps it) and :meth:`~Job.run` writes one scene's outputs into
its folder through the scene engine, so each scene streams in bounded memory, resumes after an interruption
(rerun: the engine's resume state in the scene's folder) and is written atomically.

Every job also takes the keyword-only tiling fields of :class:`TiledJob` (``tile``, ``overlap``,
``batch_size``, ``device``).

========================  =========================================  ======================================
kind                      one scene                                  writes (in ``OUTPUT/<scene>/``)
========================  =========================================  ======================================
``generate``              ``generation.scene.generate_scene``        ``<MOD>.tif`` per ``--to``
``embed``                 ``evaluate.embeddings.embed_scene``        ``embedding.tif`` and/or ``.parquet``
``zeroshot-water``        ``evaluate.zeroshot.map_water``            ``water.tif``
``predict``               ``finetune.scene.predict_scene``           ``prediction.tif``
========================  =========================================  ======================================
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from terramind.batch.manifest import Scene
from terramind.data.geotiff import as_path
from terramind.generation.options import GenerationOptions
from terramind.scene.run import DenseTask


@dataclass(frozen=True)
class SceneDone:
    """What a job made of one scene.

    Attributes:
        outputs: The files written.
        tiles: Tiles of the scene (all of them, also when part of a run was resumed).
        seconds: Wall time of the scene on the worker (model loading excluded).
    """

    outputs: tuple[str, ...]
    tiles: int
    seconds: float


class Job(Protocol):
    """One kind of batch work (see the module table)."""

    kind: str

    def check(self, scene: Scene) -> None:
        """Refuse a scene this job cannot run (its modalities), before any scene starts."""
        ...

    def settings(self) -> dict[str, Any]:
        """Everything that determines the outputs (recorded in the results table)."""
        ...

    def load(self, modalities: Sequence[str]) -> Any:
        """Build the model for scenes with these input modalities (called once per worker and set)."""
        ...

    def run(self, loaded: Any, scene: Scene, folder: Path, *, overwrite: bool = False) -> SceneDone:
        """Write one scene's outputs into ``folder`` (created), resuming an interrupted run there.

        ``overwrite`` replaces existing outputs and a stale resume state.
        """
        ...


def _inputs(scene: Scene) -> dict[str, Path]:
    return {mod: as_path(source) for mod, source in scene.inputs.items()}


def _note_random(weights: str | None) -> None:
    if weights in (None, "random"):
        print("terramind: note: running with RANDOM (untrained) weights", flush=True)


@dataclass(frozen=True, kw_only=True)
class TiledJob:
    """What every job shares: how a scene is tiled and run, and its recorded settings.

    The fields are keyword-only, so each job's own fields keep their positions.

    Attributes:
        tile: Tile side in pixels.
        overlap: Tile overlap in pixels.
        batch_size: Tiles per model call.
        device: Torch device of the worker.
    """

    tile: int = 224
    overlap: int = 32
    batch_size: int = 4
    device: str = "cpu"

    def settings(self) -> dict[str, Any]:
        """Return the job's options (its fields, the loader excepted, and ``job``: its kind)."""
        fields = asdict(self)
        out = {"job": fields["kind"]}
        for key, value in fields.items():
            if not callable(value):
                out[key] = value.as_dict() if isinstance(value, GenerationOptions) else value
        return out

    def _done(self, outputs: Sequence[Path], grid: Any, start: float) -> SceneDone:
        """Return the record of a scene (``grid``: its scanned georeference) written since ``start``."""
        from terramind.scene import TileLayout

        tiles = TileLayout(grid.height, grid.width, self.tile, self.overlap).num_tiles
        return SceneDone(tuple(map(str, outputs)), tiles, time.perf_counter() - start)


@dataclass(frozen=True)
class GenerateJob(TiledJob):
    """``generate``: the outputs ``to`` of every scene, as ``terramind generate`` writes them.

    Attributes:
        to: Output modalities, in order.
        model: Model name.
        weights: ``hub``, ``random`` or a path (as ``--weights``).
        tokenizer_weights: As ``--tokenizer-weights`` (None: as ``weights``).
        options: Decoding options.
        seed: Seed of all sampling.
        offset: Per modality, the DN offset (STAC items imply theirs where not given here).
    """

    to: tuple[str, ...]
    model: str = "terramind_v1_base"
    weights: str = "hub"
    tokenizer_weights: str | None = None
    options: GenerationOptions = field(default_factory=GenerationOptions)
    seed: int = 0
    offset: Mapping[str, float] = field(default_factory=dict)
    kind: str = "generate"

    def check(self, scene: Scene) -> None:
        """Refuse inputs or outputs that are not images the generator takes."""
        from terramind.core.errors import ModalityError
        from terramind.generation.generate import check_modalities
        from terramind.modalities import get_modality

        check_modalities(list(scene.inputs), list(self.to))
        for name in [*scene.inputs, *self.to]:
            if not get_modality(name).is_image:
                raise ModalityError(f"{scene.row}: {name} is not an image: batch generate takes images only")

    def load(self, modalities: Sequence[str]) -> Any:
        """Build the generator (decoders resident: a worker runs many tiles); return it with its digest."""
        from terramind.api.generation import create_generator
        from terramind.generation.scene import generator_digest

        tok = self.weights if self.tokenizer_weights is None else self.tokenizer_weights
        _note_random(self.weights)
        generator = create_generator(
            self.model, inputs=list(modalities), outputs=list(self.to),
            weights=_library(self.weights), tokenizer_weights=_library(tok),
        )  # fmt: skip
        generator.to(self.device)
        generator.keep_loaded()  # before the digest, which would otherwise read every decoder once more
        return generator, generator_digest(generator)

    def run(self, loaded: Any, scene: Scene, folder: Path, *, overwrite: bool = False) -> SceneDone:
        """Generate the scene's outputs into ``folder``."""
        from terramind.core.files import output_folder
        from terramind.generation.scene import generate_scene, generator_tile_fn
        from terramind.scene import WORK_DIR, SceneOutput, fill_values, scan_scene
        from terramind.scene.offsets import resolve_offsets

        generator, digest = loaded
        start, inputs = time.perf_counter(), _inputs(scene)
        offset = resolve_offsets(inputs, self.offset)
        grid = scan_scene(inputs)  # a bad block anywhere fails now, before any tile
        outputs = [SceneOutput.for_modality(n, folder / f"{n}.tif") for n in self.to]
        fn = generator_tile_fn(generator, outputs, self.options, seed=self.seed, offset=offset)
        settings = {**self.settings(), "offset": offset}
        with output_folder(folder):
            written = generate_scene(
                fn, inputs, outputs, work_dir=folder / WORK_DIR, tile=self.tile, overlap=self.overlap,
                batch=self.batch_size, fill=fill_values(list(inputs), offset), settings=settings,
                weights=digest, overwrite=overwrite, lock_dir=folder,
            )  # fmt: skip
        return self._done(written, grid, start)


@dataclass(frozen=True)
class EmbedJob(TiledJob):
    """``embed``: the embedding product of every scene, as ``terramind embed --scene`` writes it.

    Attributes:
        model: Model name.
        weights: ``hub``, ``random`` or a path.
        formats: ``cog`` and/or ``parquet``.
        pool: Patches per cell side.
        layer: Encoder block read.
        offset: Per modality, the DN offset.
        precision: ``auto``, ``fp32`` or ``bf16`` of the encoder (as ``--precision``).
    """

    model: str = "terramind_v1_base"
    weights: str = "hub"
    formats: tuple[str, ...] = ("cog",)
    pool: int = 1
    layer: int = -1
    offset: Mapping[str, float] = field(default_factory=dict)
    precision: str = "auto"
    kind: str = "embed"

    def check(self, scene: Scene) -> None:
        """Embedding products take image inputs."""
        from terramind.core.errors import ModalityError
        from terramind.modalities import get_modality

        for name in scene.inputs:
            if get_modality(name).classes is not None:
                raise ModalityError(f"{scene.row}: {name} is a class map: embedding products take images")

    def load(self, modalities: Sequence[str]) -> Any:
        """Build the backbone over these modalities; return it with its weights digest."""
        from terramind.api.models import create_backbone
        from terramind.checkpoints.digest import state_digest

        _note_random(self.weights)
        backbone = create_backbone(self.model, list(modalities), weights=_library(self.weights))
        return backbone.to(self.device), state_digest({"backbone": backbone})

    def run(self, loaded: Any, scene: Scene, folder: Path, *, overwrite: bool = False) -> SceneDone:
        """Write the scene's embedding product into ``folder``."""
        from terramind.core.files import output_folder
        from terramind.evaluate.embeddings import EMBEDDING, embed_scene
        from terramind.scene import scan_scene
        from terramind.scene.offsets import resolve_offsets

        backbone, digest = loaded
        start, inputs = time.perf_counter(), _inputs(scene)
        scan_scene(inputs)
        offset = resolve_offsets(inputs, self.offset)
        with output_folder(folder):
            written, tiles = embed_scene(
                backbone, inputs, folder / f"{EMBEDDING}.tif", formats=self.formats, pool=self.pool,
                layer=self.layer, tile=self.tile, overlap=self.overlap, batch=self.batch_size,
                offset=offset, settings=self.settings(), weights=digest, overwrite=overwrite,
                lock_dir=folder, precision=self.precision,
            )  # fmt: skip
        return SceneDone(tuple(map(str, written)), tiles, time.perf_counter() - start)


@dataclass(frozen=True)
class WaterJob(TiledJob):
    """``zeroshot-water``: the water mask of every scene, as ``terramind zeroshot water`` writes it.

    Attributes:
        model: Model name.
        weights: ``hub``, ``random`` or a path.
        tokenizer_weights: As ``--tokenizer-weights`` (None: as ``weights``).
        flooded_vegetation: Count flooded vegetation as water.
        seed: Seed of all sampling.
    """

    model: str = "terramind_v1_base"
    weights: str = "hub"
    tokenizer_weights: str | None = None
    flooded_vegetation: bool = False
    seed: int = 0
    kind: str = "zeroshot-water"

    def check(self, scene: Scene) -> None:
        """Refuse inputs the generator cannot turn into LULC."""
        from terramind.generation.generate import check_modalities

        check_modalities(list(scene.inputs), ["LULC"])

    def load(self, modalities: Sequence[str]) -> Any:
        """Build the LULC generator; return it with its weights digest."""
        return GenerateJob(
            ("LULC",), self.model, self.weights, self.tokenizer_weights, device=self.device
        ).load(modalities)

    def run(self, loaded: Any, scene: Scene, folder: Path, *, overwrite: bool = False) -> SceneDone:
        """Write the scene's water mask into ``folder``."""
        from terramind.core.files import output_folder
        from terramind.evaluate.zeroshot import map_water
        from terramind.generation.scene import generator_tile_fn
        from terramind.scene import SceneOutput, scan_scene
        from terramind.scene.offsets import resolve_offsets

        generator, digest = loaded
        start, inputs = time.perf_counter(), _inputs(scene)
        grid = scan_scene(inputs)
        offset = resolve_offsets(inputs)
        out = folder / "water.tif"
        fn = generator_tile_fn(
            generator, [SceneOutput.for_modality("LULC", out)], seed=self.seed, offset=offset
        )
        with output_folder(folder):
            map_water(
                fn, inputs, out, flooded_vegetation=self.flooded_vegetation, tile=self.tile,
                overlap=self.overlap, batch=self.batch_size, settings=self.settings(), weights=digest,
                overwrite=overwrite, offset=offset,
            )  # fmt: skip
        return self._done([out], grid, start)


@dataclass(frozen=True)
class PredictJob(TiledJob):
    """``predict``: a fine-tuned model's map of every scene, as ``terramind finetune scene`` writes it.

    Attributes:
        config: The task's config file(s).
        ckpt_path: The checkpoint written by ``fit``.
        loader: Builds the task from ``(config, ckpt_path)`` (a module-level function: it is sent to the
            workers by reference).
        precision: ``auto``, ``fp32`` or ``bf16`` of the model (as ``--precision``).
    """

    config: tuple[str, ...]
    ckpt_path: str
    loader: Callable[[Sequence[str], str], DenseTask]
    precision: str = "auto"
    kind: str = "predict"

    def check(self, scene: Scene) -> None:
        """Accept every scene: its inputs are checked against the model's when it is loaded."""

    def load(self, modalities: Sequence[str]) -> Any:
        """Build the fine-tuned task on the worker's device."""
        task = self.loader(self.config, self.ckpt_path)
        task.model.to(self.device)
        return task

    def run(self, loaded: Any, scene: Scene, folder: Path, *, overwrite: bool = False) -> SceneDone:
        """Write the scene's prediction into ``folder``."""
        from terramind.core.files import output_folder
        from terramind.finetune.scene import predict_scene
        from terramind.scene import scan_scene

        start, inputs = time.perf_counter(), _inputs(scene)
        grid = scan_scene(inputs)
        out = folder / "prediction.tif"
        with output_folder(folder):
            predict_scene(
                loaded.model, inputs, loaded.specs, out, out_channels=loaded.out_channels, kind=loaded.kind,
                tile=self.tile, overlap=self.overlap, batch=self.batch_size, overwrite=overwrite,
                precision=self.precision,
            )  # fmt: skip
        return self._done([out], grid, start)


def _library(value: str | None) -> str | None:
    """Return the library's spelling of a ``--weights`` value (None: random initialisation)."""
    return None if value in (None, "random") else value


JOBS = ("generate", "embed", "zeroshot-water", "predict")
