"""Tile embeddings from a backbone: mean-pooled (one vector per tile) or per token, written with names.

The backbone is any module mapping ``{modality: (B, C, H, W)}`` to a list of per-block ``(B, N, D)``
tensors (e.g. :class:`terramind.finetune.Backbone`), passed in by the caller: this layer does not build
models. Outputs are ``.npy`` (the array, plus ``<file>.names.txt`` with one tile name per row) or
``.parquet`` (columns ``file`` and ``embedding``; needs pyarrow).

Every encoder call runs in the requested ``precision`` (:func:`terramind.build.precision.autocast`, the one
autocast context of inference): ``"auto"`` (the default) is bf16 where the hardware multiplies bf16 natively,
``"fp32"`` the exact path. Tokens are cast to float32 before pooling, so means are float32 sums either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from terramind.build.precision import autocast, resolve_precision
from terramind.core.errors import InputError
from terramind.core.files import atomic_path, check_output_path
from terramind.core.optional import require
from terramind.data.padding import pad_to_multiple, reflect_pad
from terramind.data.tiles import GeoTiffDataset, ModalityInput

Pooling = Literal["mean", "tokens"]
SUFFIXES = (".npy", ".parquet")


def fit_inputs(
    inputs: Mapping[str, torch.Tensor], *, resize: int | None = None, categorical: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Bring a batch ``{modality: (B, C, H, W)}`` of any size to a size the model takes.

    Two protocols: by default sides that are not multiples of 16 are mirror-padded at the bottom and right
    (:func:`terramind.data.padding.pad_to_multiple`, the way ``generate`` handles any size); with
    ``resize`` every input is resampled to ``resize x resize`` (bilinear for values, nearest for the class
    ids of ``categorical`` modalities), the protocol that upsamples small patches (e.g. 120 px BigEarthNet
    or 64 px EuroSAT) to the 224 px the model was pretrained on.

    Args:
        inputs: Standardized inputs by modality (class ids for categorical ones).
        resize: Target side in pixels (a multiple of 16), or None to pad.
        categorical: Modalities holding class ids.

    Returns:
        The inputs, padded or resized, on the device and with the dtype they came with.
    """
    classes = set(categorical)
    out = {}
    for name, x in inputs.items():
        if resize is not None:
            mode = "nearest" if name in classes else "bilinear"
            extra = {} if mode == "nearest" else {"align_corners": False}
            y = torch.nn.functional.interpolate(x.float(), size=(resize, resize), mode=mode, **extra)
            out[name] = y.to(x.dtype)
        else:
            padded, _ = pad_to_multiple(x.cpu().numpy())
            out[name] = torch.from_numpy(padded).to(x.device)
    return out


@torch.no_grad()
def embed_batches(
    backbone: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    pooling: Pooling = "mean",
    layer: int = -1,
    precision: str = "auto",
) -> np.ndarray:
    """Embed batches of standardized inputs.

    Args:
        backbone: Module returning one ``(B, N, D)`` tensor per block.
        batches: ``{modality: (B, C, H, W)}`` dicts.
        pooling: ``mean`` over tokens -> ``(n, D)``; ``tokens`` keeps them -> ``(n, N, D)``.
        layer: Which block's output (default the last, which is normalised).
        precision: ``auto``, ``fp32`` or ``bf16`` (:mod:`terramind.build.precision`).

    Returns:
        Float32 array of all samples in order.
    """
    was_training = backbone.training
    backbone.eval()
    out = []
    for inputs in batches:
        with autocast(precision, next(iter(inputs.values())).device):
            tokens = backbone(dict(inputs))[layer].float()  # (B, N, D); a no-op in fp32
        out.append((tokens.mean(dim=1) if pooling == "mean" else tokens).cpu().numpy())
    backbone.train(was_training)
    if not out:
        raise InputError("no samples to embed")
    return np.concatenate(out)


def embed_files(
    backbone: nn.Module,
    files: Sequence[Mapping[str, Path]],
    inputs: Sequence[ModalityInput],
    *,
    pooling: Pooling = "mean",
    layer: int = -1,
    batch_size: int = 8,
    precision: str = "auto",
) -> np.ndarray:
    """Embed GeoTIFF tiles (one file per modality and tile), standardised as for fine-tuning.

    Args:
        backbone: Module returning per-block tokens.
        files: Per tile, modality -> file.
        inputs: How each modality is read (from :func:`terramind.data.tiles.modality_inputs`).
        pooling: ``mean`` or ``tokens``.
        layer: Which block's output.
        batch_size: Tiles per forward pass.
        precision: ``auto``, ``fp32`` or ``bf16``.

    Returns:
        ``(n, D)`` or ``(n, N, D)`` float32 array in the order of ``files``.
    """
    loader: DataLoader[dict[str, Any]] = DataLoader(GeoTiffDataset(files, inputs), batch_size=batch_size)
    batches = (b["inputs"] for b in loader)
    return embed_batches(backbone, batches, pooling=pooling, layer=layer, precision=precision)


def write_embeddings(
    path: str | Path, names: Sequence[str], embeddings: np.ndarray, overwrite: bool = True
) -> Path:
    """Write embeddings with their tile names (``.npy`` + ``.names.txt`` sidecar, or ``.parquet``).

    Raises:
        InputError: For another suffix, or a name count that differs from the rows.
    """
    out = check_output_path(path, overwrite=overwrite)
    if len(names) != len(embeddings):
        raise InputError(f"{len(names)} names for {len(embeddings)} embeddings")
    if out.suffix == ".npy":
        with atomic_path(out, overwrite=overwrite, verify=_npy_check(embeddings.shape)) as tmp:
            np.save(tmp, embeddings)
        with atomic_path(_names_path(out), overwrite=overwrite) as tmp:
            tmp.write_text("".join(f"{n}\n" for n in names))
        return out
    if out.suffix == ".parquet":
        pa = require("pyarrow", "embed")
        pq = require("pyarrow.parquet", "embed")
        table = pa.table({"file": list(names), "embedding": [row.reshape(-1).tolist() for row in embeddings]})
        table = table.replace_schema_metadata({"shape": ",".join(map(str, embeddings.shape[1:]))})
        with atomic_path(out, overwrite=overwrite, verify=pq.read_metadata) as tmp:  # the footer is last
            pq.write_table(table, tmp)
        return out
    raise InputError(f"embedding output must end in {' or '.join(SUFFIXES)}, got {out.name!r}")


def _npy_check(shape: tuple[int, ...]) -> Callable[[Path], None]:
    """Verify a written ``.npy``: memory-mapping checks its length against the header, then its shape."""

    def check(path: Path) -> None:
        found = np.load(path, mmap_mode="r").shape
        if found != shape:
            raise InputError(f"holds shape {found}, expected {shape}")

    return check


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read what :func:`write_embeddings` wrote: ``(names, embeddings)``.

    Raises:
        InputError: Missing or unreadable file or sidecar, unknown suffix, an array that is not
            ``(n, D)`` or ``(n, N, D)`` of real numbers, or names and rows that differ in number (each
            message names the file).
    """
    src = Path(path)
    if not src.is_file():
        raise InputError(f"embedding file {str(src)!r} does not exist")
    if src.suffix == ".npy":
        names, array = _read_npy(src)
    elif src.suffix == ".parquet":
        names, array = _read_parquet(src)
    else:
        raise InputError(f"embedding file must end in {' or '.join(SUFFIXES)}, got {src.name!r}")
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(
            f"{str(src)!r} holds a {array.dtype} array of shape {array.shape}: embeddings are (tiles, D) or "
            f"(tiles, tokens, D) real numbers, as `terramind embed` writes them"
        )
    if len(names) != len(array):
        raise InputError(
            f"{str(src)!r}: {len(names)} names (in {_names_path(src).name}) for {len(array)} embeddings"
            if src.suffix == ".npy"
            else f"{str(src)!r}: {len(names)} names for {len(array)} embeddings"
        )
    return names, array


def _read_npy(src: Path) -> tuple[list[str], np.ndarray]:
    names_file = _names_path(src)
    if not names_file.is_file():
        raise InputError(f"{str(names_file)!r} (the tile names of {src.name}) is missing")
    try:
        array = np.load(src, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        # numpy's own text may advise loading pickles, which is never right for a file of unknown origin
        raise InputError(
            f"{str(src)!r} is not an embeddings file (a .npy array of numbers, as `terramind embed` writes): "
            "write it again"
        ) from None
    return names_file.read_text().splitlines(), array


def _read_parquet(src: Path) -> tuple[list[str], np.ndarray]:
    pq = require("pyarrow.parquet", "embed")
    try:
        table = pq.read_table(src)
        shape = tuple(int(s) for s in table.schema.metadata[b"shape"].decode().split(","))
        names = table.column("file").to_pylist()
        array = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32).reshape(-1, *shape)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(
            f"{str(src)!r} is not an embedding table as `terramind embed` writes it ({err}): write it again"
        ) from None
    return names, array


def _names_path(path: Path) -> Path:
    return path.with_suffix(".names.txt")


# ---------------------------------------------------------------------------------------------------------
# embedding products: per-patch (or pooled) embeddings of a whole scene, through the scene engine
#
# The engine blends tile outputs at its grid's resolution, so the scene is presented to it on a grid of
# cells (one cell = one 16 px patch, or ``pool`` x ``pool`` patches): :class:`CellSource` reads pixel strips
# and folds each cell's pixels into channels (space-to-depth), the tile function unfolds them, embeds and
# returns one vector per cell. A strip of a 10980 px scene at base size (768 dims) is then 14 x 687 x 768
# float64 (59 MB) instead of 224 x 10980 x 768 (15 GB) at pixel resolution.

EMBEDDING = "embedding"  # the tile-function output (and GeoTIFF band-name prefix) of an embedding product
PRODUCT_SUFFIXES = {"cog": ".tif", "parquet": ".parquet"}


def cell_size(pool: int) -> int:
    """Pixels per side of one cell of an embedding product pooled over ``pool`` x ``pool`` patches."""
    from terramind.modalities.tokens import PATCH_SIZE

    return PATCH_SIZE * pool


class CellSource:
    """A scene source seen on a grid of ``cell`` px cells, each cell's pixels folded into channels.

    Reads ``(C * cell * cell, h, w)`` per input (``c (h p) (w q) -> (c p q) h w``); a cell is valid when every
    pixel in it is. Sides that are not multiples of ``cell`` are mirror-padded (the padding counts as
    valid, as in ``embed`` of tiles of any size).
    """

    def __init__(self, source: Any, cell: int) -> None:
        from dataclasses import replace

        from affine import Affine

        self.source, self.cell = source, cell
        grid = source.georef
        self.georef = replace(
            grid,
            transform=grid.transform @ Affine.scale(cell),
            width=-(-grid.width // cell),
            height=-(-grid.height // cell),
        )

    @property
    def files(self) -> Mapping[str, Path]:
        """The wrapped source's files (the resume key)."""
        files: Mapping[str, Path] = self.source.files
        return files

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Cells of rows ``[top, top + height)`` and their (height, w) validity."""
        from einops import rearrange

        c, full = self.cell, self.source.georef.height
        first, last = top * c, min((top + height) * c, full)
        data, valid = self.source.read_rows(first, last - first)
        pad_h, pad_w = height * c - (last - first), self.georef.width * c - valid.shape[1]
        fold = "c (h p) (w q) -> (c p q) h w"  # (C, h*cell, w*cell) -> (C*cell*cell, h, w)
        cells = np.asarray(rearrange(reflect_pad(valid[None], pad_h, pad_w), fold, p=c, q=c).all(axis=0))
        out = {name: rearrange(reflect_pad(x, pad_h, pad_w), fold, p=c, q=c) for name, x in data.items()}
        return out, cells


def cell_tile_fn(
    backbone: nn.Module,
    cell: int,
    *,
    pool: int = 1,
    layer: int = -1,
    offset: Mapping[str, float] | None = None,
    precision: str = "auto",
) -> Callable[[Mapping[str, np.ndarray], Sequence[int]], dict[str, np.ndarray]]:
    """Tile function of an embedding product: cells in physical units -> one vector per cell.

    Args:
        backbone: Module returning per-block ``(B, N, D)`` tokens (merged over modalities).
        cell: Cell side in pixels (``16 * pool``).
        pool: Patches per cell side; the patch tokens of a cell are averaged.
        layer: Which block's output.
        offset: Per modality, the DN offset added to the mean when standardising.
        precision: ``auto``, ``fp32`` or ``bf16`` of the encoder calls.

    Returns:
        ``(tiles {modality: (B, C * cell * cell, t, t)}, indices) -> {"embedding": (B, D, t, t)}``.
    """
    from einops import rearrange

    from terramind.modalities import standardize

    device = next(backbone.parameters()).device
    backbone.eval()

    @torch.no_grad()
    def fn(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
        inputs = {}
        for name, x in tiles.items():
            pixels = rearrange(
                x, "b (c p q) h w -> b c (h p) (w q)", p=cell, q=cell
            )  # (B, C, t*cell, t*cell)
            std = standardize(name, pixels, offset=(offset or {}).get(name, 0.0))
            inputs[name] = torch.from_numpy(np.ascontiguousarray(std, dtype=np.float32)).to(device)
        side = next(iter(tiles.values())).shape[-1] * pool  # patches per tile side
        with autocast(precision, device):
            tokens = backbone(inputs)[layer]  # (B, side*side, D)
        grid = rearrange(tokens.float(), "b (h w) d -> b d h w", h=side, w=side)
        return {EMBEDDING: torch.nn.functional.avg_pool2d(grid, pool).cpu().numpy()}  # (B, D, t, t)

    return fn


def embedding_band_names(dims: int) -> tuple[str, ...]:
    """Band descriptions of an embedding raster: ``embedding_000`` ... (one band per dimension)."""
    return tuple(f"{EMBEDDING}_{i:03d}" for i in range(dims))


def cell_names(rows: np.ndarray, cols: np.ndarray) -> list[str]:
    """Names of cells (``r00012_c00034``): the ``file`` column of a GeoParquet product, the labels' keys."""
    return [f"r{r:05d}_c{c:05d}" for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]


def _polygons_wkb(transform: Any, rows: np.ndarray, cols: np.ndarray) -> list[bytes]:
    """Return WKB polygons (little-endian, one ring of 5 points) of grid cells ``(rows, cols)``."""
    corners = [(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]  # (dx, dy) in cells, closed ring
    xs = np.stack(
        [transform.c + (cols + dx) * transform.a + (rows + dy) * transform.b for dx, dy in corners], 1
    )
    ys = np.stack(
        [transform.f + (cols + dx) * transform.d + (rows + dy) * transform.e for dx, dy in corners], 1
    )
    header = np.frombuffer(b"\x01" + (3).to_bytes(4, "little") + (1).to_bytes(4, "little")
                           + (5).to_bytes(4, "little"), np.uint8)  # fmt: skip
    points = np.stack([xs, ys], axis=2).astype("<f8").reshape(len(rows), 10).view(np.uint8)  # (n, 80)
    return [header.tobytes() + p.tobytes() for p in points]


class GeoParquetCellSink:
    """A scene sink writing one GeoParquet row per valid cell.

    Columns: ``file`` (the cell's name), ``row``, ``col``, ``geometry`` (WKB polygon in the scene's CRS) and
    ``embedding``.

    The table carries the ``geo`` metadata of GeoParquet 1.1 (WKB, PROJJSON CRS, bbox) and the ``shape``
    metadata of :func:`write_embeddings`, so :func:`read_embeddings` (and ``terramind fewshot``) read it as
    any embedding table. Strips are kept as small Parquet files in the run's work folder and concatenated on
    publish (atomic, verified). Needs pyarrow and pyproj (extra ``embed``).
    """

    def __init__(self, path: Path, dims: int) -> None:
        self.path, self.dims = Path(path), dims
        self.work = Path()
        self.georef: Any = None

    @property
    def paths(self) -> list[Path]:
        """The GeoParquet file."""
        return [self.path]

    @property
    def channels(self) -> dict[str, int]:
        """Reads the tile function's ``embedding`` output."""
        return {EMBEDDING: self.dims}

    def start(self, work: Path, georef: Any) -> None:
        """Keep strips in ``work`` for cells on ``georef``."""
        self.work, self.georef = work, georef

    def _strip(self, row: int) -> Path:
        return self.work / f"cells_{row:05d}.parquet"

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        """Store the valid, covered cells of rows ``[top, top + h)`` as one Parquet strip."""
        pq = require("pyarrow.parquet", "embed")
        values = data[EMBEDDING]  # (D, h, W)
        keep = valid & np.isfinite(values).all(axis=0)
        r, c = np.nonzero(keep)
        table = self._table(r + top, c, values[:, r, c].T)
        with atomic_path(self._strip(row), overwrite=True, verify=pq.read_metadata) as tmp:
            pq.write_table(table, tmp)

    def _table(self, rows: np.ndarray, cols: np.ndarray, vectors: np.ndarray) -> Any:
        pa = require("pyarrow", "embed")
        flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
        return pa.table({
            "file": pa.array(cell_names(rows, cols), pa.string()),
            "row": pa.array(rows, pa.int32()),
            "col": pa.array(cols, pa.int32()),
            "geometry": pa.array(_polygons_wkb(self.georef.transform, rows, cols), pa.binary()),
            EMBEDDING: pa.FixedSizeListArray.from_arrays(flat, self.dims),
        })  # fmt: skip

    def _metadata(self) -> dict[str, str]:
        import json

        pyproj = require("pyproj", "embed")
        g = self.georef
        xs = [g.transform.c, g.transform.c + g.width * g.transform.a]
        ys = [g.transform.f, g.transform.f + g.height * g.transform.e]
        column = {
            "encoding": "WKB",
            "geometry_types": ["Polygon"],
            "crs": pyproj.CRS.from_wkt(g.crs.to_wkt()).to_json_dict() if g.crs is not None else None,
            "bbox": [min(xs), min(ys), max(xs), max(ys)],
        }
        geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}
        return {"geo": json.dumps(geo), "shape": str(self.dims)}

    def publish(self, rows: Sequence[tuple[int, int, int]], overwrite: bool) -> list[Path]:
        """Concatenate the strips into the GeoParquet file (atomic and verified)."""
        pq = require("pyarrow.parquet", "embed")
        schema = self._table(np.zeros(0, int), np.zeros(0, int), np.zeros((0, self.dims))).schema
        schema = schema.with_metadata(self._metadata())
        with (
            atomic_path(self.path, overwrite=overwrite, verify=pq.read_metadata) as tmp,
            pq.ParquetWriter(tmp, schema) as writer,
        ):
            for row, _, _ in rows:
                writer.write_table(pq.read_table(self._strip(row)).cast(schema))
        return [self.path]


def embedding_outputs(path: Path, dims: int, formats: Sequence[str]) -> list[Any]:
    """Build the sinks of an embedding product: a COG and/or GeoParquet beside ``path``.

    Args:
        path: The product's path; each format takes its suffix (``.tif``, ``.parquet``).
        dims: Embedding dimensions (bands of the COG).
        formats: ``cog`` and/or ``parquet``.
    """
    from terramind.scene import GeoTiffSink, SceneOutput, output_nodata

    sinks: list[Any] = []
    if "cog" in formats:
        # float32: the GDAL of this release has no Float16 (GDAL >= 3.11); values are rounded to float16
        out = SceneOutput(
            EMBEDDING, path.with_suffix(PRODUCT_SUFFIXES["cog"]), EMBEDDING, dims, False, "float32",
            output_nodata("values"), None, embedding_band_names(dims), _to_half,
        )  # fmt: skip
        sinks.append(GeoTiffSink([out]))
    if "parquet" in formats:
        sinks.append(GeoParquetCellSink(path.with_suffix(PRODUCT_SUFFIXES["parquet"]), dims))
    return sinks


def _to_half(values: np.ndarray) -> np.ndarray:
    """Round embeddings to float16 precision (the product's precision; stored as float32)."""
    return values.astype(np.float16).astype(np.float32)


def embed_scene(
    backbone: nn.Module,
    inputs: Mapping[str, Path],
    path: Path,
    *,
    formats: Sequence[str] = ("cog",),
    pool: int = 1,
    layer: int = -1,
    tile: int = 224,
    overlap: int = 32,
    batch: int = 4,
    offset: Mapping[str, float] | None = None,
    settings: Mapping[str, object] | None = None,
    weights: str | None = None,
    overwrite: bool = False,
    progress: Any = None,
    lock_dir: Path | None = None,
    precision: str = "auto",
) -> tuple[list[Path], int]:
    """Write the embedding product of a whole scene: one vector per 16 px patch (or per ``pool`` patches).

    Tiles of ``tile`` px overlapping by ``overlap`` px (both rounded down to whole cells) are embedded and
    their per-cell vectors blended (raised cosine), so cell vectors near tile borders are feathered; the run
    resumes like every scene job (work folder ``.terramind-embed-<stem>`` beside the output).

    Args:
        backbone: Module returning per-block ``(B, N, D)`` tokens, merged over the input modalities.
        inputs: Per modality, any source the scene engine reads (:func:`terramind.scene.scene_source`).
        path: The product (its suffix is replaced per format).
        formats: ``cog`` (float COG, one band per dimension, nodata -9999) and/or ``parquet`` (GeoParquet).
        pool: Patches per cell side (1: one vector per 16 px patch).
        layer: Which encoder block's output.
        tile: Tile side in pixels (a multiple of ``16 * pool``).
        overlap: Overlap of neighbouring tiles in pixels.
        batch: Tiles per forward pass.
        offset: Per modality, the DN offset added to the mean.
        settings: What else determines the result (model, weights), for the resume check.
        weights: Digest of the backbone's weights (default: computed here; a caller embedding many scenes
            with one backbone passes it once computed).
        overwrite: Replace existing outputs.
        progress: Progress display factory (:func:`terramind.scene.tqdm_progress`).
        lock_dir: Folder whose writer lock is held (default: the output's folder).
        precision: ``auto``, ``fp32`` or ``bf16`` of the encoder calls; the resolved one is part of the
            resume check (a run is not resumed in another precision).

    Returns:
        The written paths and the number of tiles.

    Raises:
        InputError: A tile that is not a whole number of cells, an overlap of a whole tile, or an input that
            is not a pixel modality.
    """
    from terramind.checkpoints.digest import state_digest
    from terramind.modalities import get_modality
    from terramind.scene import TileLayout, fill_values, run_scene, scene_source, work_dir_for

    cell = cell_size(pool)
    if tile % cell:
        raise InputError(f"--tile {tile} is not a multiple of the cell ({pool} x 16 = {cell} px): use e.g. "
                         f"--tile {max(cell, tile - tile % cell)}")  # fmt: skip
    for name in inputs:
        if get_modality(name).classes is not None:
            raise InputError(f"{name}: embedding products take image inputs (S2, S1, DEM...), not class maps")
    source = CellSource(scene_source(inputs), cell)
    layout = TileLayout(source.georef.height, source.georef.width, tile // cell, overlap // cell)
    dims = _dims(backbone, list(inputs), cell, layer)
    fill = {n: np.repeat(v, cell * cell) for n, v in fill_values(list(inputs), offset).items()}
    resolved = resolve_precision(precision, next(backbone.parameters()).device).precision
    options = {"pool": pool, "layer": layer, "offset": dict(offset or {}), **(settings or {})}
    options["precision"] = resolved
    written = run_scene(
        cell_tile_fn(backbone, cell, pool=pool, layer=layer, offset=offset, precision=precision), source,
        embedding_outputs(Path(path), dims, formats), layout, work_dir_for(Path(path), "embed"), fill=fill,
        batch=batch, settings=options, weights=weights or state_digest({"backbone": backbone}),
        overwrite=overwrite, progress=progress, lock_dir=lock_dir or Path(path).parent,
    )  # fmt: skip
    return written, layout.num_tiles


@torch.no_grad()
def _dims(backbone: nn.Module, modalities: Sequence[str], cell: int, layer: int) -> int:
    """Return the backbone's embedding width, read from a zero batch of one cell per input."""
    from terramind.modalities import get_modality

    device = next(backbone.parameters()).device
    probe = {n: torch.zeros(1, get_modality(n).num_bands, cell, cell, device=device) for n in modalities}
    return int(backbone(probe)[layer].shape[-1])
