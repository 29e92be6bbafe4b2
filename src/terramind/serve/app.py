"""The HTTP API and the web page of ``terramind serve`` (FastAPI; imported only when serving).

Routes (every one but ``/healthz``, ``/readyz`` and the page's static files needs ``Authorization: Bearer
TOKEN`` when a token is set):

==========================================  ==============================================================
``GET /healthz``, ``GET /readyz``           alive; model loaded (503 while loading or after a failed load)
``GET /v1/info``                            model, inputs, outputs, options (with defaults), limits, examples
``POST /v1/generate[?wait=true&timeout=S]`` multipart form (:mod:`.schemas`) -> 202 ``{"id": ...}``
``GET /v1/jobs``, ``GET /v1/jobs/{id}``     jobs; one job's state, progress in tiles, timings, error
``GET /v1/jobs/{id}/outputs/{MOD}.tif|png`` a finished job's GeoTIFF or quicklook
``GET /v1/jobs/{id}/inputs/{MOD}.png``      the quicklook of a job's input
``DELETE /v1/jobs/{id}``                    cancel a waiting or running job, or delete a finished one
``POST /v1/embed``                          one tile -> pooled or per-token embedding (JSON or ``.npy``)
==========================================  ==============================================================

Every user mistake is a 4xx with ``{"error": "..."}``: a :class:`~terramind.core.errors.TerraMindError` maps
by its class (:data:`STATUS`), and the server's own refusals (401 token, 403 path, 404, 413 limit, 429 queue
full) carry the limit or the fix in their message. Inputs are checked as ``terramind generate`` checks them
(every window read through the reading policy, then :func:`terramind.data.validate.validate_tile`) before a
job is queued, so a bad file is a 422 at once rather than a failed job later.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import ipaddress
import re
import shutil
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from terramind.core.errors import (
    BusyError,
    CheckpointError,
    DiskFullError,
    InputError,
    ModalityError,
    TerraMindError,
)
from terramind.data.validate import summarize_file, validate_tile
from terramind.evaluate.embeddings import Pooling
from terramind.generation.generate import check_modalities
from terramind.modalities import get_modality, modality_names
from terramind.scene import check_scene_inputs, scan_scene, scene_source
from terramind.scene.stac import is_stac_item
from terramind.serve import TOKEN_ENV, schemas
from terramind.serve.host import ModelHost
from terramind.serve.jobs import (
    FINISHED,
    Job,
    JobRunner,
    JobStore,
    QueueFullError,
    is_job_id,
    layout_tiles,
    new_id,
)

STATIC = Path(__file__).parent / "static"
PUBLIC = ("/healthz", "/readyz", "/", "/static/", "/favicon.ico")  # no token needed (the page asks for it)
STATUS: dict[type[TerraMindError], int] = {
    QueueFullError: 429, BusyError: 409, DiskFullError: 507, CheckpointError: 503,
    InputError: 422, ModalityError: 422, TerraMindError: 400,
}  # fmt: skip
"""HTTP status of each error class (the first class in this order that the error is an instance of)."""
MB = 1 << 20
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # little/big-endian TIFF and BigTIFF
_SAFE = re.compile(r"[^A-Za-z0-9._-]")  # an upload keeps its file name (GDAL's messages name it) minus these
WAIT_LIMIT_S = 300.0  # longest ?wait=true


@dataclass(frozen=True)
class ServeConfig:
    """How a server runs: where jobs live, what it allows, who may call it.

    Attributes:
        work_dir: Folder of the jobs (their records, uploads and outputs survive a restart).
        model: Model name, for ``/v1/info``.
        weights: Weights as given (``hub``, ``random`` or a path), for ``/v1/info``.
        device: Device of the model.
        precision: Default ``precision`` of requests.
        token: Bearer token every route but the health checks and the page needs (None: no token).
        data_root: Folder whose files requests may name (``MOD_path``); None: no server-side paths.
        examples_dir: Folder of example tiles ``<MOD>/<name>.tif`` (None: no examples).
        max_upload_mb: Largest request body, in MiB.
        max_pixels: Largest scene, in pixels (width x height).
        max_tiles: Most tiles of one job.
        max_embed_pixels: Largest tile ``/v1/embed`` takes, in pixels.
        queue_size: Jobs that may wait.
        workers: Jobs that run at once (model calls still take turns).
        keep_hours: Hours finished jobs are kept.
        cors_origins: Origins allowed to call from a browser page elsewhere (empty: CORS off).
    """

    work_dir: Path
    model: str = "terramind_v1_base"
    weights: str = "hub"
    device: str = "cpu"
    precision: str = "fp32"
    token: str | None = None
    data_root: Path | None = None
    examples_dir: Path | None = None
    max_upload_mb: float = 512.0
    max_pixels: int = 121_000_000  # one 10980 x 10980 Sentinel-2 tile at 10 m
    max_tiles: int = 4096
    max_embed_pixels: int = 1024 * 1024
    queue_size: int = 16
    workers: int = 1
    keep_hours: float = 24.0
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    def limits(self) -> dict[str, Any]:
        """Return the request limits, as ``/v1/info`` shows them."""
        return {
            "max_upload_mb": self.max_upload_mb, "max_pixels": self.max_pixels, "max_tiles": self.max_tiles,
            "max_embed_pixels": self.max_embed_pixels, "queue_size": self.queue_size, "workers": self.workers,
            "keep_hours": self.keep_hours,
        }  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> HTTPException:
    """Make an HTTP error, answered as ``{"error": message}``."""
    return HTTPException(status_code=status, detail=message, headers=dict(headers or {}))


def status_of(err: TerraMindError) -> int:
    """Return the HTTP status of a library error (:data:`STATUS`)."""
    return next(code for cls, code in STATUS.items() if isinstance(err, cls))


# ------------------------------------------------------------------------------------------------ inputs
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


# ------------------------------------------------------------------------------------------------- app
def create_app(cfg: ServeConfig, host: ModelHost) -> FastAPI:
    """Build the API and the page over a model host (started here) and a job runner on ``cfg.work_dir``.

    The runner starts with the app (restoring the jobs in the work folder) and stops with it.
    """
    store = JobStore(cfg.work_dir)
    runner = JobRunner(store, host, queue_size=cfg.queue_size, workers=cfg.workers, keep_hours=cfg.keep_hours)

    async def lifespan(app: FastAPI) -> Any:
        host.start()
        runner.start()
        yield
        runner.stop()

    app = FastAPI(
        title="TerraMind", summary="Any-to-any generation and embeddings for Earth observation",
        docs_url=None, redoc_url=None, lifespan=lifespan,
    )  # fmt: skip
    app.state.runner, app.state.host, app.state.cfg = runner, host, cfg
    _add_security(app, cfg)
    _add_handlers(app)
    _add_routes(app, cfg, host, runner, store)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_security(app: FastAPI, cfg: ServeConfig) -> None:
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization"],
        )
    if cfg.token is None:
        return
    expected = f"Bearer {cfg.token}".encode()

    @app.middleware("http")
    async def bearer(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path in PUBLIC or path.startswith("/static/"):
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            what = "a wrong token" if given else "no token"
            fix = f"send 'Authorization: Bearer TOKEN' (--token-file or {TOKEN_ENV} of the server)"
            return JSONResponse(
                {"error": f"{what}: {fix}"},
                status_code=401, headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        return await call_next(request)


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(TerraMindError)
    async def library_error(request: Request, exc: TerraMindError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFullError) else None
        return JSONResponse({"error": str(exc)}, status_code=status_of(exc), headers=headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:  # never a user's mistake: those are 4xx
        traceback.print_exception(exc)
        message = f"internal error ({type(exc).__name__}): this is a bug in terramind; please report it"
        return JSONResponse({"error": message}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {where}"}, status_code=422)


def _job_or_404(runner: JobRunner, job_id: str) -> Job:
    job = runner.get(job_id) if is_job_id(job_id) else None
    if job is None:
        raise error(404, f"no job {job_id!r} (finished jobs are kept for --keep-hours, then removed)")
    return job


def _add_routes(app: FastAPI, cfg: ServeConfig, host: ModelHost, runner: JobRunner, store: JobStore) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        body = {"ready": host.state == "ready", "state": host.state, "error": host.error}
        return JSONResponse(body, status_code=200 if host.state == "ready" else 503)

    @app.get("/v1/info")
    def info() -> dict[str, Any]:
        return _info(cfg, host, runner)

    @app.post("/v1/generate", status_code=202, openapi_extra=_form_body())
    async def generate(request: Request, wait: bool = False, timeout: float = 60.0) -> JSONResponse:
        job = await _accept(request, cfg, host, runner, store)
        if wait:
            job = await _wait(runner, job.id, min(max(timeout, 0.0), WAIT_LIMIT_S))
        status = 200 if job.state in FINISHED else 202
        return JSONResponse(job.public(), status_code=status, headers={"Location": f"/v1/jobs/{job.id}"})

    @app.get("/v1/jobs")
    def jobs() -> dict[str, Any]:
        listed = sorted(list(runner.jobs.values()), key=lambda j: j.created, reverse=True)
        return {"jobs": [j.public() for j in listed], "counts": runner.counts()}

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: str) -> dict[str, Any]:
        return _job_or_404(runner, job_id).public()

    @app.delete("/v1/jobs/{job_id}")
    def delete(job_id: str) -> JSONResponse:
        found = _job_or_404(runner, job_id)
        cancelled = runner.cancel(found.id)
        if cancelled is None:
            return JSONResponse({"id": found.id, "deleted": True})
        return JSONResponse(cancelled.public())

    @app.get("/v1/jobs/{job_id}/outputs/{name}")
    def output(job_id: str, name: str) -> FileResponse:
        found = _job_or_404(runner, job_id)
        stem, _, suffix = name.rpartition(".")
        if stem not in found.outputs or suffix not in ("tif", "png"):
            raise error(
                404,
                f"job {found.id} has no output {name!r}; it has "
                + ", ".join(f"{m}.tif, {m}.png" for m in found.outputs),
            )
        if found.state != "done":
            raise error(409, f"job {found.id} is {found.state}: outputs can be downloaded once it is done")
        return _file(store.outputs(found.id) / f"{stem}.{suffix}")

    @app.get("/v1/jobs/{job_id}/inputs/{name}")
    def input_quicklook(job_id: str, name: str) -> FileResponse:
        found = _job_or_404(runner, job_id)
        stem, _, suffix = name.rpartition(".")
        if stem not in found.inputs or suffix != "png":
            raise error(404, f"job {found.id} has no input quicklook {name!r}")
        path = store.inputs(found.id) / name
        if not path.is_file():
            raise error(409, f"job {found.id} is {found.state}: input quicklooks appear once it runs")
        return _file(path)

    @app.post("/v1/embed", openapi_extra=_embed_body())
    async def embed(request: Request) -> Response:
        return await _embed(request, cfg, host, store)


def _file(path: Path) -> FileResponse:
    if not path.is_file():
        raise error(404, f"{path.name} is no longer there (removed after --keep-hours?)")
    media = "image/png" if path.suffix == ".png" else "image/tiff"
    return FileResponse(path, media_type=media, filename=path.name)


def _served(host: ModelHost) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the (inputs, outputs) the host serves (empty while it loads)."""
    if host.state != "ready":
        return (), ()
    gen = host.generator
    return tuple(s.name for s in gen.inputs), tuple(s.name for s in gen.outputs)


def _info(cfg: ServeConfig, host: ModelHost, runner: JobRunner) -> dict[str, Any]:
    inputs, outputs = _served(host)
    modalities = {}
    for name in (*inputs, *outputs):
        spec = get_modality(name)
        classes = [{"id": c.id, "name": c.name, "colour": c.colour} for c in spec.classes or ()]
        modalities[name] = {"bands": list(spec.bands), "unit": spec.unit, "classes": classes}
    return {
        "model": cfg.model, "weights": cfg.weights, "device": cfg.device, "precision": cfg.precision,
        "ready": host.state == "ready", "state": host.state, "error": host.error,
        "inputs": list(inputs), "outputs": list(outputs), "modalities": modalities,
        "fields": {f.name: f.json_schema() for f in schemas.ALL_FIELDS.values()}, "limits": cfg.limits(),
        "examples": _examples(cfg.examples_dir, inputs), "jobs": runner.counts(),
        "data_root": cfg.data_root is not None,
    }  # fmt: skip


def _examples(folder: Path | None, inputs: tuple[str, ...]) -> dict[str, list[str]]:
    """List example tile names by input modality."""
    if folder is None or not folder.is_dir():
        return {}
    return {m: sorted(p.name for p in (folder / m).glob("*.tif")) for m in inputs if (folder / m).is_dir()}


def _image_inputs() -> tuple[str, ...]:
    """Every modality a scene job can take as an input (the OpenAPI form lists them all)."""
    specs = [get_modality(n) for n in modality_names()]
    return tuple(s.name for s in specs if s.is_image and s.input_kind is not None)


def _form_body() -> dict[str, Any]:
    schema = schemas.form_schema(_image_inputs())
    return {"requestBody": {"content": {"multipart/form-data": {"schema": schema}}, "required": True}}


def _embed_body() -> dict[str, Any]:
    schema = schemas.form_schema(_image_inputs())
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in schemas.ALL_FIELDS}
    schema["properties"].update({name: f.json_schema() for name, f in EMBED_FIELDS.items()})
    return {"requestBody": {"content": {"multipart/form-data": {"schema": schema}}, "required": True}}


async def _accept(
    request: Request, cfg: ServeConfig, host: ModelHost, runner: JobRunner, store: JobStore
) -> Job:
    """Read, check and queue a generation request (the job folder goes again if anything is refused)."""
    if host.state == "failed":
        raise error(503, f"the model failed to load: {host.error}")
    job_id = new_id()
    folder = store.folder(job_id)
    inputs = Inputs()
    try:
        text = await read_form(request, cfg, store.inputs(job_id), inputs)
        if host.state != "ready":
            raise error(
                503, "the model is still loading: retry when /readyz says ready", {"Retry-After": "5"}
            )
        served_in, served_out = _served(host)
        spec, options = schemas.parse_request(text, served_out, precision=cfg.precision)
        refused = [n for n in inputs.files if n not in served_in]
        if refused:
            raise ModalityError(f"{', '.join(refused)}: this server takes inputs {', '.join(served_in)}")
        width, height, tiles = await run_in_threadpool(check_inputs, inputs.files, spec.outputs, cfg, spec)
        job = Job(
            id=job_id, state="queued", inputs={m: str(p) for m, p in inputs.files.items()},
            spec=spec.as_dict(), options=options.as_dict(), width=width, height=height, tiles_total=tiles,
        )  # fmt: skip
        return runner.submit(job)
    except TerraMindError as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise inputs.scrub(err) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


async def _wait(runner: JobRunner, job_id: str, timeout: float) -> Job:
    """Wait for a job to finish (at most ``timeout`` seconds); returns its latest record."""
    end = time.monotonic() + timeout
    job = runner.jobs[job_id]
    while job.state not in FINISHED and time.monotonic() < end:
        await asyncio.sleep(0.05)
        job = runner.jobs.get(job_id, job)
    return job


# ----------------------------------------------------------------------------------------------- embed
EMBED_FIELDS = {
    f.name: f
    for f in (
        schemas.FormField(
            "pooling", "string", "mean", ("mean", "tokens"), "mean over tokens, or every token"
        ),
        schemas.FormField("layer", "integer", -1, (), "encoder block to read (-1: the last)"),
        schemas.FormField("format", "string", "json", ("json", "npy"), "JSON or a .npy file"),
    )
}
"""The fields of ``POST /v1/embed`` besides its inputs (the names of ``terramind embed``'s options)."""


def _embed_options(text: Mapping[str, str]) -> tuple[Pooling, int, str]:
    unknown = sorted(set(text) - set(EMBED_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(EMBED_FIELDS)}")
    values = {name: f.parse(text[name]) if name in text else f.default for name, f in EMBED_FIELDS.items()}
    return values["pooling"], values["layer"], values["format"]


def embed_tile(
    host: ModelHost, files: Mapping[str, Path], pooling: Pooling, layer: int, max_pixels: int
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
        array = embed_batches(backbone, inputs, pooling=pooling, layer=layer)
    return array[0]


async def _embed(request: Request, cfg: ServeConfig, host: ModelHost, store: JobStore) -> Response:
    if host.state != "ready":
        raise error(
            503, f"the model is not ready ({host.state}): retry when /readyz says ready", {"Retry-After": "5"}
        )
    scratch = store.root.parent / "embed" / new_id()
    inputs = Inputs()
    try:
        text = await read_form(request, cfg, scratch, inputs)
        pooling, layer, fmt = _embed_options(text)
        served_in, _ = _served(host)
        refused = [n for n in inputs.files if n not in served_in]
        if refused:
            raise ModalityError(f"{', '.join(refused)}: this server takes inputs {', '.join(served_in)}")
        array = await run_in_threadpool(embed_tile, host, inputs.files, pooling, layer, cfg.max_embed_pixels)
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
