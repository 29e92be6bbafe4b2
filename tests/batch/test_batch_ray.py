"""Many scenes on a local Ray cluster (num_cpus=2): results table, rerun, a failing scene, a killed worker.

One cluster serves the module (Ray starts in seconds, not milliseconds). Scenes are 96 x 96 px crops of three
example tiles, run with the tiny model and random weights (seeded from their names: every worker builds the
same weights) in 64 px tiles overlapping by 16 px: 2 x 2 tiles per scene, one row of tiles per model call.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rasterio
from rasterio.windows import Window

from terramind.batch import Cluster, GenerateJob, Scene, read_results, run
from terramind.cli.main import main

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

TILES = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1"]
JOB = GenerateJob(("LULC",), model="terramind_v1_tiny", weights="random", tile=64, overlap=16, batch_size=2)
CLI_JOB = ["--to", "LULC", "--model", "tiny", "--weights", "random", "--tile", "64", "--overlap", "16",
           "--batch-size", "2"]  # fmt: skip
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


@pytest.fixture(scope="module")
def cluster() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test's job wrapper, by value
    yield
    ray.shutdown()


def _crop(src_path: Path, out: Path, size: int = 96) -> Path:
    with rasterio.open(src_path) as src:
        window = Window(0, 0, size, size)
        profile = {**src.profile, "width": size, "height": size, "transform": src.window_transform(window)}
        data = src.read(window=window)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, examples_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    for name in TILES:
        _crop(examples_dir / "S2L2A" / f"{name}.tif", folder / f"{name}.tif")
    path = folder / "scenes.csv"
    path.write_text("S2L2A\n" + "".join(f"{name}.tif\n" for name in TILES))  # relative to the manifest
    return path


@pytest.fixture(scope="module")
def reference(cluster: Any, manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    report = run(JOB, manifest, out, cluster=Cluster(workers=2), progress=False)
    assert [r.status for r in report.records] == ["done"] * 3, report.records
    return out


def test_every_scene_is_done_with_its_outputs_in_the_table(reference: Path) -> None:
    records = read_results(reference / "results.parquet")
    assert sorted(records) == sorted(TILES)  # names default to the source's stem
    for name, record in records.items():
        assert record.status == "done" and record.tiles == 4 and record.attempts == 1 and record.error == ""
        assert record.outputs == (str(reference / name / "LULC.tif"),)
        with rasterio.open(record.outputs[0]) as out:
            assert (out.width, out.height, out.dtypes[0]) == (96, 96, "uint8")
        assert not (reference / name / ".terramind-partial").exists()  # work folders removed
    assert (reference / "collection.json").is_file() and (reference / TILES[0] / f"{TILES[0]}.json").is_file()


def test_rerun_skips_the_done_scenes(reference: Path, manifest: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in reference.glob("*/LULC.tif")}
    report = run(JOB, manifest, reference, cluster=Cluster(workers=2), progress=False)
    assert report.skipped == 3 and report.ran == ()
    assert "0 done, 0 failed, 0 partial, 3 skipped" in report.summary()
    assert {p: p.stat().st_mtime_ns for p in reference.glob("*/LULC.tif")} == before  # nothing rewritten


def test_a_rerun_with_other_options_is_refused(reference: Path, manifest: Path) -> None:
    other = GenerateJob(("LULC",), model="terramind_v1_tiny", weights="random", tile=64, overlap=16, seed=1)
    with pytest.raises(Exception, match="other settings"):
        run(other, manifest, reference, progress=False)


def test_batch_output_equals_terramind_generate(reference: Path, manifest: Path, tmp_path: Path) -> None:
    scene = manifest.parent / f"{TILES[1]}.tif"
    assert main(["generate", "--input", f"S2L2A={scene}", "-o", str(tmp_path), *CLI_JOB]) == 0
    assert (tmp_path / "LULC.tif").read_bytes() == (reference / TILES[1] / "LULC.tif").read_bytes()


def _band_files(scene: Path, folder: Path, missing: str) -> Path:
    """The scene as one file per band (as a Sentinel-2 product ships), without the band ``missing``."""
    folder.mkdir()
    with rasterio.open(scene) as src:
        data, profile = src.read(), {**src.profile, "count": 1}
    for i, band in enumerate(S2_BANDS):
        if band != missing:
            with rasterio.open(folder / f"T00XXX_{band}_10m.tif", "w", **profile) as dst:
                dst.write(data[i : i + 1])
    return folder


def test_a_scene_with_a_missing_input_file_fails_alone(
    cluster: Any, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _band_files(manifest.parent / f"{TILES[0]}.tif", tmp_path / "broken.SAFE", missing="B8A")
    table = tmp_path / "m.csv"
    table.write_text(
        f"name,S2L2A\nbroken,{broken}\n" + "".join(f"{n},{manifest.parent / n}.tif\n" for n in TILES[1:])
    )
    out = tmp_path / "out"
    argv = ["batch", "generate", "--manifest", str(table), "-o", str(out), *CLI_JOB, "--workers", "2"]
    assert main([*argv, "--retries", "1"]) == 1  # exit 1: a scene failed
    records = read_results(out / "results.parquet")
    assert {n: r.status for n, r in records.items()} == {
        "broken": "failed",
        TILES[1]: "done",
        TILES[2]: "done",
    }
    assert "B8A" in records["broken"].error and records["broken"].attempts == 2  # retried once
    assert "failed: broken:" in capsys.readouterr().out
    # a rerun skips the two done scenes and tries the failed one again
    assert main(argv) == 1
    assert "0 done, 1 failed, 0 partial, 2 skipped" in capsys.readouterr().out


@dataclass(frozen=True)
class PausedOnce(GenerateJob):
    """Generation that pauses in the middle of scene ``victim`` (after its first row of tiles is saved), the
    first time only, and says which actor paused, so the test can kill it there."""

    victim: str = ""
    signals: str = ""

    def load(self, modalities: Any) -> Any:
        generator, digest = super().load(modalities)
        return _Pausing(generator, Path(self.signals)), digest

    def run(self, loaded: Any, scene: Scene, folder: Path, *, overwrite: bool = False) -> Any:
        loaded[0].pause = scene.name == self.victim and not (Path(self.signals) / "killed").exists()
        loaded[0].calls = 0
        return super().run(loaded, scene, folder, overwrite=overwrite)


class _Pausing:
    def __init__(self, generator: Any, signals: Path) -> None:
        self.generator, self.signals, self.pause, self.calls = generator, signals, False, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.pause and self.calls == 2:  # row 0 is done and its state saved; row 1 starts
            (self.signals / "paused").write_text(ray.get_runtime_context().get_actor_name())
            time.sleep(120)  # killed here
        return self.generator.generate(*args, **kwargs)


def test_a_killed_worker_is_replaced_and_its_scene_resumed(
    reference: Path, manifest: Path, tmp_path: Path
) -> None:
    signals, out = tmp_path / "signals", tmp_path / "out"
    signals.mkdir()
    seen: dict[str, bool] = {}

    def killer() -> None:
        deadline = time.monotonic() + 100
        while not (signals / "paused").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        name = (signals / "paused").read_text()
        seen["state saved"] = (out / TILES[1] / ".terramind-partial").is_dir()
        (signals / "killed").write_text(name)
        ray.kill(ray.get_actor(name))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    job = PausedOnce(**{**JOB.__dict__, "victim": TILES[1], "signals": str(signals)})
    report = run(job, manifest, out, cluster=Cluster(workers=2), progress=False)
    thread.join(timeout=5)
    assert (signals / "killed").exists() and seen == {"state saved": True}
    assert {r.name: (r.status, r.attempts) for r in report.records} == {n: ("done", 1) for n in TILES}
    for name in TILES:  # the resumed scene equals the run without a kill, byte for byte
        assert (out / name / "LULC.tif").read_bytes() == (reference / name / "LULC.tif").read_bytes()


def _finetune_config(tmp_path: Path, examples: Path) -> Path:
    """A one-step segmentation fine-tuning of the tiny model (encoder depth 1) on two example tiles."""
    import yaml

    (tmp_path / "train.txt").write_text("\n".join(TILES[:2]))
    backbone = {"name": "terramind_v1_tiny", "modalities": ["S2L2A"], "encoder_depth": 1}
    config = {
        "seed": 0,
        "trainer": {"max_steps": 1, "accelerator": "cpu", "validate": False, "logger": "none",
                    "progress_bar": False, "out_dir": str(tmp_path / "run")},
        "task": {"kind": "segmentation", "num_classes": 10, "layer_indices": [0], "decoder": "fcn",
                 "decoder_kwargs": {"channels": 16}, "scheduler": "none"},
        "backbone": backbone,
        "data": {"kind": "geotiff", "data_root": str(examples), "num_classes": 10,
                 "folders": {"label": "LULC"},
                 "splits": {"train": str(tmp_path / "train.txt"), "val": str(tmp_path / "train.txt")},
                 "augment": False, "batch_size": 2},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_predict_with_a_finetuned_checkpoint_equals_finetune_scene(
    cluster: Any, manifest: Path, tmp_path: Path, examples_dir: Path
) -> None:
    pytest.importorskip("lightning")
    config = _finetune_config(tmp_path, examples_dir)
    assert main(["finetune", "fit", "-c", str(config)]) == 0
    (ckpt,) = tmp_path.rglob("*.ckpt")
    tiling = ["--tile", "64", "--overlap", "16"]
    scene = manifest.parent / f"{TILES[2]}.tif"
    single = tmp_path / "single.tif"
    argv = ["finetune", "scene", "-c", str(config), "--ckpt_path", str(ckpt), "--input", f"S2L2A={scene}"]
    assert main([*argv, "-o", str(single), *tiling]) == 0
    out = tmp_path / "out"
    argv = ["batch", "predict", "--manifest", str(manifest), "-o", str(out), "-c", str(config)]
    assert main([*argv, "--ckpt_path", str(ckpt), *tiling]) == 0
    records = read_results(out / "results.parquet")
    assert {n: r.status for n, r in records.items()} == dict.fromkeys(TILES, "done")
    assert (out / TILES[2] / "prediction.tif").read_bytes() == single.read_bytes()


def test_batch_embed_equals_embed_scene(cluster: Any, manifest: Path, tmp_path: Path) -> None:
    from terramind.batch import EmbedJob

    tiny = ["--model", "terramind_v1_tiny", "--weights", "random", "--tile", "64", "--overlap", "16"]
    scene = manifest.parent / f"{TILES[0]}.tif"
    single = tmp_path / "single.tif"
    assert main(["embed", "--scene", "--input", f"S2L2A={scene}", "-o", str(single), *tiny]) == 0
    job = EmbedJob("terramind_v1_tiny", "random", tile=64, overlap=16)
    report = run(job, manifest, tmp_path / "out", cluster=Cluster(workers=2), progress=False)
    assert [r.status for r in report.records] == ["done"] * 3
    assert (tmp_path / "out" / TILES[0] / "embedding.tif").read_bytes() == single.read_bytes()
