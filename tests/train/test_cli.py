import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from terramind.cli.main import main
from terramind.data.shards import read_samples
from terramind.train.config import PretrainConfig, load_yaml
from terramind.train.tokenizer import TokenizerTrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL_VIT = {"dim": 32, "depth": 1, "heads": 2}


def test_prepare_train_tokenizer_tokenize_and_pretrain(examples_dir, tmp_path, capsys):
    src = tmp_path / "src"
    for mod in ("S2L2A", "DEM"):
        shutil.copytree(examples_dir / mod, src / mod)
    assert main(["prepare", "--src", str(src), "--out", str(tmp_path / "raw"), "--shard-size", "3"]) == 0
    tok_cfg = {
        "modality": "DEM",
        "encoder": SMALL_VIT,
        "unet": {
            "model_channels": 16,
            "channel_mult": [1, 2],
            "num_res_blocks": 1,
            "attention_ds": [],
            "groups": 8,
        },
        "data": {"shards": str(tmp_path / "raw" / "*.tar"), "batch_size": 2, "crop": 32, "shuffle_buffer": 2},
        "trainer": {
            "max_steps": 2,
            "accelerator": "cpu",
            "devices": 1,
            "out_dir": str(tmp_path / "tok"),
            "progress_bar": False,
        },
    }
    (tmp_path / "tok.yaml").write_text(yaml.safe_dump(tok_cfg))
    assert main(["train-tokenizer", "-c", str(tmp_path / "tok.yaml")]) == 0
    assert (
        main(
            [
                "prepare",
                "--src",
                str(src),
                "--out",
                str(tmp_path / "tok_shards"),
                "--tokenize",
                f"DEM={tmp_path / 'tok'}",
            ]
        )
        == 0
    )
    sample = next(read_samples(tmp_path / "tok_shards" / "shard-000000.tar"))
    assert sample.tokens["DEM"].shape == (14, 14) and sample.tokens["DEM"].dtype == np.uint16
    pre_cfg = {
        "modalities": [{"name": "S2L2A", "target": False}, {"name": "DEM", "input": "pixel"}],
        "model": {
            "size": "tiny",
            "overrides": {
                "dim": 32,
                "encoder_depth": 1,
                "decoder_depth": 1,
                "num_heads": 2,
                "mlp_hidden": 64,
            },
        },
        "masking": {"num_input_tokens": 8, "num_target_tokens": 8},
        "data": {
            "shards": str(tmp_path / "tok_shards" / "*.tar"),
            "batch_size": 2,
            "crop": 64,
            "shuffle_buffer": 2,
        },
        "trainer": {
            "max_steps": 2,
            "accelerator": "cpu",
            "devices": 1,
            "out_dir": str(tmp_path / "pre"),
            "progress_bar": False,
            "checkpoint_every": 2,
        },
    }
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(pre_cfg))
    assert main(["pretrain", "-c", str(tmp_path / "pre.yaml")]) == 0
    assert (tmp_path / "pre" / "checkpoints" / "last.ckpt").is_file()


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("modalities: [{name: S2L2A}]\ntrainer: {max_stepz: 3}\n")
    assert main(["pretrain", "-c", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown key(s) ['max_stepz']" in capsys.readouterr().err
    assert main(["prepare", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert main(["prepare", "--src", str(tmp_path), "--out", str(tmp_path / "o"), "--tokenize", "DEM"]) == 2


@pytest.mark.parametrize("path", sorted((CONFIGS / "pretrain").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pretrain_configs_load(path):
    assert isinstance(load_yaml(PretrainConfig, path), PretrainConfig)


@pytest.mark.parametrize("path", sorted((CONFIGS / "tokenizer").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_tokenizer_configs_load(path):
    assert isinstance(load_yaml(TokenizerTrainConfig, path).tokenizer_config().levels, tuple)


def test_shipped_overlay_applies_to_a_shipped_config():
    config = load_yaml(
        PretrainConfig,
        CONFIGS / "pretrain" / "tiny_cpu.yaml",
        CONFIGS / "pretrain" / "overlays" / "cpu_smoke.yaml",
    )
    assert (config.trainer.max_steps, config.data.crop, config.model.overrides["dim"]) == (3, 64, 64)
    assert [m.name for m in config.modalities] == ["S2L2A", "S1RTC", "DEM", "LULC"]  # from the base
