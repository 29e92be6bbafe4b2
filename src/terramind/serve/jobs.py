"""Generation jobs: records on disk, a bounded queue, workers that run the scene engine, clean-up.

A job lives in its own folder under the work folder (``jobs/<id>/``): ``job.json`` (the record, written
atomically at every change of state and, throttled, as tiles finish), ``inputs/`` (uploaded files and their
quicklooks) and ``outputs/`` (the GeoTIFFs and PNGs). A job is the same whole-scene generation as
``terramind generate``: the held generator as a tile function (:func:`generator_tile_fn`) handed to
:func:`generate_scene`, resumable tile row by tile row. So a server that stops (or dies) keeps every finished
job, and a new server over the same work folder requeues the unfinished ones, which resume where they were.

:class:`JobRunner` holds the queue: at most ``queue_size`` jobs wait (a full queue refuses with
:class:`QueueFullError`), ``workers`` threads run jobs, and the host's lock lets one tile batch at a time onto
the model. Cancelled jobs lose their files at once; finished ones are removed ``keep_hours`` after they ended.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio

from terramind.core.errors import TerraMindError
from terramind.core.files import atomic_path
from terramind.generation.options import GenerationOptions
from terramind.generation.scene import generate_scene, generator_tile_fn
from terramind.scene import WORK_DIR, SceneOutput, TileLayout, fill_values
from terramind.scene.quicklook import QUICKLOOK_PIXELS, write_quicklook
from terramind.serve.host import ModelHost

State = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
RECORD = "job.json"
SAVE_SECONDS = 0.5  # progress is written at most this often while tiles finish (and at every state change)


class QueueFullError(TerraMindError):
    """The queue holds its limit of waiting jobs; ``retry_after`` estimates when to try again (seconds)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobCancelledError(Exception):
    """Raised inside a running job when it is cancelled (stops the scene engine between tile batches)."""


@dataclass(frozen=True)
class Job:
    """The record of one job (``job.json``).

    Attributes:
        id: Hex identifier (also its folder name).
        state: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        inputs: Input file per modality (uploads inside the job folder, or server-side files).
        spec: The job fields (:class:`terramind.serve.schemas.JobSpec` as plain values).
        options: The decoding options (:meth:`GenerationOptions.as_dict`).
        width: Scene columns.
        height: Scene rows.
        tiles_total: Tiles of the scene.
        tiles_done: Tiles finished so far.
        created: When it was accepted (Unix time).
        started: When it last started running.
        finished: When it ended.
        error: Why it failed.
        ranges: Per output of values (not classes), ``[min, max]`` of its valid pixels (of the quicklook's
            sample for scenes over 1024 px).
    """

    id: str
    state: State
    inputs: dict[str, str]
    spec: dict[str, Any]
    options: dict[str, Any]
    width: int
    height: int
    tiles_total: int
    tiles_done: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    ranges: dict[str, list[float]] = field(default_factory=dict)

    @property
    def outputs(self) -> list[str]:
        """Return the modalities it generates, in order."""
        return list(self.spec["outputs"])

    def public(self) -> dict[str, Any]:
        """Return the job as the API shows it: state, progress in tiles, timings, error and file links."""
        base = f"/v1/jobs/{self.id}"
        done = self.state == "done"
        end = self.finished or time.time()
        return {
            "id": self.id,
            "state": self.state,
            "progress": {"tiles_done": self.tiles_done, "tiles_total": self.tiles_total},
            "size": {"width": self.width, "height": self.height},
            "timings": {
                "created": _iso(self.created),
                "started": _iso(self.started),
                "finished": _iso(self.finished),
                "queued_s": round((self.started or end) - self.created, 3),
                "run_s": None if self.started is None else round(end - self.started, 3),
            },
            "error": self.error,
            "ranges": self.ranges,
            "spec": self.spec,
            "options": self.options,
            "inputs": {m: f"{base}/inputs/{m}.png" for m in self.inputs},
            "outputs": {
                m: {"tif": f"{base}/outputs/{m}.tif", "png": f"{base}/outputs/{m}.png"} for m in self.outputs
            }
            if done
            else {},
        }


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def new_id() -> str:
    """Return a fresh job id (32 hex digits)."""
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    """Whether ``text`` can be a job id (so it is safe as a folder name)."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


class JobStore:
    """Job folders under ``root/jobs``; records are written atomically.

    Args:
        root: The server's work folder (created if missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, job_id: str) -> Path:
        """Return the folder of a job."""
        return self.root / job_id

    def inputs(self, job_id: str) -> Path:
        """Return where a job's uploads and input quicklooks go."""
        return self.folder(job_id) / "inputs"

    def outputs(self, job_id: str) -> Path:
        """Return where a job's outputs go."""
        return self.folder(job_id) / "outputs"

    def save(self, job: Job) -> None:
        """Write a job's record (atomically: a crash leaves the previous record)."""
        self.folder(job.id).mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder(job.id) / RECORD) as tmp:
            tmp.write_text(json.dumps(asdict(job), indent=1))

    def load_all(self) -> list[Job]:
        """Every job with a readable record, oldest first (folders without one are leftovers: removed)."""
        jobs = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                jobs.append(Job(**json.loads((folder / RECORD).read_text())))
            except (OSError, ValueError, TypeError):
                shutil.rmtree(folder, ignore_errors=True)  # a job refused before its record was written
        return sorted(jobs, key=lambda j: j.created)

    def remove_files(self, job_id: str, *, keep_record: bool) -> None:
        """Delete a job's files (all of them, or all but its record)."""
        folder = self.folder(job_id)
        if not keep_record:
            shutil.rmtree(folder, ignore_errors=True)
            return
        for child in folder.iterdir() if folder.exists() else ():
            if child.name != RECORD:
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


class JobRunner:
    """The queue and its workers.

    Args:
        store: Where jobs live.
        host: The model.
        queue_size: Jobs that may wait (running ones not counted).
        workers: Jobs that run at once (their model calls still take turns).
        keep_hours: Finished jobs are removed this long after they ended.
    """

    def __init__(
        self,
        store: JobStore,
        host: ModelHost,
        *,
        queue_size: int = 16,
        workers: int = 1,
        keep_hours: float = 24.0,
    ) -> None:
        self.store, self.host = store, host
        self.queue_size, self.workers, self.keep_hours = queue_size, workers, keep_hours
        self.jobs: dict[str, Job] = {}
        self._pending: deque[str] = deque()
        self._cancel: set[str] = set()
        self._cond = threading.Condition()
        self._stop = False
        self._stopped = threading.Event()  # the janitor's stop signal (the condition wakes workers only)
        self._threads: list[threading.Thread] = []
        self._run_seconds: deque[float] = deque(maxlen=20)  # recent run times, for Retry-After

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> JobRunner:
        """Load the stored jobs, requeue unfinished ones, start the workers and the janitor; returns self."""
        for job in self.store.load_all():
            if job.state not in FINISHED:  # interrupted by a stop: resumes from its saved tile rows
                job = replace(job, state="queued", started=None)
                self._pending.append(job.id)
            self.jobs[job.id] = job
        self.expire()
        for i in range(self.workers):
            self._spawn(self._work, f"terramind-job-{i}")
        self._spawn(self._janitor, "terramind-janitor")
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the workers to stop after their current job and wait for them (at most ``timeout``)."""
        with self._cond:
            self._stop = True
            self._stopped.set()
            self._cancel |= {j for j, job in self.jobs.items() if job.state == "running"}
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    # ---------------------------------------------------------------------------------------------- API
    def submit(self, job: Job) -> Job:
        """Queue a job.

        Raises:
            QueueFullError: ``queue_size`` jobs are waiting already.
        """
        with self._cond:
            if len(self._pending) >= self.queue_size:
                raise QueueFullError(
                    f"the queue is full ({self.queue_size} jobs waiting, --queue-size): retry later",
                    self.retry_after(),
                )
            self.jobs[job.id] = job
            self.store.save(job)
            self._pending.append(job.id)
            self._cond.notify()
        return job

    def retry_after(self) -> int:
        """Seconds until a queue place is likely free: the recent mean run time times the jobs ahead."""
        mean = sum(self._run_seconds) / len(self._run_seconds) if self._run_seconds else 10.0
        return max(1, round(mean * max(1, len(self._pending)) / self.workers))

    def get(self, job_id: str) -> Job | None:
        """Return the job with this id, or None."""
        return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (its files go; the record stays), or delete a finished one.

        Returns:
            The cancelled job, or None when a finished job was deleted (or there was none).
        """
        with self._cond:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            if job.state in FINISHED and job_id not in self._cancel:  # (not while a cancel winds down)
                del self.jobs[job_id]
                self.store.remove_files(job_id, keep_record=False)
                return None
            if job.state in FINISHED:
                return job
            if job.state == "running":
                self._cancel.add(job_id)  # the worker stops at its next tile batch and cleans up
            else:
                self._pending.remove(job_id)
                self.store.remove_files(job_id, keep_record=True)
            job = self._update(job, state="cancelled", finished=time.time())
        return job

    def expire(self, now: float | None = None) -> list[str]:
        """Remove the finished jobs that ended more than ``keep_hours`` ago; returns their ids."""
        limit = (now or time.time()) - self.keep_hours * 3600
        with self._cond:
            old = [j.id for j in self.jobs.values() if j.state in FINISHED and (j.finished or 0) < limit]
            for job_id in old:
                del self.jobs[job_id]
                self.store.remove_files(job_id, keep_record=False)
        return old

    def counts(self) -> dict[str, int]:
        """Jobs by state, and the queue's free places."""
        found = {s: 0 for s in ("queued", "running", "done", "failed", "cancelled")}
        for job in list(self.jobs.values()):
            found[job.state] += 1
        return {**found, "free": self.queue_size - len(self._pending)}

    # ------------------------------------------------------------------------------------------ workers
    def _update(self, job: Job, **changes: Any) -> Job:
        job = replace(job, **changes)
        self.jobs[job.id] = job
        self.store.save(job)
        return job

    def _next(self) -> str | None:
        with self._cond:
            while not self._pending and not self._stop:
                self._cond.wait()
            return None if self._stop else self._pending.popleft()

    def _work(self) -> None:
        while (job_id := self._next()) is not None:
            self.host.wait()
            with self._cond:
                job = self.jobs.get(job_id)
                if job is None or job.state != "queued":
                    continue
                job = self._update(job, state="running", started=time.time(), error=None)
            try:
                self._run(job)
            except Exception:  # a bug in the bookkeeping: report it, keep the worker alive
                traceback.print_exc()

    def _janitor(self) -> None:
        period = min(60.0, max(1.0, self.keep_hours * 360))  # a tenth of the keep time, at most a minute
        while not self._stopped.wait(period):
            self.expire()

    def _run(self, job: Job) -> None:
        try:
            ranges = run_job(job, self.store, self.host, self._progress(job.id))
        except JobCancelledError:
            with self._cond:
                self._cancel.discard(job.id)
                current = self.jobs.get(job.id)
                if self._stop and current is not None and current.state == "running":
                    return  # the server stops: the job stays "running" on disk and resumes at the next start
                self.store.remove_files(job.id, keep_record=True)
            return
        except TerraMindError as err:  # server paths of the job's files shown relative to its folder
            message = str(err).replace(f"{self.store.folder(job.id)}/", "")
            self._finish(job.id, state="failed", error=message)
            return
        except Exception as err:  # a bug: the job fails, the server keeps serving
            self._finish(job.id, state="failed", error=f"internal error: {err!r}; please report it")
            return
        self._finish(job.id, state="done", ranges=ranges)

    def _finish(self, job_id: str, **changes: Any) -> None:
        with self._cond:
            self._cancel.discard(job_id)
            current = self.jobs.get(job_id)
            if current is None or current.state == "cancelled":  # cancelled after its last tile batch
                self.store.remove_files(job_id, keep_record=current is not None)
                return
            job = self._update(current, finished=time.time(), **changes)
            if job.started is not None:
                self._run_seconds.append(job.finished - job.started)  # type: ignore[operator]

    def _progress(self, job_id: str) -> Callable[[int, int], Callable[[int], None]]:
        """Make a scene-engine progress factory that records tiles done and stops a cancelled job."""

        def start(total: int, done: int) -> Callable[[int], None]:
            last = [0.0]
            self._set_done(job_id, done, force=True)

            def update(n: int) -> None:
                job = self.jobs.get(job_id)
                if job_id in self._cancel or job is None:
                    raise JobCancelledError(job_id)
                now = time.time()
                self._set_done(job_id, job.tiles_done + n, force=now - last[0] >= SAVE_SECONDS)
                last[0] = now if now - last[0] >= SAVE_SECONDS else last[0]

            return update

        return start

    def _set_done(self, job_id: str, done: int, *, force: bool) -> None:
        with self._cond:
            if job_id not in self.jobs:
                return
            job = replace(self.jobs[job_id], tiles_done=done)
            self.jobs[job_id] = job
            if force:
                self.store.save(job)


def run_job(
    job: Job, store: JobStore, host: ModelHost, progress: Callable[[int, int], Callable[[int], None]]
) -> dict[str, list[float]]:
    """Run one job through the scene engine and draw the quicklooks of its inputs and outputs.

    Returns:
        Per output of values, ``[min, max]`` of its valid pixels (:attr:`Job.ranges`).

    Raises:
        TerraMindError: Anything the scene engine refuses (a bad window, a full disk, ...).
    """
    inputs = {m: Path(p) for m, p in job.inputs.items()}
    out_dir = store.outputs(job.id)
    out_dir.mkdir(parents=True, exist_ok=True)
    store.inputs(job.id).mkdir(parents=True, exist_ok=True)
    for name, path in inputs.items():
        write_quicklook(path, store.inputs(job.id) / f"{name}.png", name, title=f"{name} (input)")
    outputs = [SceneOutput.for_modality(m, out_dir / f"{m}.tif") for m in job.outputs]
    spec, options = job.spec, GenerationOptions.from_mapping(job.options)
    offset = dict(spec["offset"])
    generator = host.view(list(inputs), job.outputs)
    tile_fn = _one_at_a_time(
        generator_tile_fn(generator, outputs, options, seed=spec["seed"], offset=offset), host.lock
    )
    settings = {"seed": spec["seed"], "offset": offset, **options.as_dict()}
    written = generate_scene(
        tile_fn, inputs, outputs, work_dir=out_dir / WORK_DIR, tile=spec["tile"], overlap=spec["overlap"],
        batch=spec["batch_size"], fill=fill_values(list(inputs), offset), settings=settings,
        weights=host.digest, progress=progress,
    )  # fmt: skip
    ranges = {}
    for out, path in zip(outputs, written, strict=True):
        write_quicklook(path, path.with_suffix(".png"), out.modality, title=f"{out.modality} (generated)")
        if not out.categorical:
            ranges[out.modality] = value_range(path)
    return ranges


def value_range(tif: Path) -> list[float]:
    """``[min, max]`` of a GeoTIFF's valid pixels, read decimated like its quicklook (empty: none valid)."""
    with rasterio.open(tif) as src:
        scale = max(1.0, max(src.width, src.height) / QUICKLOOK_PIXELS)
        shape = (src.count, max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        data = src.read(out_shape=shape, masked=True)
    valid = data.compressed()
    return [] if valid.size == 0 else [float(valid.min()), float(valid.max())]


def _one_at_a_time(fn: Callable[..., Any], lock: threading.Lock) -> Callable[..., Any]:
    """Wrap a tile function so that its calls hold ``lock`` (one model call per device)."""

    def call(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> Mapping[str, np.ndarray]:
        with lock:
            return fn(tiles, indices)

    return call


def layout_tiles(width: int, height: int, tile: int, overlap: int) -> int:
    """Tiles of a scene (for the tile-count limit)."""
    return TileLayout(height, width, tile, overlap).num_tiles
