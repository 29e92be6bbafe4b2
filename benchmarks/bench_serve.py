"""Bounded load test of ``terramind serve`` on loopback: N jobs from C concurrent clients, then it stops.

Starts ``terramind serve`` as a real process on a free 127.0.0.1 port, waits for ``/readyz``, and lets each
client thread submit its share of the jobs (the example S2L2A tile uploaded, LULC generated), then poll each
accepted one to its end; the clients submit back to back, so a queue smaller than the jobs fills up. A job
either finishes or is refused with 429 and a ``Retry-After`` (not retried: the refusals are counted). Then
it checks that no job was lost (every accepted id is listed by ``/v1/jobs`` and ended ``done``) or
corrupted (every LULC GeoTIFF has the input's georeference, class ids 0-9 and the same pixels: equal
requests give equal outputs), and reports latency (submit to done) p50/p95 and jobs per minute::

    .venv/bin/python benchmarks/bench_serve.py --out benchmarks/serve_results.json

The defaults (tiny model, random weights, 20 jobs, 4 clients, queue of 8, one worker) run in a few minutes on
a laptop CPU; ``--model terramind_v1_base --weights hub --device cuda`` measures a real deployment. The whole
run is bounded by ``--deadline`` seconds: it stops by itself, then fails, if the server does not keep up.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
TILE = ROOT / "examples" / "S2L2A" / "38D_378R_2_3.tif"


def free_port() -> int:
    """Return a TCP port that is free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: argparse.Namespace, work: Path, port: int) -> subprocess.Popen[bytes]:
    """Start ``terramind serve`` with this run's settings (its log goes to ``work/server.log``)."""
    argv = [sys.executable, "-m", "terramind.cli.main", "serve", "--model", args.model,
            "--weights", args.weights, "--outputs", "LULC", "--inputs", "S2L2A", "--device", args.device,
            "--port", str(port), "--work-dir", str(work / "jobs"), "--queue-size", str(args.queue_size),
            "--workers", str(args.workers)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    env.pop("TERRAMIND_TOKEN", None)
    log = (work / "server.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> float:
    """Wait for ``/readyz``; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up (see its log)")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server was not ready before the deadline")


class Results:
    """What the clients saw, shared between their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, float] = {}  # job id -> seconds from submit to done
        self.refused = 0
        self.problems: list[str] = []

    def add(self, **kwargs: object) -> None:
        with self.lock:
            if "job" in kwargs:
                self.latency[str(kwargs["job"])] = float(kwargs["seconds"])  # type: ignore[arg-type]
            if kwargs.get("refused"):
                self.refused += 1
            if "problem" in kwargs:
                self.problems.append(str(kwargs["problem"]))


def client(url: str, jobs: int, args: argparse.Namespace, results: Results, deadline: float) -> None:
    """Submit ``jobs`` jobs back to back (a full queue answers 429), then follow each accepted one."""
    data = {"outputs": "LULC", "diffusion_steps": str(args.diffusion_steps), "seed": "0"}
    tile = TILE.read_bytes()
    submitted: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(jobs):
            start = time.monotonic()
            response = http.post("/v1/generate", data=data, files={"S2L2A": (TILE.name, tile, "image/tiff")})
            if response.status_code == 429 and response.headers.get("retry-after", "").isdigit():
                results.add(refused=True)
            elif response.status_code == 202:
                submitted[response.json()["id"]] = start
            else:
                results.add(problem=f"submit answered {response.status_code}: {response.text}")
        while submitted and time.monotonic() < deadline:
            for job_id, start in list(submitted.items()):
                state = http.get(f"/v1/jobs/{job_id}").json()["state"]
                if state == "done":
                    results.add(job=job_id, seconds=time.monotonic() - start)
                elif state in ("failed", "cancelled"):
                    results.add(problem=f"job {job_id} ended {state}")
                if state in ("done", "failed", "cancelled"):
                    del submitted[job_id]
            time.sleep(0.1)
        for job_id in submitted:
            results.add(problem=f"job {job_id} did not end before the deadline")


def check_outputs(url: str, results: Results) -> None:
    """No job lost (all listed and done) or corrupted (input georeference, ids 0-9, equal pixels)."""
    listed = {j["id"]: j["state"] for j in httpx.get(f"{url}/v1/jobs", timeout=30).json()["jobs"]}
    first: np.ndarray | None = None
    with rasterio.open(TILE) as src:
        grid = (src.crs, src.transform, src.shape)
    for job_id in results.latency:
        if listed.get(job_id) != "done":
            results.add(problem=f"job {job_id} is {listed.get(job_id, 'missing')} in /v1/jobs")
            continue
        tif = httpx.get(f"{url}/v1/jobs/{job_id}/outputs/LULC.tif", timeout=30).content
        with rasterio.open(io.BytesIO(tif)) as out:
            pixels = out.read()
            if (out.crs, out.transform, out.shape) != grid or pixels.max() > 9:
                results.add(problem=f"job {job_id}: output off the input grid or with ids over 9")
        if first is None:
            first = pixels
        elif not np.array_equal(first, pixels):
            results.add(problem=f"job {job_id}: pixels differ from the first job's (same request and seed)")


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of sorted values."""
    return sorted_values[max(0, min(len(sorted_values), round(q / 100 * len(sorted_values))) - 1)]


def main() -> None:
    """Run the load test and write the numbers."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--queue-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--model", default="terramind_v1_tiny")
    p.add_argument("--weights", default="random")
    p.add_argument("--device", default="cpu")
    p.add_argument("--diffusion-steps", type=int, default=1)
    p.add_argument("--deadline", type=float, default=900.0, help="seconds the whole run may take")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    deadline = time.monotonic() + args.deadline
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with TemporaryDirectory() as tmp:
        work = Path(tmp)
        process = start_server(args, work, port)
        try:
            ready_s = wait_ready(url, process, deadline)
            results = Results()
            shares = [args.jobs // args.clients + (i < args.jobs % args.clients) for i in range(args.clients)]
            threads = [
                threading.Thread(target=client, args=(url, n, args, results, deadline)) for n in shares
            ]
            start = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            wall = time.monotonic() - start
            check_outputs(url, results)
        finally:
            process.terminate()
            process.wait(30)
    latencies = sorted(results.latency.values())
    report = {
        "jobs": args.jobs, "clients": args.clients, "queue_size": args.queue_size, "workers": args.workers,
        "model": args.model, "weights": args.weights, "device": args.device,
        "diffusion_steps": args.diffusion_steps, "ready_s": round(ready_s, 1),
        "done": len(latencies), "refused_429": results.refused, "lost_or_corrupted": len(results.problems),
        "latency_p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "latency_p95_s": round(percentile(latencies, 95), 2) if latencies else None,
        "jobs_per_minute": round(60 * len(latencies) / wall, 1), "wall_s": round(wall, 1),
    }  # fmt: skip
    print(json.dumps(report, indent=1))
    for problem in results.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if results.problems or len(latencies) + results.refused != args.jobs:
        raise SystemExit("some jobs were lost or corrupted (see above)")


if __name__ == "__main__":
    main()
