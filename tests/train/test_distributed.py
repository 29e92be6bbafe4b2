"""Two CPU processes (gloo) train one model: disjoint data, identical weights (DDP); FSDP2 on CPU."""

import dataclasses
import hashlib
import json
import shutil

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from terramind.data.shards import write_shards
from terramind.train.pretrain import pretrain


def digest(module: torch.nn.Module) -> str:
    """Checksum of every weight (bit-exact)."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankRecord(Callback):
    """Each rank writes the sample keys it trained on and its weights' checksums (start and end)."""

    def __init__(self, folder):
        self.folder = str(folder)
        self.keys, self.start = [], ""

    def on_train_start(self, trainer, module):
        self.start = digest(module.model)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.keys.extend(batch.batch.keys)

    def on_train_end(self, trainer, module):
        record = {"keys": self.keys, "start": self.start, "end": digest(module.model)}
        with open(f"{self.folder}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(record, f)


@pytest.fixture(scope="module")
def one_tile_shards(examples_dir, tmp_path_factory, fake_tokenize_module):
    src = tmp_path_factory.mktemp("src1")
    for mod in ("S2L2A", "DEM", "LULC"):
        shutil.copytree(examples_dir / mod, src / mod)
    out = tmp_path_factory.mktemp("shards1")
    write_shards(
        src, out, shard_size=1, tokenizers={m: fake_tokenize_module for m in ("S2L2A", "DEM", "LULC")}
    )
    return out


@pytest.fixture(scope="module")
def fake_tokenize_module():
    from conftest import fake_tokenize

    return fake_tokenize


def test_ddp_two_cpu_processes_see_disjoint_samples_and_end_equal(tiny_config, one_tile_shards, tmp_path):
    config = tiny_config(max_steps=2, checkpoint_every=2, devices=2, strategy="ddp_spawn")
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(
            config.data, shards=str(one_tile_shards / "*.tar"), batch_size=1, shuffle_buffer=1
        ),
    )
    pretrain(config, callbacks=[RankRecord(tmp_path)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 5 one-tile shards over 2 ranks: rank 0 reads 3, rank 1 reads 2 in the first epoch; 2 steps of 1 sample
    assert all(len(r["keys"]) == 2 for r in ranks)
    assert not set(ranks[0]["keys"]) & set(ranks[1]["keys"])
    assert ranks[0]["start"] == ranks[1]["start"] and ranks[0]["end"] == ranks[1]["end"]
    assert ranks[0]["end"] != ranks[0]["start"]  # the weights did change


def _fsdp_worker(rank, world, port, config, folder):
    """One rank of the FSDP2 run: shard every block and the root, take 2 optimiser steps, save checksums."""
    import os

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    from terramind.train.optim import build_optimizer
    from terramind.train.pretrain import PretrainModule

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    module = PretrainModule(config)
    mesh = init_device_mesh("cpu", (world,))
    for block in (*module.model.encoder, *module.model.decoder):
        fully_shard(block, mesh=mesh)
    fully_shard(module.model, mesh=mesh)
    for method in ("encode", "decode_logits", "decode_sequence_logits"):  # the trainer calls these
        register_fsdp_forward_method(module.model, method)
    optimizer, _ = build_optimizer(
        module.model, lr=1e-3, weight_decay=0.01, betas=(0.9, 0.95), warmup_steps=1, total_steps=2
    )
    stream = iter(module.stream(rank, world))
    losses = []
    for step in range(2):
        loss = module.compute_loss(next(stream), step, rank).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    state = module.model.state_dict()  # DTensor shards (parameters) and plain buffers
    full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in state.items()}
    with open(f"{folder}/fsdp{rank}.json", "w") as f:
        json.dump({"losses": losses, "weights": digest_state(full)}, f)
    dist.destroy_process_group()


def digest_state(state):
    h = hashlib.sha256()
    for name, value in sorted(state.items()):
        h.update(name.encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_fsdp2_two_cpu_processes_take_two_steps(tiny_config, one_tile_shards, tmp_path):
    import socket

    import torch.multiprocessing as mp

    config = tiny_config(max_steps=2)
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(
            config.data, shards=str(one_tile_shards / "*.tar"), batch_size=1, shuffle_buffer=1
        ),
    )
    with socket.socket() as s:  # a free port for the process group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp_worker, args=(2, port, config, str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"fsdp{r}.json").read_text()) for r in (0, 1)]
    assert all(len(r["losses"]) == 2 and all(map(lambda x: x == x and x > 0, r["losses"])) for r in ranks)
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank trained on its own samples
    assert ranks[0]["weights"] == ranks[1]["weights"]  # ... and the sharded weights are one model
