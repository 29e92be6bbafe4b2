"""Tiny shards of the example tiles with a patch-local fake tokenizer, and a tiny pretraining config."""

import shutil

import numpy as np
import pytest
import torch

from terramind.data.shards import write_shards
from terramind.train.config import (
    DataSection,
    MaskingSection,
    ModalityEntry,
    ModelSection,
    OptimSection,
    PretrainConfig,
    TrainerSection,
)

TINY_MODEL = {"dim": 32, "encoder_depth": 2, "decoder_depth": 2, "num_heads": 2, "mlp_hidden": 64}

TRAINER = {
    "max_steps": 5,
    "accelerator": "cpu",
    "devices": 1,
    "progress_bar": False,
    "log_every": 1,
    "checkpoint_every": 2,
}


def fake_tokenize(x: np.ndarray) -> np.ndarray:
    c, h, w = x.shape
    patches = x.astype(np.float64).reshape(c, h // 16, 16, w // 16, 16).mean(axis=(0, 2, 4))
    return (np.abs(patches) * 3).astype(np.int64) % 64


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a shared, loaded CPU more threads oversubscribe it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(name="fake_tokenize")
def fake_tokenize_fixture():
    return fake_tokenize


@pytest.fixture(scope="session")
def train_shards(examples_dir, tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for mod in ("S2L2A", "DEM", "LULC"):
        shutil.copytree(examples_dir / mod, src / mod)
    out = tmp_path_factory.mktemp("shards")
    write_shards(src, out, shard_size=2, tokenizers={m: fake_tokenize for m in ("S2L2A", "DEM", "LULC")})
    return out


@pytest.fixture
def tiny_config(train_shards, tmp_path):
    def make(**trainer):
        return PretrainConfig(
            modalities=(
                ModalityEntry("S2L2A", input="pixel"),
                ModalityEntry("DEM", input="pixel"),
                ModalityEntry("LULC", input="token"),
            ),
            model=ModelSection(size="tiny", overrides=TINY_MODEL),
            masking=MaskingSection(num_input_tokens=12, num_target_tokens=12),
            optim=OptimSection(lr=3e-3, warmup_steps=2, weight_decay=0.01),
            data=DataSection(shards=str(train_shards / "*.tar"), batch_size=2, crop=64, shuffle_buffer=2),
            trainer=TrainerSection(
                **{
                    "max_steps": 5,
                    "accelerator": "cpu",
                    "devices": 1,
                    "out_dir": str(tmp_path / "run"),
                    "progress_bar": False,
                    "log_every": 1,
                    "checkpoint_every": 2,
                    **trainer,
                }
            ),
        )

    return make


@pytest.fixture(scope="session")
def terramesh_root(examples_dir, tmp_path_factory):
    """The example tiles in the TerraMesh layout (train/{S2L2A,S1RTC,DEM,LULC}/majortom_shard_000001.tar)."""
    from terramind.data.shards import GeoTiffFolderSource
    from terramind.data.terramesh import write_terramesh

    src = tmp_path_factory.mktemp("tiles")
    for mod in ("S2L2A", "S1RTC", "DEM", "LULC"):
        shutil.copytree(examples_dir / mod, src / mod)
    source = GeoTiffFolderSource(src)
    samples = [
        source.decode(key, raw) for unit in range(len(source.units())) for key, raw in source.items(unit)
    ]
    root = tmp_path_factory.mktemp("terramesh")
    write_terramesh(samples, root, subset="majortom", shard=1)
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer_dirs(tmp_path_factory):
    """Random down-sized tokenizers saved as ``train-tokenizer`` output folders, per modality."""
    from terramind.tokenizers import UNetConfig, ViTConfig
    from terramind.train.tokenizer import TokenizerModule, TokenizerTrainConfig, save_tokenizer

    vit = ViTConfig(dim=32, depth=1, heads=2)
    unet = UNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(), groups=8)
    out = {}
    for modality in ("S2L2A", "DEM"):
        torch.manual_seed(0)
        config = TokenizerTrainConfig(modality=modality, encoder=vit, unet=unet, vit_decoder=vit)
        folder = tmp_path_factory.mktemp(f"tok_{modality}")
        save_tokenizer(TokenizerModule(config), folder)
        out[modality] = folder
    return out
