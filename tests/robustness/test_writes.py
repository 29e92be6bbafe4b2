"""Writes that cannot lie: a full disk, two runs on one folder, a kill mid-write, changed weights on resume,
files the user did not ask to touch, stale shards, and resuming within a row of tiles.

Disk-full cases inject the failure where it happens: GDAL's real write path fails under a file-size limit
(``RLIMIT_FSIZE``, the closest to ENOSPC without a tiny file system), numpy and torch writes raise ENOSPC, and
``shutil.disk_usage`` reports an almost full disk so that GDAL's and torch's errno-less messages are read as
a full disk.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import resource
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from terramind.api import generation as api_generation
from terramind.checkpoints.lightning_io import AtomicCheckpointIO
from terramind.core import DiskFullError
from terramind.core import files as core_files
from terramind.core.files import TMP_MARK
from terramind.generation.scene import generate_scene
from terramind.scene import SceneOutput, sinks, sources

ROOT = Path(__file__).resolve().parents[2]
S2 = ROOT / "examples" / "S2L2A" / "38D_378R_2_3.tif"
_spec = importlib.util.spec_from_file_location("gen_tiny", ROOT / "tests" / "generation" / "tiny.py")
assert _spec is not None and _spec.loader is not None
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

FAST = ["--tile", "64", "--overlap", "16", "--diffusion-steps", "1", "--batch", "2", "--weights", "random"]
Usage = namedtuple("Usage", "total used free")
ALMOST_FULL = Usage(10**10, 10**10 - 200_000, 200_000)  # 0.2 MB free


@pytest.fixture
def seeds(monkeypatch):
    """The tiny random generator in place of the real factory; ``seeds[0]`` picks its weights."""
    chosen = [0]

    def factory(name, *, inputs, outputs, weights=None, tokenizer_weights=None):
        return tiny.tiny_generator(inputs, outputs, seed=chosen[0])

    monkeypatch.setattr(api_generation, "create_generator", factory)
    return chosen


def _scene(tmp_path: Path, rows: int = 150, cols: int = 100) -> Path:
    with rasterio.open(S2) as src:
        data = src.read()[:, :rows, :cols].astype(np.float32)
        profile = dict(src.profile, width=cols, height=rows, dtype="float32", tiled=False)
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
    path = tmp_path / "s2.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _temps(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if TMP_MARK in p.name]


def _one_line_failure(outcome, *phrases: str, code: int = 2) -> None:
    assert outcome.code == code, outcome.err
    errors = [line for line in outcome.err.splitlines() if "error:" in line]  # besides notes and progress
    assert "Traceback" not in outcome.err and len(errors) == 1, outcome.err
    for phrase in phrases:
        assert phrase in outcome.err, outcome.err


@pytest.fixture
def file_size_limit():
    """Set a file-size limit (bytes) for this process until the test ends (SIGXFSZ is ignored by Python)."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, old[1]))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, old)


def test_disk_full_on_the_final_geotiff_keeps_the_old_one_and_resumes(
    tmp_path, seeds, run_cli, monkeypatch, file_size_limit
):
    s2 = _scene(tmp_path)
    out = tmp_path / "out"
    args = ["generate", "--input", f"S2L2A={s2}", "--to", "DEM", *FAST, "--out", out]
    assert run_cli([*args[:-1], tmp_path / "full"]).code == 0
    out.mkdir()
    (out / "DEM.tif").write_bytes(b"precious")
    finalize = sinks.GeoTiffSink.publish

    def full_disk_finalize(self, rows, overwrite):
        file_size_limit(20_000)  # strips are written; the 60 kB output is not: GDAL fails for real
        try:
            return finalize(self, rows, overwrite)
        finally:
            file_size_limit(resource.RLIM_INFINITY)

    monkeypatch.setattr(sinks.GeoTiffSink, "publish", full_disk_finalize)
    monkeypatch.setattr(core_files.shutil, "disk_usage", lambda path: ALMOST_FULL)
    outcome = run_cli([*args, "--overwrite"])
    _one_line_failure(outcome, "disk full while writing", "DEM.tif", "MB needed", "0.2 MB free")
    assert (out / "DEM.tif").read_bytes() == b"precious" and _temps(tmp_path) == []
    assert (out / ".terramind-partial" / "progress.json").exists()  # resumable
    monkeypatch.undo()
    monkeypatch.setattr(
        api_generation, "create_generator", lambda n, **k: tiny.tiny_generator(k["inputs"], k["outputs"])
    )
    assert run_cli([*args, "--overwrite"]).code == 0  # space freed: finishes from the saved strips
    with rasterio.open(tmp_path / "full" / "DEM.tif") as a, rasterio.open(out / "DEM.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert not (out / ".terramind-partial").exists() and _temps(tmp_path) == []


def test_disk_full_on_the_resume_state_npz(tmp_path, seeds, run_cli, monkeypatch):
    s2 = _scene(tmp_path)
    savez = np.savez

    def enospc(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", enospc)
    args = ["generate", "--input", f"S2L2A={s2}", "--to", "DEM", *FAST, "--out", tmp_path / "out"]
    outcome = run_cli(args)
    _one_line_failure(outcome, "disk full while writing", "carry-00001.npz")
    assert _temps(tmp_path) == [] and not list((tmp_path / "out").glob("*.tif"))
    monkeypatch.setattr(np, "savez", savez)
    assert run_cli(args).code == 0


def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, file_size_limit):
    io = AtomicCheckpointIO()
    target = tmp_path / "best-epoch=000.ckpt"
    io.save_checkpoint({"w": torch.zeros(10)}, target)
    before = target.read_bytes()
    monkeypatch.setattr(core_files.shutil, "disk_usage", lambda path: ALMOST_FULL)
    file_size_limit(50_000)
    try:
        with pytest.raises(DiskFullError, match=r"disk full while writing .*best-epoch=000\.ckpt"):
            io.save_checkpoint({"w": torch.zeros(1_000_000)}, target)  # 4 MB: torch's writer fails for real
    finally:
        file_size_limit(resource.RLIM_INFINITY)
    assert target.read_bytes() == before and _temps(tmp_path) == []
    assert torch.load(target, weights_only=True)["w"].shape == (10,)


HOLD = "import sys\nfrom terramind.core.lock import folder_lock\nwith folder_lock(sys.argv[1]):\n" \
       "    print('locked', flush=True)\n    sys.stdin.readline()\n"  # fmt: skip


def test_a_second_run_on_the_same_folder_stops_naming_the_pid(tmp_path, seeds, run_cli):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        outcome = run_cli(["generate", "--input", f"S2L2A={S2}", "--to", "DEM", *FAST, "--out", out])
        outcome.expect_failure("being written by another run", f"PID {proc.pid}", f"kill {proc.pid}")
    finally:
        proc.kill()
        proc.wait()


def test_a_kill_during_the_final_write_leaves_the_target_untouched(tmp_path, seeds, run_cli, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "DEM.tif").write_bytes(b"precious")
    write = sinks.RasterWriter.write
    calls = [0]

    def killed(self, data, window):
        calls[0] += 1
        if calls[0] == 2:
            raise KeyboardInterrupt  # Ctrl-C halfway through copying strips into the output
        write(self, data, window)

    monkeypatch.setattr(sinks.RasterWriter, "write", killed)
    outcome = run_cli(["generate", "--input", f"S2L2A={_scene(tmp_path)}", "--to", "DEM", *FAST,
                       "--out", out, "--overwrite"])  # fmt: skip
    assert outcome.code == 130 and calls[0] == 2
    assert (out / "DEM.tif").read_bytes() == b"precious" and _temps(tmp_path) == []


def _interrupt_after(monkeypatch, calls: int) -> None:
    """Make the tiny generator raise KeyboardInterrupt on its ``calls + 1``-th batch."""
    real = tiny.tiny_generator
    count = [0]

    def flaky(inputs, outputs, seed=0):
        gen = real(inputs, outputs, seed)
        generate = gen.generate

        def interrupted(*a, **k):
            count[0] += 1
            if count[0] > calls:
                raise KeyboardInterrupt
            return generate(*a, **k)

        gen.generate = interrupted
        return gen

    monkeypatch.setattr(tiny, "tiny_generator", flaky)


def test_resume_with_other_weights_is_refused_naming_what_changed(tmp_path, seeds, run_cli, monkeypatch):
    s2 = _scene(tmp_path)
    out = tmp_path / "out"
    args = ["generate", "--input", f"S2L2A={s2}", "--to", "DEM", *FAST, "--out", out]
    real = tiny.tiny_generator
    _interrupt_after(monkeypatch, 2)  # 3 rows of 2 tiles, a batch per row: stop in the last row
    assert run_cli(args).code == 130
    monkeypatch.setattr(tiny, "tiny_generator", real)
    seeds[0] = 1  # other weights behind the same `--weights random`
    run_cli(args).expect_failure("interrupted run", "the weights", "--overwrite to start afresh")
    outcome = run_cli([*args, "--seed", "7"])
    outcome.expect_failure("the weights", "option seed (0 -> 7)")
    os.utime(s2, ns=(1, 1))
    run_cli(args).expect_failure(f"input S2L2A {str(s2.resolve())!r} (modification time changed)")
    assert run_cli([*args, "--overwrite"]).code == 0  # starts afresh with the new weights
    seeds[0], fresh = 1, tmp_path / "fresh"
    assert run_cli([*args[:-1], fresh]).code == 0
    with rasterio.open(fresh / "DEM.tif") as a, rasterio.open(out / "DEM.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())  # nothing of the first weights' tiles remains


class _Water:
    """Duck-typed generator: water where NDWI > 0 (as in tests/cli/test_zeroshot.py)."""

    def keep_loaded(self):
        return self

    def to(self, device):
        return self

    def generate(self, inputs, **options):
        s2 = inputs["S2L2A"]
        water = (s2[:, 2] - s2[:, 7]) / (s2[:, 2] + s2[:, 7] + 1e-6) > 0
        logits = torch.zeros(s2.shape[0], 10, *s2.shape[-2:])
        logits[:, 1], logits[:, 2] = water.float() * 10, (~water).float() * 10
        return {"LULC": logits.argmax(1, keepdim=True), "LULC_logits": logits}


def test_zeroshot_water_never_touches_an_existing_lulc_file(tmp_path, run_cli, monkeypatch):
    import terramind.cli.zeroshot as zeroshot

    monkeypatch.setattr(zeroshot, "create_generator", lambda *a, **k: _Water())
    (tmp_path / "w_lulc.tif").write_bytes(b"the user's own map")
    args = ["zeroshot", "water", "--input", f"S2L2A={S2}", "--output", tmp_path / "w.tif", "--tile", "112"]
    outcome = run_cli(args)
    assert outcome.code == 0, outcome.err
    assert (tmp_path / "w_lulc.tif").read_bytes() == b"the user's own map"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.tif", "w_lulc.tif"]  # no work folder, no lock
    assert run_cli([*args, "--keep-lulc", "--overwrite"]).code == 0  # asked for: replaced
    with rasterio.open(tmp_path / "w_lulc.tif") as f:
        assert f.count == 1 and f.dtypes[0] == "uint8"
    (tmp_path / "w_lulc.tif").write_bytes(b"the user's own map")
    (tmp_path / "w.tif").unlink()
    run_cli([*args, "--keep-lulc"]).expect_failure("w_lulc.tif", "exists", "--overwrite")


def test_a_folder_given_as_output_file_is_named(tmp_path, run_cli):
    (tmp_path / "w.tif").mkdir()
    outcome = run_cli(["zeroshot", "water", "--input", f"S2L2A={S2}", "--output", tmp_path / "w.tif"])
    outcome.expect_failure("is a folder: give a file path")
    assert "--overwrite" not in outcome.err


def test_prepare_rerun_replaces_the_set_instead_of_merging(tmp_path, run_cli, examples_dir):
    src = tmp_path / "src"
    for mod in ("S2L2A", "DEM"):
        (src / mod).mkdir(parents=True)
        for f in sorted((examples_dir / mod).glob("*.tif"))[:3]:
            (src / mod / f.name).symlink_to(f)
    tiles = sorted(f.stem for f in (src / "DEM").glob("*.tif"))
    out = tmp_path / "shards"
    args = ["prepare", "--src", src, "--out", out, "--shard-size", "1"]
    assert run_cli(args).code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"shard-{i:06d}.tar" for i in range(3)]
    run_cli([*args, "--exclude", tiles[0]], watch=tmp_path).expect_failure(
        "already holds 3 file(s)", "--overwrite"
    )
    assert run_cli([*args, "--exclude", tiles[0], "--overwrite"]).code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"shard-{i:06d}.tar" for i in range(2)]
    from terramind.data.shards import read_samples

    keys = {s.key for p in sorted(out.iterdir()) for s in read_samples(p)}
    assert keys == set(tiles[1:]) and sorted(p.name for p in tmp_path.iterdir()) == ["shards", "src"]


def test_resume_within_a_row_computes_only_the_remaining_tiles(tmp_path):
    width, height, tile = 400, 64, 64  # one row of 8 tiles (stride 48)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(12, height, width)).astype(np.float32) * 1000 + 2000
    path = tmp_path / "wide.tif"
    profile = dict(driver="GTiff", width=width, height=height, count=12, dtype="float32", crs="EPSG:32632",
                   transform=rasterio.Affine(10, 0, 500000, 0, -10, 6000000))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    seen: list[int] = []

    def fn(tiles, indices):
        seen.extend(indices)
        x = tiles["S2L2A"][:, :1]
        return {"DEM": x * 0.5 + np.asarray(indices, np.float32)[:, None, None, None]}

    def run(name: str, stop_after: int | None = None) -> Path:
        def maybe_stop(tiles, indices):
            if stop_after is not None and len(seen) >= stop_after:
                raise KeyboardInterrupt
            return fn(tiles, indices)

        out = tmp_path / name
        out.mkdir(exist_ok=True)
        generate_scene(
            maybe_stop, {"S2L2A": path}, [SceneOutput.for_modality("DEM", out / "DEM.tif")],
            work_dir=out / ".work", tile=tile, overlap=16, batch=2, fill=sources.fill_values(["S2L2A"]),
            checkpoint_seconds=0,
        )  # fmt: skip
        return out / "DEM.tif"

    full = run("full")
    assert seen == list(range(8))
    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        run("part", stop_after=6)  # three batches of two done, the fourth interrupted
    progress = json.loads((tmp_path / "part" / ".work" / "progress.json").read_text())
    parts = [f"row-00000-cols-{a:06d}-{b:06d}.npz" for a, b in ((0, 96), (96, 192), (192, 288))]
    assert progress["next_row"] == 0  # tile columns start at 0, 48, ..., 336: each save stores what is final
    assert progress["partial"] == {"parts": parts, "tail": "row-00000-tail-00006.npz"}
    assert sorted(p.name for p in (tmp_path / "part" / ".work").glob("*.npz")) == [
        *parts,
        progress["partial"]["tail"],
    ]
    seen.clear()
    part = run("part")
    assert seen == [6, 7]  # only the remaining tiles
    with rasterio.open(full) as a, rasterio.open(part) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_fine_tuning_trainers_write_checkpoints_atomically(tmp_path, examples_dir):
    from terramind.finetune.config import FinetuneConfig
    from terramind.train.config import load_yaml
    from terramind.train.engine import build_trainer

    spec = importlib.util.spec_from_file_location("ft_cli", ROOT / "tests" / "cli" / "test_finetune.py")
    assert spec is not None and spec.loader is not None
    ft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ft)
    config = load_yaml(FinetuneConfig, ft._config(tmp_path, examples_dir))
    trainer = build_trainer(config.trainer, 0.0, sampler=True)  # the builder of every fine-tuning command
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


class _PerPixel(torch.nn.Module):
    """A dense model of one 1x1 convolution over S1RTC."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.conv(inputs["S1RTC"])


def test_finetune_scene_refuses_a_folder_another_run_writes(tmp_path, tiny_geotiff):
    from terramind.core import BusyError
    from terramind.data.tiles import modality_inputs
    from terramind.finetune.scene import predict_scene

    s1 = tiny_geotiff(np.full((2, 32, 32), -10, np.float32), name="s1.tif")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(BusyError, match=f"PID {proc.pid}"):
            predict_scene(
                _PerPixel(), {"S1RTC": s1}, modality_inputs(["S1RTC"], {}, {}, {}, {}), out / "pred.tif",
                out_channels=2, tile=32, overlap=8,
            )  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
    assert sorted(p.name for p in out.iterdir()) == [".terramind.lock"]  # the holder's, nothing of ours


@pytest.mark.parametrize("read_all", [True, False])
def test_a_geotiff_that_failed_on_flush_is_never_published(
    tmp_path, tiny_geotiff, monkeypatch, file_size_limit, read_all
):
    from terramind.data import geotiff

    if not read_all:  # a scene-sized output: only its first and last blocks are read back
        monkeypatch.setattr(geotiff, "VERIFY_ALL_BYTES", 0)
    georef = geotiff.open_georef(tiny_geotiff(bands=1, size=32))
    georef = geotiff.GeoRef(georef.crs, georef.transform, 512, 512)
    data = np.random.default_rng(0).normal(size=(1, 512, 512)).astype(np.float32)  # 1 MB, incompressible
    geotiff.write_raster(tmp_path / "ok.tif", data, georef)  # the check passes a sound file
    with rasterio.open(tmp_path / "ok.tif") as f:
        np.testing.assert_array_equal(f.read(), data)
    (tmp_path / "out.tif").write_bytes(b"previous")
    monkeypatch.setattr(core_files.shutil, "disk_usage", lambda path: ALMOST_FULL)
    file_size_limit(100_000)
    try:
        with pytest.raises(DiskFullError, match="disk full while writing"):
            geotiff.write_raster(tmp_path / "out.tif", data, georef, overwrite=True)
    finally:
        file_size_limit(resource.RLIM_INFINITY)
    assert (tmp_path / "out.tif").read_bytes() == b"previous" and _temps(tmp_path) == []


@pytest.mark.parametrize("batch_after", [2, 3])
def test_resume_within_a_later_row_with_the_carry_and_any_batch(tmp_path, batch_after):
    width, height = 400, 100  # two rows of 8 tiles (rows start at 0 and 36)
    data = np.random.default_rng(1).normal(size=(12, height, width)).astype(np.float32) * 1000 + 2000
    path = tmp_path / "wide.tif"
    profile = dict(driver="GTiff", width=width, height=height, count=12, dtype="float32", crs="EPSG:32632",
                   transform=rasterio.Affine(10, 0, 500000, 0, -10, 6000000))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    seen: list[int] = []

    def run(name: str, batch: int, stop_after: int | None = None) -> np.ndarray:
        def fn(tiles, indices):
            if stop_after is not None and len(seen) >= stop_after:
                raise KeyboardInterrupt
            seen.extend(indices)
            return {
                "DEM": tiles["S2L2A"][:, 3:4] * 0.25 + np.asarray(indices, np.float32)[:, None, None, None]
            }

        out = tmp_path / name
        out.mkdir(exist_ok=True)
        generate_scene(
            fn, {"S2L2A": path}, [SceneOutput.for_modality("DEM", out / "DEM.tif")], work_dir=out / ".work",
            tile=64, overlap=16, batch=batch, fill=sources.fill_values(["S2L2A"]), checkpoint_seconds=0,
        )  # fmt: skip
        with rasterio.open(out / "DEM.tif") as f:
            return f.read()

    full = run("full", 2)
    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        run("part", 2, stop_after=12)  # row 0 done, row 1 saved after its second batch (tiles 8-11)
    seen.clear()
    np.testing.assert_array_equal(run("part", batch_after), full)
    # the same batches continue where the run stopped; other batches redo the row from its carry
    assert seen == (list(range(12, 16)) if batch_after == 2 else list(range(8, 16)))
