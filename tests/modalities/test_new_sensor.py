"""A new 4-band sensor, registered once, through every entry point: backbone, fine-tuning, prepare, pretrain.

The sensor's tiles are the example S2L2A tiles' BLUE, GREEN, RED and NIR_BROAD bands (positions 1, 2, 3, 7),
cropped to 64 px and written as 4-band GeoTIFFs; its statistics are made up. After each use the default
catalog must be unchanged and the sensor unknown outside its scope.
"""

from __future__ import annotations

import io
import math
import tarfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from rasterio.windows import Window

import terramind
from terramind.core.errors import ModalityError
from terramind.data.geotiff import read_raster, write_raster
from terramind.data.shards import write_shards
from terramind.finetune.backbone import Backbone
from terramind.finetune.datamodule import GeoTiffDataModule
from terramind.finetune.tasks import SegmentationTask
from terramind.modalities import (
    DEFAULT_CATALOG,
    MODALITIES,
    SensorSpec,
    get_modality,
    pixel_modality,
    using_catalog,
)
from terramind.train.config import (
    DataSection,
    MaskingSection,
    ModalityEntry,
    ModelSection,
    OptimSection,
    PretrainConfig,
    TrainerSection,
)
from terramind.train.pretrain import pretrain

NAMES = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]
BANDS = ("BLUE", "GREEN", "RED", "NIR")
S2_POSITIONS = (1, 2, 3, 7)
MEAN = (900.0, 1100.0, 1200.0, 2600.0)
STD = (1000.0, 1000.0, 1100.0, 1400.0)
SENSOR = {"name": "MYSENSOR", "bands": list(BANDS), "mean": list(MEAN), "std": list(STD), "unit": "DN"}
SIZE = 64
TINY_MODEL = {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2, "mlp_hidden": 64}


@pytest.fixture(autouse=True)
def default_catalog_unchanged():
    """Every test leaves the default catalog as it was, and the sensor unknown outside a scope."""
    before = dict(MODALITIES)
    yield
    assert dict(MODALITIES) == before and "MYSENSOR" not in DEFAULT_CATALOG
    with pytest.raises(ModalityError, match="unknown modality 'MYSENSOR'"):
        get_modality("MYSENSOR")


@pytest.fixture(scope="module")
def sensor_root(examples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``MYSENSOR/`` (4 bands), ``S2L2A/`` and ``label/`` (LULC) folders of 64 px crops of the examples."""
    root = tmp_path_factory.mktemp("sensor")
    window = Window(0, 0, SIZE, SIZE)
    for folder in ("MYSENSOR", "S2L2A", "label"):
        (root / folder).mkdir()
    for name in NAMES:
        s2 = read_raster(examples_dir / "S2L2A" / f"{name}.tif")
        georef = s2.georef.window(window)
        crop = s2.data[:, :SIZE, :SIZE]
        write_raster(root / "MYSENSOR" / f"{name}.tif", crop[list(S2_POSITIONS)], georef, band_names=BANDS)
        write_raster(root / "S2L2A" / f"{name}.tif", crop, georef)
        lulc = read_raster(examples_dir / "LULC" / f"{name}.tif")
        write_raster(root / "label" / f"{name}.tif", lulc.data[:, :SIZE, :SIZE], georef)
    return root


def test_registered_sensor_is_scoped_and_has_its_facts() -> None:
    spec = pixel_modality(**SENSOR)
    catalog = DEFAULT_CATALOG.register(spec)
    assert catalog is not DEFAULT_CATALOG and len(catalog) == len(DEFAULT_CATALOG) + 1
    with using_catalog(catalog):
        assert get_modality("mysensor") is spec
        assert get_modality("S2L2A") is MODALITIES["S2L2A"]  # official names still resolve
        assert terramind.modalities.stats("MYSENSOR")[1].tolist() == list(STD)
    assert spec.is_new_sensor and spec.num_bands == 4 and spec.decoder_kind is None


def test_create_backbone_with_a_sensor() -> None:
    backbone = terramind.create_backbone(
        "terramind_v1_tiny", ["MYSENSOR", "S2L2A"], sensors=[SENSOR], encoder_depth=1
    )
    assert backbone.new_modalities == ("MYSENSOR",)
    assert backbone.encoder_embeddings["MYSENSOR"].channels == 4
    x = {"MYSENSOR": torch.randn(1, 4, 32, 32), "S2L2A": torch.randn(1, 12, 32, 32)}
    features = backbone.forward_dict(x)
    assert features[-1]["MYSENSOR"].shape == (1, 4, 192)  # (32/16)^2 tokens of the tiny width


def test_fine_tuning_fit_on_sensor_geotiffs(sensor_root: Path, tmp_path: Path) -> None:
    split = tmp_path / "ids.txt"
    split.write_text("\n".join(NAMES))
    dm = GeoTiffDataModule(
        str(sensor_root),
        ["MYSENSOR"],
        10,
        splits={"train": str(split), "val": str(split)},
        augment=False,
        batch_size=2,
        sensors=[SENSOR],
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    x = batch["inputs"]["MYSENSOR"]
    assert x.shape == (2, 4, SIZE, SIZE)
    # standardised with the sensor's own statistics: the RED channel is (S2 RED - 1200) / 1100
    raw = read_raster(batch["path"][0]).data.astype(np.float64)
    expected = (raw[2] - MEAN[2]) / STD[2]
    assert np.allclose(x[0, 2].numpy(), expected, atol=1e-4)  # float32 arithmetic on values < 10

    torch.manual_seed(0)
    backbone = Backbone("terramind_v1_tiny", ["MYSENSOR"], encoder_depth=1, sensors=[SENSOR])
    task = SegmentationTask(backbone, 10, layer_indices=[0], decoder="fcn", scheduler="none", lr=1e-3)
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 2
    assert math.isfinite(float(trainer.callback_metrics["train/loss_step"]))


def _fake_tokenize(x: np.ndarray) -> np.ndarray:
    c, h, w = x.shape
    patches = x.astype(np.float64).reshape(c, h // 16, 16, w // 16, 16).mean(axis=(0, 2, 4))
    return (np.abs(patches) * 3).astype(np.int64) % 64


def test_prepare_and_pretrain_with_a_sensor(sensor_root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for folder in ("MYSENSOR", "S2L2A"):
        (src / folder).symlink_to(sensor_root / folder, target_is_directory=True)
    shards = tmp_path / "shards"
    written = write_shards(src, shards, shard_size=5, tokenizers={"S2L2A": _fake_tokenize}, sensors=[SENSOR])
    with tarfile.open(written[0]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".mysensor.npy"))
        stored = np.load(io.BytesIO(tar.extractfile(member).read()))  # type: ignore[union-attr]
    assert stored.shape == (4, SIZE, SIZE)

    config = PretrainConfig(
        modalities=(
            ModalityEntry("MYSENSOR", input="pixel", target=False),
            ModalityEntry("S2L2A", input="none", target=True),
        ),
        sensors=(SensorSpec("MYSENSOR", BANDS, MEAN, STD),),
        model=ModelSection(size="tiny", overrides=TINY_MODEL),
        masking=MaskingSection(num_input_tokens=4, num_target_tokens=4),
        optim=OptimSection(lr=1e-3, warmup_steps=1),
        data=DataSection(shards=str(shards / "*.tar"), batch_size=2, crop=32, shuffle_buffer=2),
        trainer=TrainerSection(
            max_steps=2,
            accelerator="cpu",
            devices=1,
            out_dir=str(tmp_path / "run"),
            progress_bar=False,
            log_every=1,
            checkpoint_every=2,
        ),
    )
    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
            losses.append(float(outputs["loss"]))

    module = pretrain(config, callbacks=[Record()])
    assert module.model.encoder_embeddings["MYSENSOR"].channels == 4
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize(
    ("changes", "phrases"),
    [
        ({"mean": [1.0, 2.0, 3.0]}, ["4 band(s)", "3 mean", "one mean and one std per band"]),
        ({"std": [1.0, 0.0, 1.0, 1.0]}, ["std must be positive"]),
        ({"name": "s2l2a"}, ["'s2l2a' is taken by official modality 'S2L2A'"]),
        ({"name": "Sentinel-1"}, ["is taken by official modality 'S1GRD'"]),
        ({"aliases": ["DEM"]}, ["'DEM' is taken by official modality 'DEM'"]),
    ],
)
def test_bad_sensors_are_refused_at_registration(changes: dict, phrases: list[str]) -> None:
    with pytest.raises(ModalityError) as err:
        DEFAULT_CATALOG.register(pixel_modality(**{**SENSOR, **changes}))
    for phrase in phrases:
        assert phrase in str(err.value)


def test_a_sensor_collides_with_an_earlier_registration_too() -> None:
    catalog = DEFAULT_CATALOG.register(pixel_modality(**SENSOR))
    with pytest.raises(ModalityError, match="taken by registered modality 'MYSENSOR'"):
        catalog.register(pixel_modality(**{**SENSOR, "name": "my_sensor"}))


def test_quicklook_and_inspect_stats_of_a_sensor(sensor_root: Path) -> None:
    from terramind.data.validate import band_stats, summarize_file, validate_tile
    from terramind.viz import quicklook

    path = sensor_root / "MYSENSOR" / f"{NAMES[0]}.tif"
    with using_catalog(DEFAULT_CATALOG.register(pixel_modality(**SENSOR))):
        spec = get_modality("MYSENSOR")
        raster = read_raster(path, "MYSENSOR")
        picture = quicklook("MYSENSOR", raster.data)
        summary = summarize_file(path, spec)
        stats = band_stats(summary, spec)
        findings = validate_tile(summary, spec)
    assert picture.shape == (SIZE, SIZE, 3) and picture.dtype == np.uint8
    # RED/GREEN/BLUE bands make a true-colour picture: the channels differ (a grey one would not)
    assert spec.raster is not None and spec.raster.renderer == "true_colour"
    assert not np.array_equal(picture[..., 0], picture[..., 2])
    assert [s.name for s in stats] == list(BANDS)
    assert [s.pretrain_mean for s in stats] == list(MEAN) and [s.pretrain_std for s in stats] == list(STD)
    assert stats[3].mean == pytest.approx(float(raster.data[3].mean()), rel=1e-6)  # all pixels valid
    assert not [f for f in findings if f.level == "error"]


def test_a_sensor_without_rgb_is_drawn_grey_and_its_hard_limits_refuse() -> None:
    from terramind.data.policy import check_pixels

    spec = pixel_modality("THERMAL", ["TIR"], [290.0], [10.0], unit="K", hard_limits=(0.0, 1000.0))
    assert spec.raster is not None and spec.raster.renderer == "grey"
    from terramind.viz import quicklook

    picture = quicklook(spec, np.arange(64.0).reshape(1, 8, 8))
    assert np.array_equal(picture[..., 0], picture[..., 1])
    with pytest.raises(terramind.InputError, match="no THERMAL file can hold"):
        check_pixels(np.array([[[1e6]]]), spec, None, "t.tif")


def test_the_scope_is_per_thread_and_suggests_registered_names() -> None:
    import threading

    seen: list[str] = []

    def other_thread() -> None:
        try:
            get_modality("MYSENSOR")
            seen.append("resolved")
        except ModalityError:
            seen.append("unknown")

    with using_catalog(DEFAULT_CATALOG.register(pixel_modality(**SENSOR))):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        with pytest.raises(ModalityError, match="Did you mean 'MYSENSOR'"):
            get_modality("MYSENSR")
    assert seen == ["unknown"]  # a scope opened in one thread is not seen by another


# ---- the command line: --sensor FILE registers the sensor for one command ----------------------------------


def _sensor_file(tmp_path: Path, record: dict[str, object] = SENSOR) -> Path:
    import json

    path = tmp_path / "mysensor.json"
    path.write_text(json.dumps(record))
    return path


def test_inspect_and_prepare_take_a_sensor_file(sensor_root: Path, tmp_path: Path, capsys) -> None:
    import json
    import shutil

    from terramind.cli.main import main

    sensor = _sensor_file(tmp_path)
    tile = sensor_root / "MYSENSOR" / f"{NAMES[0]}.tif"
    assert main(["inspect", str(tile), "--modality", "MYSENSOR", "--sensor", str(sensor), "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["modality"] == "MYSENSOR" and report["bands"] == 4
    assert [b["pretrain_mean"] for b in report["band_stats"]] == list(MEAN)
    src = tmp_path / "src"
    for folder in ("MYSENSOR", "S2L2A"):
        shutil.copytree(sensor_root / folder, src / folder)
    out = tmp_path / "shards"
    assert main(["prepare", "--src", str(src), "-o", str(out), "--sensor", str(sensor)]) == 0
    with tarfile.open(next(out.glob("*.tar"))) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".mysensor.npy"))
        array = np.load(io.BytesIO(tar.extractfile(member).read()))  # type: ignore[union-attr]
    assert array.shape == (4, SIZE, SIZE)
    # without the file the name is unknown, and a bad sensor file is one line, exit 2
    assert main(["inspect", str(tile), "--modality", "MYSENSOR"]) == 2
    bad = _sensor_file(tmp_path, {**SENSOR, "mean": [1.0]})
    assert main(["inspect", str(tile), "--modality", "MYSENSOR", "--sensor", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "mean" in err
