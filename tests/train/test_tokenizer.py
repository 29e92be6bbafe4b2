import math

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from terramind.core.errors import InputError
from terramind.tokenizers import UNetConfig, ViTConfig
from terramind.train.config import DataSection, OptimSection, TrainerSection
from terramind.train.tokenizer import (
    TokenizerModule,
    TokenizerTrainConfig,
    bits_per_token,
    class_block_baseline,
    downsample_baseline,
    load_tokenizer_config,
    psnr,
    reconstruct,
    train_tokenizer,
)

SMALL_VIT = ViTConfig(dim=32, depth=1, heads=2)
SMALL_UNET = UNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(), groups=8)


def config(train_shards, tmp_path, modality, decoder, steps=4):
    return TokenizerTrainConfig(
        modality=modality,
        decoder=decoder,
        encoder=SMALL_VIT,
        unet=SMALL_UNET,
        vit_decoder=SMALL_VIT,
        data=DataSection(shards=str(train_shards / "*.tar"), batch_size=2, crop=32, shuffle_buffer=2),
        optim=OptimSection(lr=3e-3, warmup_steps=1, weight_decay=0.0),
        trainer=TrainerSection(
            max_steps=steps,
            accelerator="cpu",
            devices=1,
            out_dir=str(tmp_path / modality),
            progress_bar=False,
            log_every=1,
            checkpoint_every=steps,
        ),
    )


@pytest.mark.parametrize(("modality", "decoder"), [("DEM", "diffusion"), ("LULC", "vit")])
def test_train_tokenizer_learns_and_saves(train_shards, tmp_path, modality, decoder):
    cfg = config(train_shards, tmp_path, modality, decoder, steps=12)
    losses = []

    class Recorder(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    module = train_tokenizer(cfg, callbacks=[Recorder()])
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])
    assert (tmp_path / modality / "tokenizer.safetensors").is_file()
    saved = load_tokenizer_config(yaml.safe_load((tmp_path / modality / "tokenizer.yaml").read_text()))
    assert saved.tokenizer_config() == cfg.tokenizer_config()
    x = torch.zeros(1, 32, 32) if decoder == "vit" else torch.randn(1, 32, 32)
    out = reconstruct(module.tokenizer, x, steps=2)
    assert out.shape == ((32, 32) if decoder == "vit" else (1, 32, 32))


def test_same_seed_same_loss(train_shards, tmp_path):
    cfg = config(train_shards, tmp_path, "DEM", "diffusion")
    raw = torch.rand(2, 1, 32, 32) * 100
    a, b = TokenizerModule(cfg), TokenizerModule(cfg)
    b.load_state_dict(a.state_dict())
    assert a.compute_loss(raw, 3) == b.compute_loss(raw, 3)
    assert a.compute_loss(raw, 3) != a.compute_loss(raw, 4)


def test_bad_tokenizer_configs():
    with pytest.raises(InputError, match="class maps"):
        TokenizerTrainConfig(modality="DEM", decoder="vit")
    with pytest.raises(InputError, match="no image tokenizer"):
        TokenizerTrainConfig(modality="S2RGB")
    with pytest.raises(InputError, match="unknown key"):
        load_tokenizer_config({"modality": "DEM", "decodr": "vit"})


def test_baselines_use_the_bit_budget():
    assert math.isclose(bits_per_token(15360), 13.907, abs_tol=1e-3)
    x = torch.linspace(-1, 1, 224)[None, None].expand(1, 224, 224).contiguous()
    rec = downsample_baseline(x, bits_per_token(15360))
    assert rec.shape == x.shape and psnr(x, rec) > 30  # a smooth ramp survives downsampling
    assert psnr(x, x) > 100
    classes = torch.zeros(224, 224, dtype=torch.long)
    classes[:, 112:] = 3
    out = class_block_baseline(classes, bits_per_token(4375), 10)
    assert out.shape == classes.shape and (out == classes).float().mean() > 0.9


def test_ema_weights_are_saved(train_shards, tmp_path):
    import dataclasses

    from terramind.train.tokenizer import load_trained_tokenizer

    cfg = config(train_shards, tmp_path, "LULC", "vit", steps=3)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, ema_decay=0.5))
    module = train_tokenizer(cfg)
    saved = load_trained_tokenizer(tmp_path / "LULC")
    key = "quant_proj.weight"
    assert torch.equal(saved.state_dict()[key], module.ema.module.state_dict()[key])
    assert not torch.equal(saved.state_dict()[key], module.tokenizer.state_dict()[key])
