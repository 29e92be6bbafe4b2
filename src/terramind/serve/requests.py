"""Reading a request: its input files (uploads, server-side paths, example tiles) and its text fields.

Every refusal says what is wrong and what to do: 403 for a path outside the allowed folder, 413 with the
limit, 422 for a file the CLI would refuse, with the CLI's message (server paths replaced by the names the
client gave). Uploads must be TIFFs: GDAL opens files by content, and an uploaded VRT could name any file the
server can read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

from terramind.core.errors import InputError, ModalityError, TerraMindError
from terramind.data.validate import summarize_file, validate_tile
from terramind.generation.generate import check_modalities
from terramind.modalities import get_modality
from terramind.scene import scan_scene, scene_source
from terramind.scene.stac import is_stac_item
from terramind.serve import schemas
from terramind.serve.config import ServeConfig
from terramind.serve.jobs import layout_tiles

MB = 1 << 20
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # little/big-endian TIFF and BigTIFF
_SAFE = re.compile(r"[^A-Za-z0-9._-]")  # an upload keeps its file name (GDAL's messages name it) minus these


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> HTTPException:
    """Make an HTTP error, answered as ``{"error": message}``."""
    return HTTPException(status_code=status, detail=message, headers=dict(headers or {}))


def resolve_under(root: Path | None, text: str, what: str) -> Path:
    """Resolve a client-given path inside ``root``: no ``..``, no absolute path or symlink leading out.

    Raises:
        HTTPException: 403 for a path outside ``root`` (or no ``root``), 422 for a missing file.
    """
    if root is None:
        raise error(403, f"{what} is off on this server (start terramind serve with --data-root DIR)")
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if ".." in parts:
        raise error(403, f"{what} {text!r} must not contain '..': give a path inside the folder")
    base = root.resolve()
    path = (base / text).resolve()
    if not path.is_relative_to(base):
        raise error(403, f"{what} {text!r} leads outside the allowed folder (absolute path or symbolic link)")
    if not path.exists():
        raise InputError(f"{what} {text!r}: no such file")
    if is_stac_item(path):  # an item makes the server fetch the URLs it names
        raise InputError(
            f"{what} {text!r} is a STAC item: the server takes GeoTIFFs and band-file folders only"
        )
    return path


@dataclass
class Inputs:
    """A request's input files by canonical modality, and the upload files this request made."""

    files: dict[str, Path] = field(default_factory=dict)
    uploads: list[Path] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # server path -> what the client called it

    def add(self, name: str, path: Path, label: str) -> None:
        """Add the file of an input modality (``label``: its name as the client gave it)."""
        key = _input_name(name)
        if key in self.files:
            raise InputError(f"input {key} given twice: give one file, path or example per modality")
        self.files[key] = path
        self.labels[str(path)] = label

    def discard(self) -> None:
        """Remove the uploads saved so far."""
        for path in self.uploads:
            path.unlink(missing_ok=True)

    def scrub(self, err: TerraMindError) -> TerraMindError:
        """Put the client's names for files in place of server paths in an error's message."""
        text = str(err)
        for path, label in self.labels.items():
            text = text.replace(path, label)
        err.args = (text,)
        return err


def _input_name(name: str) -> str:
    try:
        return get_modality(name).name
    except ModalityError as err:
        raise ModalityError(f"form field {name!r}: {err}") from None


async def _save_upload(upload: UploadFile, target: Path, budget: list[int], limit_mb: float) -> None:
    """Copy an upload to ``target``, counting bytes against the request budget (413 when exceeded)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        while chunk := await upload.read(MB):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise error(413, f"request too large: the limit is {limit_mb:g} MB (--max-upload-mb)")
            out.write(chunk)


def check_tiff(path: Path, label: str) -> None:
    """Refuse an upload that is not a TIFF.

    GDAL opens a file by its content, whatever its name: an uploaded VRT (XML) could name any file or URL that
    the server can reach.

    Raises:
        InputError: The file does not start with a TIFF or BigTIFF header.
    """
    with path.open("rb") as f:
        head = f.read(4)
    if head not in TIFF_MAGIC:
        raise InputError(f"upload {label!r} is not a GeoTIFF (no TIFF header): upload .tif files only")


async def read_form(request: Request, cfg: ServeConfig, upload_dir: Path, inputs: Inputs) -> dict[str, str]:
    """Read a multipart request: input files go into ``inputs`` (uploads saved to ``upload_dir``).

    Returns:
        The text fields.
    """
    limit = int(cfg.max_upload_mb * MB)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        size = int(length) / MB
        raise error(
            413, f"request of {size:.1f} MB is over the limit of {cfg.max_upload_mb:g} MB (--max-upload-mb)"
        )
    form = await request.form()
    text: dict[str, str] = {}
    budget = [limit]
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                key = _input_name(name)
                label = PurePosixPath((value.filename or "").replace("\\", "/")).name
                target = upload_dir / key / (_SAFE.sub("_", label).lstrip(".") or f"{key}.tif")
                inputs.uploads.append(target)
                await _save_upload(value, target, budget, cfg.max_upload_mb)
                check_tiff(target, label or target.name)
                inputs.add(key, target, label or target.name)
            elif name.endswith(schemas.PATH_SUFFIX):
                path = resolve_under(cfg.data_root, value, "a server-side path")
                inputs.add(name.removesuffix(schemas.PATH_SUFFIX), path, value)
            elif name.endswith(schemas.EXAMPLE_SUFFIX):
                key = _input_name(name.removesuffix(schemas.EXAMPLE_SUFFIX))
                folder = None if cfg.examples_dir is None else cfg.examples_dir / key
                inputs.add(key, resolve_under(folder, value, "example tile"), value)
            elif name in text:
                raise InputError(f"field {name} given twice")
            else:
                text[name] = value
    except BaseException:
        inputs.discard()
        raise
    finally:
        await form.close()
    if not inputs.files:
        raise InputError(
            "no input: give a file per input modality (e.g. S2L2A=@tile.tif), or S2L2A_path or S2L2A_example"
        )
    return text


def check_inputs(
    files: Mapping[str, Path], outputs: tuple[str, ...], cfg: ServeConfig, spec: schemas.JobSpec
) -> tuple[int, int, int]:
    """Check a job's inputs as ``terramind generate`` does, and the size limits.

    Returns:
        The scene's width and height, and its number of tiles.

    Raises:
        HTTPException: 413 for a scene over the pixel or tile limit.
        TerraMindError: Modalities that do not fit, a file the validation or the reading policy refuses.
    """
    check_modalities(list(files), list(outputs))
    for name in files:
        if not get_modality(name).is_image:
            raise ModalityError(f"{name} is not an image: scene generation takes and writes images only")
    grid = scene_source(files).georef  # GeoTIFFs and band-file folders, checked as generate checks them
    pixels = grid.width * grid.height
    if pixels > cfg.max_pixels:
        raise error(
            413,
            f"scene of {grid.width} x {grid.height} = {pixels} pixels is over the limit of {cfg.max_pixels} "
            "pixels (--max-pixels)",
        )
    tiles = layout_tiles(grid.width, grid.height, spec.tile, spec.overlap)
    if tiles > cfg.max_tiles:
        raise error(
            413,
            f"scene needs {tiles} tiles of {spec.tile} px; the limit is {cfg.max_tiles} tiles (--max-tiles)",
        )
    for name, path in ((n, p) for n, p in files.items() if p.is_file()):
        problems = [f.message for f in validate_tile(summarize_file(path, name), name) if f.level == "error"]
        if problems:
            raise InputError(f"{name} input: {'; '.join(problems)}")
    scan_scene(files)
    return grid.width, grid.height, tiles
