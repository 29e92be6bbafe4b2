"""Whole-scene generation from GeoTIFFs: windowed reads, blended tiles, resumable strip files, atomic outputs.

:func:`generate_scene` streams a scene of any size through the tiling engine (:mod:`.tiling`). Each finished
strip of rows is written as a small GeoTIFF into a work folder next to the outputs, together with the blending
state that the next row of tiles needs and a ``progress.json``; a run that is interrupted resumes from the
first unfinished row of tiles (randomness is seeded per tile, so the result is the same as an uninterrupted
run). When every row is done, the strips are copied into the final GeoTIFFs, each made visible atomically,
and the work folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window

from terramind.core.errors import InputError, ShapeError
from terramind.core.files import atomic_path
from terramind.data import GeoRef, RasterWriter, open_georef, read_window, write_raster
from terramind.data.geotiff import band_positions
from terramind.generation.generate import Generator
from terramind.generation.options import GenerationOptions
from terramind.generation.tiling import Carry, TileFn, TileLayout, run_tiles
from terramind.modalities import get_modality, stats

FLOAT_NODATA = -9999.0  # written where an input was nodata; class maps use class 0 ("no data")
WORK_DIR = ".terramind-partial"
PROGRESS = "progress.json"
CARRY = "carry.npz"


@dataclass(frozen=True)
class SceneOutput:
    """One output GeoTIFF of a scene.

    Attributes:
        modality: Canonical modality name.
        path: Final GeoTIFF path.
        channels: Channels the tile function returns for it (LULC: 10 logits, blended before argmax).
        dtype: Output data type.
        nodata: Value written where inputs were invalid.
        colormap: Colour table of a class map.
        band_names: Band descriptions.
    """

    modality: str
    path: Path
    channels: int
    dtype: str
    nodata: float
    colormap: Mapping[int, tuple[int, int, int]] | None
    band_names: tuple[str, ...]

    @property
    def categorical(self) -> bool:
        """True for class maps (written as uint8 argmax of the blended logits)."""
        return get_modality(self.modality).classes is not None

    @classmethod
    def for_modality(cls, modality: str, path: Path) -> SceneOutput:
        """Build the output record of a modality in the catalog's conventions."""
        spec = get_modality(modality)
        if spec.classes is not None:
            colours = {c.id: _rgb(c.colour) for c in spec.classes}
            return cls(spec.name, path, len(spec.classes), "uint8", 0, colours, spec.bands)
        return cls(spec.name, path, spec.num_bands, "float32", FLOAT_NODATA, None, spec.bands)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def check_scene_inputs(inputs: Mapping[str, Path]) -> GeoRef:
    """Check input files against their modalities and each other; return the shared grid.

    Raises:
        InputError: A missing/unreadable file, or inputs on different grids (naming what differs).
        ShapeError: A band count that differs from the modality's.
    """
    first: tuple[str, GeoRef] | None = None
    for name, path in inputs.items():
        spec = get_modality(name)
        georef = open_georef(path)
        expected = 1 if spec.classes is not None else spec.num_bands
        if georef.count != expected:
            raise ShapeError(
                f"{spec.name} input {str(path)!r} has {georef.count} band(s); expected {expected}: "
                f"{', '.join(spec.bands)}"
            )
        if first is None:
            first = (spec.name, georef)
            continue
        diff = first[1].same_grid(georef)
        if diff is not None:
            raise InputError(
                f"{spec.name} input {str(path)!r} is not on the grid of the {first[0]} input: {diff}; "
                f"reproject or crop the inputs to one grid (e.g. gdalwarp -tr/-te)"
            )
    if first is None:
        raise InputError("no input files given")
    return first[1]


class RasterSource:
    """Rows of one or several co-registered input GeoTIFFs, with their validity.

    A pixel is valid when it is finite and differs from its file's nodata value in every band of every input.
    """

    def __init__(self, inputs: Mapping[str, Path]) -> None:
        self.inputs = {get_modality(k).name: Path(v) for k, v in inputs.items()}
        self.georef = check_scene_inputs(self.inputs)
        self.nodata = {k: open_georef(p).nodata for k, p in self.inputs.items()}
        # the modality's bands by the files' band names when they have them (reordered), else by position
        self.bands = {k: band_positions(open_georef(p), p, k) for k, p in self.inputs.items()}

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Read rows ``[top, top + height)`` of every input as float32, with the combined valid mask."""
        window = Window(0, top, self.georef.width, height)
        valid = np.ones((height, self.georef.width), dtype=bool)
        data = {}
        for name, path in self.inputs.items():
            x = read_window(path, window, band_indexes=self.bands[name], modality=name).astype(np.float32)
            ok = np.isfinite(x)
            if self.nodata[name] is not None:
                ok &= x != np.float32(self.nodata[name])
            valid &= ok.all(axis=0)
            data[name] = x
        return data, valid


def fill_values(
    modalities: Sequence[str], offset: Mapping[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Return what invalid pixels become before a tile reaches the model: the modality's mean.

    A mean standardizes to 0, the least informative value; class maps get class 0 ("no data").
    """
    out = {}
    for name in modalities:
        spec = get_modality(name)
        if spec.classes is not None:
            out[spec.name] = np.zeros(1)
        else:
            out[spec.name] = stats(spec, offset=(offset or {}).get(spec.name, 0.0))[0]
    return out


class StripStore:
    """Finished strips as GeoTIFFs in a work folder, then copied into the final outputs."""

    def __init__(self, work: Path, outputs: Sequence[SceneOutput], georef: GeoRef) -> None:
        self.work = work
        self.outputs = list(outputs)
        self.georef = georef

    def strip_path(self, modality: str, row: int) -> Path:
        """Where the strip of tile row ``row`` of one output lives."""
        return self.work / f"{modality}_{row:05d}.tif"

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        """Convert blended values to the output type and write them as strip GeoTIFFs."""
        georef = self.georef.window(Window(0, top, self.georef.width, valid.shape[0]))
        for out in self.outputs:
            values = data[out.modality]
            covered = valid & np.isfinite(values).all(axis=0)
            if out.categorical:
                array = np.where(covered, np.nan_to_num(values).argmax(axis=0), out.nodata)[None]
            else:
                array = np.where(covered[None], values, out.nodata)
            write_raster(
                self.strip_path(out.modality, row), array.astype(out.dtype), georef,
                dtype=out.dtype, nodata=out.nodata, overwrite=True,
            )  # fmt: skip

    def finalize(self, rows: Sequence[tuple[int, int, int]], overwrite: bool) -> list[Path]:
        """Copy all strips ``(row, top, height)`` into each final GeoTIFF (atomic per file)."""
        written = []
        for out in self.outputs:
            with RasterWriter(
                out.path, self.georef, out.channels if not out.categorical else 1, out.dtype,
                nodata=out.nodata, colormap=out.colormap, band_names=out.band_names, overwrite=overwrite,
            ) as writer:  # fmt: skip
                for row, top, height in rows:
                    window = Window(0, 0, self.georef.width, height)
                    strip = read_window(self.strip_path(out.modality, row), window)
                    writer.write(strip, Window(0, top, self.georef.width, height))
            written.append(out.path)
        return written


def _save_state(work: Path, fingerprint: str, next_row: int, carry: Carry | None) -> None:
    """Record that every tile row before ``next_row`` is done (carry first, then the progress file)."""
    if carry is not None:
        arrays = {f"sum_{k}": v for k, v in carry.sums.items()}
        with atomic_path(work / CARRY) as tmp, open(tmp, "wb") as f:
            arrays.update(top=np.asarray(carry.top), weights=carry.weights, valid=carry.valid)
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
    with atomic_path(work / PROGRESS) as tmp:
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "next_row": next_row}))


def _load_state(work: Path, fingerprint: str, overwrite: bool) -> tuple[int, Carry | None]:
    """Where a previous run of the same job stopped; a stale work folder is refused or (overwrite) removed."""
    progress = work / PROGRESS
    if not progress.exists():
        return 0, None
    state = json.loads(progress.read_text())
    if state.get("fingerprint") != fingerprint:
        if not overwrite:
            raise InputError(
                f"{str(work)!r} holds a partial run with other inputs or settings: remove it, or pass "
                f"--overwrite to start over"
            )
        shutil.rmtree(work)
        work.mkdir()
        return 0, None
    next_row = int(state["next_row"])
    if next_row == 0 or not (work / CARRY).exists():
        return next_row, None
    with np.load(work / CARRY) as z:
        sums = {k[4:]: z[k] for k in z.files if k.startswith("sum_")}
        return next_row, Carry(int(z["top"]), sums, z["weights"], z["valid"])


def fingerprint(
    inputs: Mapping[str, Path], outputs: Sequence[SceneOutput], settings: Mapping[str, object]
) -> str:
    """Hash everything that determines the result, so a resumed run never mixes two jobs."""
    files = {
        k: [str(Path(p).resolve()), Path(p).stat().st_size, Path(p).stat().st_mtime_ns]
        for k, p in inputs.items()
    }
    text = json.dumps(
        {"inputs": files, "outputs": [o.modality for o in outputs], **settings}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


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
    overwrite: bool = False,
    progress: Callable[[int, int], Callable[[int], None]] | None = None,
) -> list[Path]:
    """Generate whole-scene outputs tile by tile, resumably.

    Args:
        fn: Tile function returning, per output modality, ``(B, channels, T, T)`` (LULC: logits).
        inputs: Input GeoTIFF per modality (same grid).
        outputs: The GeoTIFFs to write.
        work_dir: Folder for strips and progress (created; removed after success).
        tile: Tile side in pixels.
        overlap: Overlap of neighbouring tiles in pixels.
        batch: Tiles per call of ``fn``.
        fill: Per input, values put into invalid pixels.
        settings: Everything else that determines the result (model, seed, steps...), for the resume check.
        overwrite: Replace existing outputs and a stale work folder.
        progress: Factory ``(total tiles, tiles already done) -> update(n)`` for a progress display.

    Returns:
        The written output paths.
    """
    for out in outputs:
        if out.path.exists() and not overwrite:
            raise InputError(f"output file {str(out.path)!r} exists: pass --overwrite to replace it")
    source = RasterSource(inputs)
    georef = source.georef
    layout = TileLayout(georef.height, georef.width, tile, overlap)
    key = fingerprint(inputs, outputs, {"tile": tile, "overlap": overlap, **(settings or {})})
    work_dir.mkdir(parents=True, exist_ok=True)
    start_row, carry = _load_state(work_dir, key, overwrite)
    store = StripStore(work_dir, outputs, georef)
    update = progress(layout.num_tiles, start_row * len(layout.cols)) if progress else None
    run_tiles(
        layout, source, fn, store, channels={o.modality: o.channels for o in outputs}, fill=fill,
        batch=batch, start_row=start_row, carry=carry, progress=update,
        on_row=lambda row, state: _save_state(work_dir, key, row + 1, state),
    )  # fmt: skip
    rows = [
        (r, layout.strip_start(r), layout.strip_end(r) - layout.strip_start(r))
        for r in range(len(layout.rows))
    ]
    written = store.finalize(rows, overwrite)
    shutil.rmtree(work_dir)
    return written


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
