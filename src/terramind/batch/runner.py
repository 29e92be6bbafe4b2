"""Run a job over many scenes on Ray: one actor per worker holds the model, scenes are handed out one by one.

``ray.init`` starts a local Ray instance (``num_cpus = workers x threads``) unless Ray is already initialised
in this process or an ``address`` (``ray://HOST:PORT``) names an existing cluster; an address that does not
answer is refused within :data:`CONNECT_SECONDS`. Each worker is a Ray actor (``num_cpus`` = its threads,
``num_gpus`` = ``num_gpus_per_worker``) that sets ``torch.set_num_threads``, loads the job's model once per
set of input modalities and runs scenes through the scene engine, writing into ``OUTPUT/<scene>/``.

The driver hands each idle actor the next scene and waits for whichever finishes first (``ray.wait``). It
does not use ``ray.util.ActorPool``, which cannot replace an actor that died: here a dead actor (killed,
out of memory, a lost node) is replaced by a fresh one and its scene handed out again, where the scene
engine resumes it from the state saved in its folder. A scene that fails (bad input, a full disk) is tried
again up to ``retries`` times, then recorded as failed; the other scenes go on. The results table
(:mod:`.results`) is rewritten after every scene; a rerun skips the done scenes.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from terramind.batch.jobs import Job, SceneDone
from terramind.batch.manifest import Scene, read_manifest
from terramind.batch.results import (
    RESULTS,
    SceneRecord,
    read_results,
    summary,
    write_collection,
    write_results,
)
from terramind.core.errors import InputError, TerraMindError
from terramind.core.files import output_folder
from terramind.core.lock import folder_lock
from terramind.core.optional import require

CONNECT_SECONDS = 10.0  # how long a cluster address may take to accept a connection
MAX_LOST = 3  # a scene whose worker died this many times is recorded as failed


@dataclass(frozen=True)
class Cluster:
    """Where and how wide a batch runs.

    Attributes:
        address: ``ray://HOST:PORT`` of an existing cluster, or None for a local Ray instance.
        workers: Actors (each holds one copy of the model).
        threads_per_worker: Torch threads (and Ray CPUs) per actor.
        num_gpus_per_worker: GPUs per actor (fractions share a GPU).
    """

    address: str | None = None
    workers: int = 1
    threads_per_worker: int = 1
    num_gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads_per_worker < 1:
            raise InputError(
                f"workers and threads per worker must be >= 1, got {self.workers} and "
                f"{self.threads_per_worker}"
            )
        if not self.num_gpus_per_worker >= 0:
            raise InputError(f"GPUs per worker must be >= 0, got {self.num_gpus_per_worker}")


@dataclass(frozen=True)
class BatchReport:
    """What a batch run did.

    Attributes:
        records: The results table's rows after the run (every scene attempted so far).
        ran: The scenes this run attempted.
        skipped: Scenes done by an earlier run and skipped.
        seconds: Wall time of this run.
        table: The results table.
        collection: The STAC collection, if written.
    """

    records: tuple[SceneRecord, ...]
    ran: tuple[str, ...]
    skipped: int
    seconds: float
    table: Path
    collection: Path | None = None

    @property
    def failed(self) -> list[SceneRecord]:
        """Scenes whose last attempt failed."""
        return [r for r in self.records if r.status == "failed"]

    def summary(self) -> str:
        """One line: done/failed, skipped, tiles per second, wall time."""
        return summary([r for r in self.records if r.name in self.ran], self.skipped, self.seconds)


def check_address(address: str, timeout: float | None = None) -> None:
    """Refuse a cluster address that is malformed or whose Ray client server does not answer in ``timeout``.

    The check sends the Ray client protocol's ping: a host that is down, a closed port, or a port that
    accepts connections but serves no Ray client all fail here, within ``timeout``, where ``ray.init`` would
    retry for about a minute.

    Args:
        address: ``ray://HOST:PORT``.
        timeout: Seconds to wait (default :data:`CONNECT_SECONDS`).

    Raises:
        InputError: Naming the address and what to check.
    """
    timeout = CONNECT_SECONDS if timeout is None else timeout
    url = urlparse(address)
    if url.scheme != "ray" or not url.hostname or not url.port:
        raise InputError(
            f"--address {address!r}: give the Ray client address as ray://HOST:PORT (port 10001)"
        )
    grpc = require("grpc", "batch")  # installed with ray
    channel = grpc.insecure_channel(f"{url.hostname}:{url.port}")
    try:
        _ping(channel, timeout)
    except (grpc.FutureTimeoutError, grpc.RpcError) as err:
        code = err.code() if isinstance(err, grpc.RpcError) else None
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return  # a Ray client server that wants credentials: ray.init says what it needs
        why = f"{code.name}: {err.details()}" if code is not None else f"nothing within {timeout:g} s"
        raise InputError(
            f"Ray cluster {address!r} does not answer as a Ray client server ({why}): check that the cluster "
            f"runs ('ray start --head' serves ray://HOST:10001), the host, the port and the firewall"
        ) from None
    finally:
        channel.close()


def _ping(channel: Any, timeout: float) -> None:
    """Send the Ray client protocol's health check (what ``ray.init`` retries for about a minute)."""
    grpc = require("grpc", "batch")
    from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

    grpc.channel_ready_future(channel).result(timeout=timeout)
    request = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)  # type: ignore[attr-defined]
    ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(request, timeout=timeout)


def connect(cluster: Cluster) -> bool:
    """Initialise Ray for ``cluster``; returns whether this call started it (and should shut it down)."""
    ray = require("ray", "batch")
    if ray.is_initialized():
        return False
    if cluster.address is not None:
        check_address(cluster.address)
        try:
            ray.init(address=cluster.address, log_to_driver=False)
        except ConnectionError as err:
            raise InputError(
                f"Ray cluster {cluster.address!r} does not answer ({err}): check it runs"
            ) from None
    else:
        ray.init(num_cpus=cluster.workers * cluster.threads_per_worker, log_to_driver=False)
    return True


class Worker:
    """The body of a Ray actor: the job's model (loaded once per set of input modalities) and its scenes."""

    def __init__(self, job: Job, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.job = job
        self.loaded: dict[tuple[str, ...], Any] = {}

    def run(self, scene: Scene, folder: str, overwrite: bool) -> dict[str, Any]:
        """Run one scene; a failure is returned (with its message), never raised, so the actor lives on."""
        try:
            key = tuple(scene.inputs)
            if key not in self.loaded:
                self.loaded[key] = self.job.load(list(key))
            done: SceneDone = self.job.run(self.loaded[key], scene, Path(folder), overwrite=overwrite)
        except TerraMindError as err:
            return {"status": "failed", "error": str(err)}
        except OSError as err:
            where = f": {err.filename}" if err.filename else ""
            return {"status": "failed", "error": f"{err.strerror or err}{where}"}
        except Exception as err:  # a bug: keep the type so the table says it is not the input's fault
            return {"status": "failed", "error": f"internal error {type(err).__name__}: {err}"}
        return {"status": "done", "outputs": list(done.outputs), "tiles": done.tiles, "seconds": done.seconds}


@dataclass
class _Pool:
    """The actors of a run, replaced when one dies."""

    job: Job
    cluster: Cluster
    prefix: str = field(default_factory=lambda: f"terramind-batch-{uuid.uuid4().hex[:8]}")
    made: int = 0
    actors: list[Any] = field(default_factory=list)

    def new(self) -> Any:
        ray = require("ray", "batch")
        remote = ray.remote(
            num_cpus=self.cluster.threads_per_worker, num_gpus=self.cluster.num_gpus_per_worker
        )
        actor = (
            remote(Worker)
            .options(name=f"{self.prefix}-{self.made}")
            .remote(self.job, self.cluster.threads_per_worker)
        )
        self.made += 1
        self.actors.append(actor)
        return actor

    def close(self) -> None:
        ray = require("ray", "batch")
        for actor in self.actors:
            ray.kill(actor)


def run(
    job: Job,
    manifest: str | Path | Sequence[Scene],
    output: str | Path,
    *,
    cluster: Cluster | None = None,
    retries: int = 0,
    overwrite: bool = False,
    stac: bool = True,
    progress: bool = True,
) -> BatchReport:
    """Run ``job`` over every scene of a manifest on Ray; see the module docstring.

    Args:
        job: What to do with each scene (:mod:`terramind.batch.jobs`).
        manifest: A manifest path (:func:`~terramind.batch.manifest.read_manifest`) or the scenes.
        output: The batch's folder: ``<scene>/`` per scene, ``results.parquet``, ``collection.json``.
        cluster: Where and how wide to run (default: one local worker with one thread).
        retries: Further attempts for a scene that failed, in this run.
        overwrite: Start afresh: ignore the results table, replace outputs and resume state.
        stac: Write the STAC collection of the outputs (needs pystac).
        progress: Show a progress bar over scenes.

    Returns:
        The report (records, skipped scenes, wall time, table).

    Raises:
        InputError: A bad manifest or option, found before any scene starts.
        ResumeError: The results table records a run with other settings.
        BusyError: Another batch writes into ``output``.
    """
    start = time.perf_counter()
    cluster = cluster or Cluster()
    if retries < 0:
        raise InputError(f"retries must be >= 0, got {retries}")
    if cluster.address is not None:
        check_address(cluster.address)  # before the output folder is made
    out = Path(output)
    scenes = (
        list(manifest)
        if not isinstance(manifest, (str, Path))
        else read_manifest(manifest, items_dir=out / ".terramind-batch-items")
    )
    for scene in scenes:
        job.check(scene)
    with output_folder(out), folder_lock(out):
        table = out / RESULTS
        records = {} if overwrite else read_results(table, job.settings())
        skip = {
            n for n, r in records.items() if r.status == "done" and all(Path(p).exists() for p in r.outputs)
        }
        todo = [s for s in scenes if s.name not in skip]
        skipped = sum(s.name in skip for s in scenes)
        if todo:
            started = connect(cluster)
            try:
                _schedule(job, cluster, todo, out, records, retries, overwrite, progress)
            finally:
                if started:
                    require("ray", "batch").shutdown()
        collection = write_collection(out, list(records.values()), job.kind) if stac else None
    ran = tuple(s.name for s in todo)
    return BatchReport(tuple(records.values()), ran, skipped, time.perf_counter() - start, table, collection)


def _schedule(
    job: Job,
    cluster: Cluster,
    todo: Sequence[Scene],
    out: Path,
    records: dict[str, SceneRecord],
    retries: int,
    overwrite: bool,
    progress: bool,
) -> None:
    """Hand scenes to actors until every one is done or out of attempts; the table follows each scene."""
    ray = require("ray", "batch")
    from tqdm import tqdm

    pool = _Pool(job, cluster)
    pending, attempts, lost = (
        deque(todo),
        dict.fromkeys((s.name for s in todo), 0),
        dict.fromkeys((s.name for s in todo), 0),
    )
    idle = [pool.new() for _ in range(min(cluster.workers, len(todo)))]
    running: dict[Any, tuple[Any, Scene]] = {}
    bar = tqdm(total=len(todo), unit="scene", desc=f"batch {job.kind}", disable=not progress, file=sys.stderr)
    t0, tiles = time.perf_counter(), 0
    try:
        while pending or running:
            while idle and pending:
                actor, scene = idle.pop(), pending.popleft()
                attempts[scene.name] += 1
                running[
                    actor.run.remote(scene, str(out / scene.name), overwrite and attempts[scene.name] == 1)
                ] = (actor, scene)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, scene = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError:
                lost[scene.name] += 1
                attempts[scene.name] -= 1  # the worker's fault, not the scene's
                idle.append(pool.new())
                if lost[scene.name] < MAX_LOST:
                    pending.appendleft(scene)  # resumed by the engine from the state in its folder
                    continue
                result = {
                    "status": "failed",
                    "error": f"its worker died {MAX_LOST} times (out of memory? see Ray's logs)",
                }
            else:
                idle.append(actor)
            if (
                result["status"] == "failed"
                and attempts[scene.name] <= retries
                and lost[scene.name] < MAX_LOST
            ):
                pending.append(scene)
                continue
            records[scene.name] = _record(scene, result, attempts[scene.name])
            write_results(out / RESULTS, list(records.values()), job.settings())
            tiles += records[scene.name].tiles
            bar.update(1)
            bar.set_postfix_str(f"{tiles / max(time.perf_counter() - t0, 1e-9):.2f} tiles/s")
    except KeyboardInterrupt:
        for _, scene in running.values():  # their resume state stays in their folders
            records[scene.name] = SceneRecord(
                scene.name, "partial", attempts=attempts[scene.name], error="interrupted"
            )
        write_results(out / RESULTS, list(records.values()), job.settings())
        raise
    finally:
        bar.close()
        pool.close()


def _record(scene: Scene, result: dict[str, Any], attempts: int) -> SceneRecord:
    if result["status"] == "done":
        return SceneRecord(
            scene.name, "done", tuple(result["outputs"]), result["tiles"], result["seconds"], attempts
        )
    return SceneRecord(scene.name, "failed", attempts=attempts, error=result["error"])
