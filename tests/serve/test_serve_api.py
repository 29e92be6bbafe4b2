"""The HTTP API over a tiny random generator: every route, every refusal, restarts (FastAPI's test client)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from serve_support import EXAMPLES, S2, MakeClient, tiny

from terramind.serve.app import ServeConfig, create_app
from terramind.serve.host import ModelHost
from terramind.serve.jobs import Job, JobStore

LULC_ONLY = {"outputs": "LULC", "diffusion_steps": "1"}  # one 224 px tile, the ViT decoder: about a second


def upload(path: Path = S2, name: str = "S2L2A") -> dict[str, tuple[str, bytes, str]]:
    return {name: (path.name, path.read_bytes(), "image/tiff")}


def wait_for(
    client: TestClient, job_id: str, states: tuple[str, ...] = ("done", "failed"), timeout: float = 60
):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["state"] in states:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not in {states} after {timeout} s: {body}")


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------------------ health
def test_health_ready_and_info(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    info = client.get("/v1/info").json()
    assert info["inputs"] == ["S2L2A", "S1RTC"] and info["outputs"] == ["LULC", "DEM"]
    assert info["fields"]["diffusion_steps"]["default"] == 10
    assert info["fields"]["strategy"]["enum"] == ["single", "roar", "maskgit"]
    assert "38D_378R_2_3.tif" in info["examples"]["S2L2A"]
    assert [c["name"] for c in info["modalities"]["LULC"]["classes"]][:2] == ["no data", "water"]
    assert info["limits"]["max_tiles"] == 4096


def test_readyz_is_503_while_loading_and_after_a_failed_load(tmp_path: Path) -> None:
    release = threading.Event()

    def slow():
        release.wait(30)
        return tiny.tiny_generator(["S2L2A"], ["LULC"])

    app = create_app(ServeConfig(work_dir=tmp_path / "a"), ModelHost(slow))
    with TestClient(app) as client:
        loading = client.get("/readyz")
        assert loading.status_code == 503 and loading.json()["state"] == "loading"
        refused = client.post("/v1/generate", files=upload(), data=LULC_ONLY)
        assert refused.status_code == 503 and "still loading" in refused.json()["error"]
        assert refused.headers["retry-after"] == "5"
        release.set()
        assert app.state.host.wait(30)
        assert client.get("/readyz").status_code == 200

    def broken():
        from terramind.core.errors import CheckpointError

        raise CheckpointError("weights file 'x.pt' is truncated")

    app = create_app(ServeConfig(work_dir=tmp_path / "b"), ModelHost(broken))
    with TestClient(app) as client:
        app.state.host.wait(30)
        failed = client.get("/readyz")
        assert failed.status_code == 503 and "truncated" in failed.json()["error"]
        refused = client.post("/v1/generate", files=upload(), data=LULC_ONLY)
        assert refused.status_code == 503 and "failed to load" in refused.json()["error"]


# -------------------------------------------------------------------------------------------- generate
def test_generate_waits_and_outputs_keep_the_input_georeference(client: TestClient) -> None:
    response = client.post("/v1/generate?wait=true", files=upload(), data=LULC_ONLY)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["state"] == "done" and job["progress"] == {"tiles_done": 1, "tiles_total": 1}
    assert job["timings"]["run_s"] >= 0 and job["options"]["diffusion_steps"] == 1
    tif = client.get(job["outputs"]["LULC"]["tif"])
    assert tif.status_code == 200 and tif.headers["content-type"] == "image/tiff"
    with rasterio.open(io.BytesIO(tif.content)) as out, rasterio.open(S2) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert out.dtypes[0] == "uint8" and out.read().max() <= 9
    for url in (job["outputs"]["LULC"]["png"], job["inputs"]["S2L2A"]):
        png = client.get(url)
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_generate_returns_202_then_progress_can_be_polled(client: TestClient) -> None:
    data = {**LULC_ONLY, "tile": "112", "overlap": "16", "batch_size": "2", "seed": "3"}
    response = client.post("/v1/generate", data={**data, "S2L2A_example": S2.name})
    assert response.status_code == 202 and response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    job = wait_for(client, response.json()["id"])
    assert job["state"] == "done", job["error"]
    assert job["progress"] == {"tiles_done": 9, "tiles_total": 9}  # 3 x 3 tiles of 112 px with 16 px overlap
    assert job["spec"]["seed"] == 3 and job["spec"]["batch_size"] == 2
    listed = client.get("/v1/jobs").json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]] and listed["counts"]["done"] == 1


class Gate:
    """A stand-in for the host's model lock that lets ``free`` model calls through, then holds the next."""

    def __init__(self, free: int) -> None:
        self.free, self.calls = free, 0
        self.opened = threading.Event()

    def __enter__(self) -> None:
        self.calls += 1
        if self.calls > self.free:
            self.opened.wait(60)

    def __exit__(self, *exc: object) -> None:
        pass


def test_progress_is_visible_while_a_job_runs(client: TestClient) -> None:
    gate = Gate(free=3)
    client.app.state.host.lock = gate  # jobs take the lock when they start: 3 tile batches pass, then wait
    data = {**LULC_ONLY, "tile": "112", "overlap": "16", "batch_size": "1"}
    job_id = client.post("/v1/generate", files=upload(), data=data).json()["id"]
    end = time.monotonic() + 60
    while client.get(f"/v1/jobs/{job_id}").json()["progress"]["tiles_done"] < 3 and time.monotonic() < end:
        time.sleep(0.05)
    midway = client.get(f"/v1/jobs/{job_id}").json()
    assert midway["state"] == "running" and midway["progress"] == {"tiles_done": 3, "tiles_total": 9}
    assert midway["outputs"] == {} and midway["timings"]["finished"] is None
    gate.opened.set()
    assert wait_for(client, job_id)["progress"] == {"tiles_done": 9, "tiles_total": 9}


def test_same_request_same_output(client: TestClient) -> None:
    """Jobs are seeded like the CLI: two equal requests give byte-equal class maps."""
    first, second = (
        client.post("/v1/generate?wait=true", files=upload(), data=LULC_ONLY).json() for _ in "ab"
    )
    a, b = (client.get(j["outputs"]["LULC"]["tif"]).content for j in (first, second))
    with rasterio.open(io.BytesIO(a)) as ra, rasterio.open(io.BytesIO(b)) as rb:
        assert np.array_equal(ra.read(), rb.read())


def test_wait_with_zero_timeout_answers_202(client: TestClient) -> None:
    response = client.post("/v1/generate?wait=true&timeout=0", files=upload(), data=LULC_ONLY)
    assert response.status_code == 202 and response.json()["state"] in ("queued", "running")
    wait_for(client, response.json()["id"])


# ---------------------------------------------------------------------------------------------- token
def test_token_guards_every_route_but_health_and_the_page(make_client: MakeClient) -> None:
    client = make_client(token="s3cret")
    for method, url in [("get", "/v1/info"), ("get", "/v1/jobs"), ("post", "/v1/generate"),
                        ("get", "/v1/jobs/" + "0" * 32), ("delete", "/v1/jobs/" + "0" * 32),
                        ("post", "/v1/embed"), ("get", "/openapi.json")]:  # fmt: skip
        missing = getattr(client, method)(url)
        assert missing.status_code == 401, url
        assert "no token" in missing.json()["error"] and missing.headers["www-authenticate"] == "Bearer"
        wrong = getattr(client, method)(url, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong token" in wrong.json()["error"]
    for url in ("/healthz", "/readyz", "/", "/static/app.js"):
        assert client.get(url).status_code == 200, url
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/v1/info", headers=auth).status_code == 200
    done = client.post("/v1/generate?wait=true", files=upload(), data=LULC_ONLY, headers=auth).json()
    assert client.get(done["outputs"]["LULC"]["tif"]).status_code == 401
    assert client.get(done["outputs"]["LULC"]["tif"], headers=auth).status_code == 200


# --------------------------------------------------------------------------------------------- limits
def test_request_size_pixel_and_tile_limits_are_413_with_the_limit(make_client: MakeClient) -> None:
    small = make_client(max_upload_mb=0.1)  # the example upload is about 1.2 MB
    big = small.post("/v1/generate", files=upload(), data=LULC_ONLY)
    assert (
        big.status_code == 413
        and "0.1 MB" in big.json()["error"]
        and "--max-upload-mb" in big.json()["error"]
    )
    pixels = make_client(max_pixels=10_000, work_dir=small.app.state.cfg.work_dir.parent / "w2")
    refused = pixels.post("/v1/generate", files=upload(), data=LULC_ONLY)
    assert refused.status_code == 413
    assert "224 x 224 = 50176 pixels" in refused.json()["error"] and "10000" in refused.json()["error"]
    tiles = make_client(max_tiles=4, work_dir=small.app.state.cfg.work_dir.parent / "w3")
    refused = tiles.post("/v1/generate", files=upload(), data={**LULC_ONLY, "tile": "64", "overlap": "0"})
    assert refused.status_code == 413
    assert "16 tiles of 64 px" in refused.json()["error"] and "limit is 4 tiles" in refused.json()["error"]
    for client in (small, pixels, tiles):  # nothing of a refused request stays behind
        assert files_under(client.app.state.cfg.work_dir) == set()


def test_full_queue_is_429_with_retry_after(make_client: MakeClient) -> None:
    client = make_client(queue_size=1)
    host = client.app.state.host
    with host.lock:  # the model is busy: the first job runs (blocked), the second waits, the third is refused
        running = client.post("/v1/generate", files=upload(), data=LULC_ONLY).json()
        wait_for(client, running["id"], ("running",))
        queued = client.post("/v1/generate", files=upload(), data=LULC_ONLY)
        assert queued.status_code == 202
        refused = client.post("/v1/generate", files=upload(), data=LULC_ONLY)
        assert refused.status_code == 429 and "queue is full (1 jobs waiting" in refused.json()["error"]
        assert int(refused.headers["retry-after"]) >= 1
        early = client.get(f"/v1/jobs/{running['id']}/outputs/LULC.tif")
        assert early.status_code == 409 and "is running" in early.json()["error"]
    assert wait_for(client, queued.json()["id"])["state"] == "done"


# ---------------------------------------------------------------------------------------------- paths
def test_server_side_paths_stay_under_the_data_root(make_client: MakeClient, tmp_path: Path) -> None:
    closed = make_client(work_dir=tmp_path / "w0")
    off = closed.post("/v1/generate", data={**LULC_ONLY, "S2L2A_path": "x.tif"})
    assert off.status_code == 403 and "--data-root" in off.json()["error"]

    root = tmp_path / "data"
    (root / "scenes").mkdir(parents=True)
    (root / "scenes" / "t.tif").write_bytes(S2.read_bytes())
    outside = tmp_path / "secret.tif"
    outside.write_bytes(S2.read_bytes())
    (root / "link.tif").symlink_to(outside)
    client = make_client(data_root=root, work_dir=tmp_path / "w1")
    for path, phrase in [("../secret.tif", "must not contain '..'"), ("scenes/../../secret.tif", "'..'"),
                         (str(outside), "leads outside"), ("link.tif", "leads outside")]:  # fmt: skip
        refused = client.post("/v1/generate", data={**LULC_ONLY, "S2L2A_path": path})
        assert refused.status_code == 403 and phrase in refused.json()["error"], path
        assert str(tmp_path) not in refused.json()["error"] or path == str(outside)
    missing = client.post("/v1/generate", data={**LULC_ONLY, "S2L2A_path": "scenes/none.tif"})
    assert missing.status_code == 422 and "'scenes/none.tif': no such file" in missing.json()["error"]
    ok = client.post("/v1/generate?wait=true", data={**LULC_ONLY, "S2L2A_path": "scenes/t.tif"})
    assert ok.status_code == 200 and ok.json()["state"] == "done"
    example = client.post("/v1/generate", data={**LULC_ONLY, "S2L2A_example": "../S1RTC/" + S2.name})
    assert example.status_code == 403
    (root / "item.json").write_text("{}")  # a STAC item would make the server fetch the URLs it names
    stac = client.post("/v1/generate", data={**LULC_ONLY, "S2L2A_path": "item.json"})
    assert stac.status_code == 422 and "is a STAC item" in stac.json()["error"]


def test_uploads_must_be_tiffs(client: TestClient, tmp_path: Path) -> None:
    """An uploaded VRT could make GDAL read any file the server can: only TIFF headers are accepted."""
    vrt = tmp_path / "scene.tif"
    vrt.write_text(f'<VRTDataset rasterXSize="224" rasterYSize="224"><!-- {S2} --></VRTDataset>')
    refused = client.post("/v1/generate", files=upload(vrt), data=LULC_ONLY)
    assert refused.status_code == 422
    assert (
        refused.json()["error"]
        == "upload 'scene.tif' is not a GeoTIFF (no TIFF header): upload .tif files only"
    )
    assert files_under(client.app.state.cfg.work_dir) == set()


def test_downloads_only_of_the_jobs_own_files(client: TestClient) -> None:
    job = client.post("/v1/generate?wait=true", files=upload(), data=LULC_ONLY).json()
    base = f"/v1/jobs/{job['id']}"
    for name in ("DEM.tif", "job.json", "..%2Fjob.json", "LULC.npy", "S2L2A.tif"):
        assert client.get(f"{base}/outputs/{name}").status_code == 404, name
    assert client.get(f"{base}/inputs/S2L2A.tif").status_code == 404
    assert client.get("/v1/jobs/../../etc/passwd").status_code == 404
    unknown = client.get("/v1/jobs/" + "f" * 32)
    assert unknown.status_code == 404 and "no job" in unknown.json()["error"]


# --------------------------------------------------------------------------------------- validation
def test_bad_options_and_fields_are_422_naming_them(client: TestClient) -> None:
    cases = [
        ({"diffusion_steps": "0"}, "diffusion_steps must be an integer >= 1, got 0"),
        ({"diffusion_steps": "ten"}, "diffusion_steps must be an integer, got 'ten'"),
        ({"strategy": "greedy"}, "strategy must be one of single, roar, maskgit"),
        ({"top_p": "1.5"}, "top_p"),
        ({"chain": "maybe"}, "chain must be true or false"),
        ({"tile": "100"}, "tile must be a positive multiple of 16"),
        ({"overlap": "300"}, "overlap (300) must be 0 or more and smaller than tile (224)"),
        ({"outputs": "S1GRD"}, "outputs S1GRD are not served here; this server generates LULC, DEM"),
        ({"outputs": "LULX"}, "LULX"),
        ({"offset": "S2L2A:1000"}, "offset must look like MOD=NUMBER"),
        ({"diffusion-steps": "2"}, "unknown field(s) diffusion-steps"),
    ]
    for fields, phrase in cases:
        response = client.post("/v1/generate", files=upload(), data={**LULC_ONLY, **fields})
        assert response.status_code == 422, fields
        assert phrase in response.json()["error"], (fields, response.json())
    no_input = client.post("/v1/generate", data=LULC_ONLY)
    assert no_input.status_code == 422 and "no input" in no_input.json()["error"]
    not_taken = client.post("/v1/generate", files=upload(EXAMPLES / "DEM" / S2.name, "DEM"), data=LULC_ONLY)
    assert (
        not_taken.status_code == 422 and "this server takes inputs S2L2A, S1RTC" in not_taken.json()["error"]
    )
    unknown = client.post("/v1/generate", files=upload(name="S9"), data=LULC_ONLY)
    assert unknown.status_code == 422 and "form field 'S9'" in unknown.json()["error"]


def test_bad_files_are_422_with_the_clis_message(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal of a bad upload is the line the CLI prints for the same file.

    Band count and unreadable files are refused by the scene check of ``generate``; NaN without nodata by
    ``data.validate``, whose line ``inspect`` prints (``generate`` masks such NaN instead).
    """
    from terramind.cli.main import main

    bad = tmp_path / "bad.tif"
    with rasterio.open(S2) as src:
        profile, data = src.profile, src.read()
    profile.update(count=3)
    with rasterio.open(bad, "w", **profile) as dst:  # three bands given as S2L2A (12 expected)
        dst.write(data[:3])
    nan = tmp_path / "nan.tif"
    profile.update(count=12, dtype="float32", nodata=None)
    with rasterio.open(nan, "w", **profile) as dst:  # NaN without a declared nodata
        dst.write(np.where(np.arange(224)[None, None] < 5, np.nan, data.astype("float32")))
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    monkeypatch.chdir(tmp_path)
    generate = ["generate", "--to", "LULC", "-o", "out", "--weights", "random", "--input"]
    cases = [
        (bad, [*generate, "S2L2A=bad.tif"], "has 3 band(s); expected 12"),
        (garbage, [*generate, "S2L2A=garbage.tif"], "garbage.tif"),
        (nan, ["inspect", "nan.tif", "--modality", "S2L2A"], "no nodata value"),
    ]
    for path, argv, phrase in cases:
        response = client.post("/v1/generate", files=upload(path), data=LULC_ONLY)
        assert response.status_code == 422, (path.name, response.text)
        code = main(argv)
        cli = capsys.readouterr().err.strip().split(": error: ", 1)[-1]
        assert code == 2 and response.json()["error"] == cli and phrase in cli, path.name
        assert str(tmp_path) not in response.json()["error"]  # no server path in the message
    assert files_under(client.app.state.cfg.work_dir) == set()


# --------------------------------------------------------------------------------------------- delete
def test_delete_cancels_queued_and_running_jobs_and_removes_finished_ones(client: TestClient) -> None:
    store = JobStore(client.app.state.cfg.work_dir)
    host = client.app.state.host
    with host.lock:
        running = client.post("/v1/generate", files=upload(), data=LULC_ONLY).json()["id"]
        wait_for(client, running, ("running",))
        queued = client.post("/v1/generate", files=upload(), data=LULC_ONLY).json()["id"]
        cancelled = client.delete(f"/v1/jobs/{queued}").json()
        assert cancelled["state"] == "cancelled" and files_under(store.folder(queued)) == {"job.json"}
        assert client.delete(f"/v1/jobs/{running}").json()["state"] == "cancelled"
        again = client.delete(f"/v1/jobs/{running}")  # while it winds down: still there, still cancelled
        assert again.status_code == 200 and again.json()["state"] == "cancelled"
    end = time.monotonic() + 30
    while files_under(store.folder(running)) != {"job.json"} and time.monotonic() < end:
        time.sleep(0.05)
    assert files_under(store.folder(running)) == {"job.json"}  # its strips, outputs and upload went
    assert client.get(f"/v1/jobs/{running}").json()["state"] == "cancelled"
    done = client.post("/v1/generate?wait=true", files=upload(), data=LULC_ONLY).json()["id"]
    assert client.delete(f"/v1/jobs/{done}").json() == {"id": done, "deleted": True}
    assert client.get(f"/v1/jobs/{done}").status_code == 404 and not store.folder(done).exists()


def test_finished_jobs_expire_after_keep_hours(client: TestClient) -> None:
    runner = client.app.state.runner
    job = client.post("/v1/generate?wait=true", files=upload(), data=LULC_ONLY).json()["id"]
    assert runner.expire(now=time.time() + 23 * 3600) == []  # kept for 24 h by default
    assert runner.expire(now=time.time() + 25 * 3600) == [job]
    assert client.get(f"/v1/jobs/{job}").status_code == 404
    assert not JobStore(client.app.state.cfg.work_dir).folder(job).exists()


# -------------------------------------------------------------------------------------------- restart
def test_finished_jobs_survive_a_restart(make_client: MakeClient) -> None:
    first = make_client()
    job = first.post("/v1/generate?wait=true", files=upload(), data=LULC_ONLY).json()
    tif = first.get(job["outputs"]["LULC"]["tif"]).content
    first.__exit__(None, None, None)
    second = make_client()  # a new server over the same work folder
    again = second.get(f"/v1/jobs/{job['id']}").json()
    assert again["state"] == "done" and again["timings"] == job["timings"]
    assert second.get(job["outputs"]["LULC"]["tif"]).content == tif


def test_unfinished_jobs_are_resumed_by_the_next_server(make_client: MakeClient, tmp_path: Path) -> None:
    store = JobStore(tmp_path / "work")  # what a server killed while running a job leaves on disk
    job = Job(
        id="a" * 32, state="running", inputs={"S2L2A": str(S2)},
        spec={"outputs": ["LULC"], "seed": 0, "offset": {}, "tile": 224, "overlap": 32, "batch_size": 4},
        options={"diffusion_steps": 1}, width=224, height=224, tiles_total=1, started=time.time(),
    )  # fmt: skip
    store.save(job)
    client = make_client()
    resumed = wait_for(client, job.id)
    assert resumed["state"] == "done", resumed["error"]
    assert client.get(resumed["outputs"]["LULC"]["tif"]).status_code == 200


# ---------------------------------------------------------------------------------------------- CORS
def test_cors_is_off_by_default(make_client: MakeClient, tmp_path: Path) -> None:
    origin = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    closed = make_client(work_dir=tmp_path / "w0")
    assert "access-control-allow-origin" not in closed.options("/v1/generate", headers=origin).headers
    assert "access-control-allow-origin" not in closed.get("/v1/info", headers=origin).headers
    opened = make_client(work_dir=tmp_path / "w1", cors_origins=("https://elsewhere.example",))
    allowed = opened.get("/v1/info", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "https://elsewhere.example"


# --------------------------------------------------------------------------------------------- embed
def test_embed_pooled_json_and_tokens_npy(client: TestClient) -> None:
    pooled = client.post("/v1/embed", files=upload())
    assert pooled.status_code == 200, pooled.text
    body = pooled.json()
    assert body["shape"] == [192] and len(body["embedding"]) == 192  # v1 tiny: width 192
    tokens = client.post("/v1/embed", files=upload(), data={"pooling": "tokens", "format": "npy"})
    array = np.load(io.BytesIO(tokens.content))
    assert array.shape == (196, 192)  # 14 x 14 patches of 16 px
    # the pooled vector is the mean over the tokens (float32 sums of 196 values: 1e-5 relative)
    np.testing.assert_allclose(array.mean(0), np.array(body["embedding"]), rtol=1e-5, atol=1e-6)


def test_embed_refusals(client: TestClient) -> None:
    cases = [
        ({"layer": "99"}, "layer 99 is outside the encoder's 12 blocks"),
        ({"pooling": "max"}, "pooling must be one of mean, tokens"),
        ({"seed": "1"}, "unknown field(s) seed"),
    ]
    for fields, phrase in cases:
        response = client.post("/v1/embed", files=upload(), data=fields)
        assert response.status_code == 422 and phrase in response.json()["error"], response.json()
    small = client.app.state.cfg.max_embed_pixels
    assert small == 1024 * 1024


def test_openapi_lists_the_form_fields(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/generate"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    props = body["properties"]
    assert props["diffusion_steps"]["default"] == 10 and props["S2L2A"]["format"] == "binary"
    assert "S2L2A_path" in props and "outputs" in props


@pytest.mark.parametrize("bad", ["not-an-id", "0" * 31])
def test_malformed_job_ids_are_404(client: TestClient, bad: str) -> None:
    assert client.get(f"/v1/jobs/{bad}").status_code == 404
    assert client.delete(f"/v1/jobs/{bad}").status_code == 404


def test_a_bug_is_a_500_with_json(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a bug gives 500, and it is still one JSON line (the traceback goes to the server's log)."""
    from terramind.serve import app as app_module

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app_module, "check_inputs", broken)
    crashed = TestClient(client.app, raise_server_exceptions=False).post(
        "/v1/generate", files=upload(), data=LULC_ONLY
    )
    assert crashed.status_code == 500
    assert crashed.json() == {
        "error": "internal error (RuntimeError): this is a bug in terramind; please report it"
    }
