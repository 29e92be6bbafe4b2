"""``POST /v1/embed``: one tile in, its pooled or per-token embedding out (JSON or ``.npy``).

The tile is read and standardised as ``terramind embed`` reads it (:mod:`terramind.data.tiles`), padded to a
multiple of 16 px, and embedded by the host's encoder (built on the first call) under the host's lock, in
the request's ``precision`` (default: the server's ``--precision``).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from terramind.build.precision import PRECISIONS
from terramind.core.errors import InputError, ModalityError, TerraMindError
from terramind.evaluate.embeddings import Pooling
from terramind.scene import check_scene_inputs
from terramind.serve import schemas
from terramind.serve.config import ServeConfig
from terramind.serve.host import ModelHost
from terramind.serve.jobs import JobStore, new_id
from terramind.serve.requests import Inputs, error, read_form

EMBED_FIELDS = {
    f.name: f
    for f in (
        schemas.FormField(
            "pooling", "string", "mean", ("mean", "tokens"), "mean over tokens, or every token"
        ),
        schemas.FormField("layer", "integer", -1, (), "encoder block to read (-1: the last)"),
        schemas.FormField("format", "string", "json", ("json", "npy"), "JSON or a .npy file"),
        schemas.FormField(
            "precision", "string", "auto", PRECISIONS, "encoder precision (default: the server's --precision)"
        ),
    )
}
"""The fields of ``POST /v1/embed`` besides its inputs (the names of ``terramind embed``'s options)."""


def _embed_options(text: Mapping[str, str], precision: str) -> tuple[Pooling, int, str, str]:
    """Return pooling, layer, format and precision of a request (``precision``: the server's default)."""
    unknown = sorted(set(text) - set(EMBED_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(EMBED_FIELDS)}")
    values = {name: f.parse(text[name]) if name in text else f.default for name, f in EMBED_FIELDS.items()}
    chosen = values["precision"] if "precision" in text else precision
    return values["pooling"], values["layer"], values["format"], chosen


def embed_tile(
    host: ModelHost,
    files: Mapping[str, Path],
    pooling: Pooling,
    layer: int,
    max_pixels: int,
    precision: str = "auto",
) -> np.ndarray:
    """Embed one tile (one file per modality, standardised like ``terramind embed``); returns (D,) or (N, D).

    Raises:
        HTTPException: 413 for a tile over ``max_pixels``.
        TerraMindError: Unreadable files, files off one grid, a layer outside the encoder.
    """
    from terramind.data.tiles import GeoTiffDataset, check_tiles, modality_inputs
    from terramind.evaluate.embeddings import embed_batches, fit_inputs

    grid = check_scene_inputs(files)
    if grid.width * grid.height > max_pixels:
        raise error(
            413,
            f"tile of {grid.width} x {grid.height} pixels is over the embedding limit of {max_pixels} "
            "pixels; use terramind embed for large files",
        )
    specs = modality_inputs(list(files), {}, {}, {}, {})
    checked, _ = check_tiles({"tile": dict(files)}, specs)
    sample = GeoTiffDataset(list(checked.values()), specs)[0]["inputs"]
    categorical = [s.name for s in specs if s.record.classes is not None]
    batch = fit_inputs({k: v[None] for k, v in sample.items()}, categorical=categorical)
    with host.lock:
        backbone = host.backbone()
        depth = len(getattr(backbone, "encoder", ())) or None
        if depth is not None and not -depth <= layer < depth:
            raise InputError(
                f"layer {layer} is outside the encoder's {depth} blocks: use 0..{depth - 1} (or -{depth}..-1)"
            )
        device = next(backbone.parameters()).device
        inputs = [{k: v.to(device) for k, v in batch.items()}]
        array = embed_batches(backbone, inputs, pooling=pooling, layer=layer, precision=precision)
    return array[0]


async def embed_request(request: Request, cfg: ServeConfig, host: ModelHost, store: JobStore) -> Response:
    """Answer ``POST /v1/embed``: read the tile, embed it, return JSON or ``.npy`` (scratch files removed)."""
    if host.state != "ready":
        raise error(
            503, f"the model is not ready ({host.state}): retry when /readyz says ready", {"Retry-After": "5"}
        )
    scratch = store.root.parent / "embed" / new_id()
    inputs = Inputs()
    try:
        text = await read_form(request, cfg, scratch, inputs)
        pooling, layer, fmt, precision = _embed_options(text, cfg.precision)
        served_in, _ = host.served()
        refused = [n for n in inputs.files if n not in served_in]
        if refused:
            raise ModalityError(f"{', '.join(refused)}: this server takes inputs {', '.join(served_in)}")
        array = await run_in_threadpool(
            embed_tile, host, inputs.files, pooling, layer, cfg.max_embed_pixels, precision
        )
    except TerraMindError as err:
        raise inputs.scrub(err) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, array.astype(np.float32))
        return Response(
            buffer.getvalue(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": 'attachment; filename="embedding.npy"'},
        )
    return JSONResponse(
        {"shape": list(array.shape), "pooling": pooling, "layer": layer, "embedding": array.tolist()}
    )
