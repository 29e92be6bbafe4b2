import dataclasses
import itertools
import shutil

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from terramind.core.errors import CheckpointError, InputError
from terramind.data.sample import Batch
from terramind.data.shards import write_shards
from terramind.train.config import ModalityEntry
from terramind.train.engine import training_attention
from terramind.train.pretrain import pretrain


class Recorder(Callback):
    def __init__(self, kill_at=None):
        self.losses, self.kill_at = [], kill_at

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.kill_at:
            raise RuntimeError("killed")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_kill_and_resume_continues_the_loss_curve_exactly(tiny_config, tmp_path):
    full = Recorder()
    pretrain(tiny_config(out_dir=str(tmp_path / "a")), callbacks=[full])
    assert len(full.losses) == 5 and len(set(full.losses)) == 5

    config = tiny_config(out_dir=str(tmp_path / "b"))
    killed = Recorder(kill_at=3)  # dies in step 4; the last checkpoint is step 2
    with pytest.raises(RuntimeError, match="killed"):
        pretrain(config, callbacks=[killed])
    assert (tmp_path / "b" / "checkpoints" / "last.ckpt").is_file()
    resumed = Recorder()
    pretrain(config, resume="last", callbacks=[resumed])
    assert len(killed.losses) == 3 and len(resumed.losses) == 3
    assert killed.losses[:2] + resumed.losses == full.losses


def test_resume_with_another_config_is_refused(tiny_config, tmp_path):
    config = tiny_config(max_steps=1, checkpoint_every=1)
    pretrain(config)
    other = dataclasses.replace(config, modalities=config.modalities[:2])
    with pytest.raises(CheckpointError, match="another configuration"):
        pretrain(other, resume="last")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        pretrain(config, resume=str(tmp_path / "missing.ckpt"))


def test_continual_pretraining_with_a_new_sensor_and_ema(tiny_config, fake_tokenize, examples_dir, tmp_path):
    base = pretrain(tiny_config(max_steps=1, out_dir=str(tmp_path / "base")))
    weights = tmp_path / "base.pt"
    torch.save(base.model.state_dict(), weights)

    src = tmp_path / "src"
    for mod in ("S2L2A", "LULC"):
        shutil.copytree(examples_dir / mod, src / mod)
    shutil.copytree(examples_dir / "DEM", src / "AERIAL")  # stands in for a new 1-band sensor
    shards = tmp_path / "shards"
    write_shards(
        src, shards, tokenizers={"S2L2A": fake_tokenize, "LULC": fake_tokenize}, new_modalities=("AERIAL",)
    )
    config = tiny_config(max_steps=2, out_dir=str(tmp_path / "cont"))
    aerial = ModalityEntry("AERIAL", input="pixel", target=False, channels=1, mean=(500.0,), std=(400.0,))
    config = dataclasses.replace(
        config,
        modalities=(config.modalities[0], config.modalities[2], aerial),
        model=dataclasses.replace(config.model, init_from=str(weights)),
        optim=dataclasses.replace(config.optim, ema_decay=0.5),
        data=dataclasses.replace(config.data, shards=str(shards / "*.tar")),
    )
    module = pretrain(config)
    assert "AERIAL" in module.model.encoder_embeddings
    assert module.model.encoder_embeddings["AERIAL"].channels == 1
    ema = dict(module.ema.module.named_parameters())
    live = dict(module.model.named_parameters())
    assert not torch.equal(ema["mask_token"], live["mask_token"])
    with pytest.raises(InputError, match="only be a pixel input"):
        ModalityEntry("AERIAL4", input="pixel", target=True, channels=4, mean=(0,) * 4, std=(1,) * 4)


def test_activation_checkpointing_gives_the_same_gradients(tiny_config):
    from terramind.train.pretrain import PretrainModule

    config = tiny_config()
    plain = PretrainModule(config)
    ckpt = PretrainModule(
        dataclasses.replace(config, model=dataclasses.replace(config.model, activation_checkpointing=True))
    )
    ckpt.load_state_dict(plain.state_dict())
    gen = torch.Generator().manual_seed(0)
    batch = Batch(
        ("a", "b"),
        {
            "S2L2A": torch.rand(2, 12, 64, 64, generator=gen) * 3000,
            "DEM": torch.rand(2, 1, 64, 64, generator=gen),
        },
        {m: torch.randint(0, 64, (2, 4, 4), generator=gen) for m in ("S2L2A", "DEM", "LULC")},
        torch.zeros(2, 2),
    )
    for module in (plain, ckpt):
        module.compute_loss(batch, step=0).loss.backward()
    torch.testing.assert_close(plain.model.mask_token.grad, ckpt.model.mask_token.grad)
    assert set(plain.state_dict()) == set(ckpt.state_dict())


def test_masking_budget_error_is_raised_at_build(tiny_config):
    config = tiny_config()
    too_many = dataclasses.replace(
        config, masking=dataclasses.replace(config.masking, num_input_tokens=40, num_target_tokens=20)
    )
    with pytest.raises(InputError, match="exceed the available tokens"):
        pretrain(too_many)


@pytest.mark.parametrize("workers", [0, 2])
def test_masks_drawn_in_data_workers_match_the_step(tiny_config, workers):
    from torch.utils.data import DataLoader

    from terramind.data.shards import shard_stream
    from terramind.train.pretrain import MaskDrawer, PretrainModule, stream_config

    module = PretrainModule(tiny_config())
    drawer = MaskDrawer(module.masking, seed=0, rank=0)
    stream = shard_stream(
        module.config.data.shard_files(),
        stream_config(module.config, module.modalities),
        skip_batches=1,
        transform=drawer,
    )
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    for step, batch in enumerate(itertools.islice(iter(loader), 3), start=1):  # resumed after 1 batch
        attached, drawn = batch.images, drawer.draw(2, step)[0]
        for name in drawn:
            assert torch.equal(attached[name].input_mask, drawn[name].input_mask)
            assert torch.equal(attached[name].target_positions, drawn[name].target_positions)
        assert torch.equal(
            module.compute_loss(batch, step).loss,
            module.compute_loss(batch.batch, step).loss,
        )


@pytest.mark.parametrize("cudnn_before", [True, False])
def test_training_attention_leaves_the_process_setting_alone(cudnn_before):
    before = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(cudnn_before)
    try:
        with training_attention():
            assert not torch.backends.cuda.cudnn_sdp_enabled()
            assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
        assert torch.backends.cuda.cudnn_sdp_enabled() is cudnn_before
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


def test_pretrain_restores_the_attention_backends(tiny_config, tmp_path):
    seen = []

    class Probe(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append(torch.backends.cuda.cudnn_sdp_enabled())

    before = torch.backends.cuda.cudnn_sdp_enabled()
    pretrain(tiny_config(max_steps=1, out_dir=str(tmp_path)), callbacks=[Probe()])
    assert seen == [False]  # cuDNN attention is off while training...
    assert torch.backends.cuda.cudnn_sdp_enabled() is before  # ...and the caller's setting is back after
