"""The shared engine: base-plus-overlay configs, resume refused across configurations."""

import dataclasses

import pytest
import yaml

from terramind.core.errors import CheckpointError, InputError
from terramind.train.config import PretrainConfig, deep_merge, load_yaml
from terramind.train.tokenizer import train_tokenizer


def test_deep_merge_merges_mappings_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert deep_merge(base, {"a": {"y": [3]}, "c": 2}) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # the base is not changed


def test_overlay_configs(tmp_path):
    base, overlay = tmp_path / "base.yaml", tmp_path / "more.yaml"
    base.write_text(
        yaml.safe_dump({"modalities": [{"name": "S2L2A"}], "trainer": {"max_steps": 7, "devices": 1}})
    )
    overlay.write_text(yaml.safe_dump({"trainer": {"max_steps": 3}, "data": {"crop": 64}}))
    config = load_yaml(PretrainConfig, base, overlay)
    assert (config.trainer.max_steps, config.trainer.devices, config.data.crop) == (3, 1, 64)
    overlay.write_text(yaml.safe_dump({"trainer": {"max_stepz": 3}}))
    with pytest.raises(InputError, match=r"more\.yaml\.trainer: unknown key\(s\) \['max_stepz'\]"):
        load_yaml(PretrainConfig, base, overlay)


def test_tokenizer_resume_from_another_config_is_refused(train_shards, tmp_path):
    from test_tokenizer import config

    first = config(train_shards, tmp_path, "DEM", "diffusion", steps=1)
    train_tokenizer(first)
    other = dataclasses.replace(first, seed=1)
    with pytest.raises(CheckpointError, match=r"another configuration \(differs in: seed\)"):
        train_tokenizer(other, resume="last")


def test_tokenizer_trains_from_terramesh_by_config(terramesh_root, tmp_path):
    from test_tokenizer import config

    from terramind.train.config import DataSection

    base = config(tmp_path, tmp_path, "DEM", "diffusion", steps=2)  # its shards are replaced below
    data = DataSection(source="terramesh", root=str(terramesh_root), subset="majortom", batch_size=2, crop=32)
    module = train_tokenizer(dataclasses.replace(base, data=data))
    assert module.global_step == 2 and (tmp_path / "DEM" / "tokenizer.safetensors").is_file()
