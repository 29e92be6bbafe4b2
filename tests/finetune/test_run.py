"""The fine-tuning runner and its config: constructor signatures as the schema, temporal tasks for scenes, and
the warmup + cosine schedule shared with pretraining."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from terramind.core.errors import InputError
from terramind.finetune.config import FinetuneConfig
from terramind.finetune.temporal_tasks import ChangeDetectionTask, SeriesDenseModel, TemporalSegmentationTask
from terramind.train.config import check_arguments, from_dict, keyword_arguments, load_yaml
from terramind.train.optim import warmup_cosine

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune"


def test_keyword_arguments_follow_forwarded_options_to_the_base_class() -> None:
    valid, required = keyword_arguments(ChangeDetectionTask)
    # its own (backbone, num_classes=2) and every SegmentationTask option it forwards through **options
    assert {"backbone", "num_classes", "loss", "decoder", "lr", "warmup_steps"} <= valid
    assert required == {"backbone"}  # num_classes has a default here, though SegmentationTask requires it
    with pytest.raises(InputError, match=r"task: missing key\(s\) \['num_classes'\]"):
        check_arguments(TemporalSegmentationTask, {}, "task", filled=("backbone",))


def test_a_config_without_required_task_arguments_is_refused() -> None:
    values = {"task": {"kind": "segmentation"}, "backbone": {}, "data": {"kind": "geotiff", "data_root": "x"}}
    with pytest.raises(InputError, match=r"run.yaml: task: missing key\(s\) \['num_classes'\]"):
        from_dict(FinetuneConfig, values, "run.yaml")


def test_load_dense_task_builds_a_temporal_task(tmp_path: Path) -> None:
    from terramind.cli.finetune import load_dense_task
    from terramind.finetune.run import build

    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(
        yaml.safe_dump(
            {
                "backbone": {"name": "terramind_v1_tiny", "weights": None, "encoder_depth": 4},
                "task": {"layer_indices": [0, 1, 2, 3]},  # the config's [2, 5, 8, 11] need 12 blocks
            }
        )
    )
    files = [CONFIGS / "temporal" / "impactmesh_flood.yaml", tiny]
    task, _ = build(load_yaml(FinetuneConfig, *files))
    ckpt = tmp_path / "task.ckpt"
    torch.save({"state_dict": task.state_dict()}, ckpt)
    dense = load_dense_task(files, ckpt, command="finetune scene")
    assert isinstance(dense.model, SeriesDenseModel) and dense.kind == "classes" and dense.out_channels == 2
    assert [s.name for s in dense.specs] == ["S1RTC", "S2L2A", "DEM"]
    loaded = dense.model.state_dict()
    assert all(torch.equal(v, loaded[k.removeprefix("model.")]) for k, v in task.state_dict().items())


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_warmup_cosine_is_the_learning_rate_of_linear_then_cosine_annealing(warmup: int) -> None:
    """The schedule fine-tuning's ``cosine`` had (torch's LinearLR, then CosineAnnealingLR) is unchanged."""
    total, lr = 20, 1e-2
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1))
    if warmup:
        ramp = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0 / warmup, total_iters=max(warmup - 1, 1)
        )
        main = torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])  # type: ignore[assignment]
    before = []
    for _ in range(total):
        before.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        main.step()
    after = [lr * warmup_cosine(step, warmup, total) for step in range(total)]
    # torch's recursive cosine update accumulates float64 rounding (~1e-16 per step over 20 steps): 1e-12
    # relative bounds it with room, far below any learning-rate difference that would matter
    assert after == pytest.approx(before, rel=1e-12, abs=1e-15)
    assert math.isclose(
        after[-1], lr * 0.5 * (1 + math.cos(math.pi * (total - 1 - warmup) / (total - warmup)))
    )
