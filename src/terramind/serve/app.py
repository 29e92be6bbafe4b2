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
import shutil
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from terramind.core.errors import (
    BusyError,
    CheckpointError,
    DiskFullError,
    InputError,
    ModalityError,
    TerraMindError,
)
from terramind.modalities import get_modality, modality_names
from terramind.serve import TOKEN_ENV, schemas
from terramind.serve.config import ServeConfig
from terramind.serve.embed import EMBED_FIELDS, embed_request
from terramind.serve.host import ModelHost
from terramind.serve.jobs import FINISHED, Job, JobRunner, JobStore, QueueFullError, is_job_id, new_id
from terramind.serve.requests import Inputs, check_inputs, error, read_form

STATIC = Path(__file__).parent / "static"
PUBLIC = ("/healthz", "/readyz", "/", "/static/", "/favicon.ico")  # no token needed (the page asks for it)
STATUS: dict[type[TerraMindError], int] = {
    QueueFullError: 429, BusyError: 409, DiskFullError: 507, CheckpointError: 503,
    InputError: 422, ModalityError: 422, TerraMindError: 400,
}  # fmt: skip
"""HTTP status of each error class (the first class in this order that the error is an instance of)."""
WAIT_LIMIT_S = 300.0  # longest ?wait=true


def status_of(err: TerraMindError) -> int:
    """Return the HTTP status of a library error (:data:`STATUS`)."""
    return next(code for cls, code in STATUS.items() if isinstance(err, cls))


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
        return await embed_request(request, cfg, host, store)


def _file(path: Path) -> FileResponse:
    if not path.is_file():
        raise error(404, f"{path.name} is no longer there (removed after --keep-hours?)")
    media = "image/png" if path.suffix == ".png" else "image/tiff"
    return FileResponse(path, media_type=media, filename=path.name)


def _info(cfg: ServeConfig, host: ModelHost, runner: JobRunner) -> dict[str, Any]:
    inputs, outputs = host.served()
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
        served_in, served_out = host.served()
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
