"""Exported parts (api/export.py) compute what the eager modules do, also on inputs they were not traced on.

The exporters trace for tens of seconds on 2 CPU cores: the full backbone and torch.export decoder-step
round trips are marked slow; the ONNX path (tokenizer encoder) and the torch.export write-check-refuse path
run always.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from terramind.api import export as export_module
from terramind.api.export import build_part, export
from terramind.core.errors import InputError, OutputError

TILE = 32  # 2 x 2 tokens; a multiple of the tiny UNet's side multiple


def fresh_inputs(built: export_module.Built) -> tuple[torch.Tensor, ...]:
    """Other inputs of the same shapes than the traced ones."""
    g = torch.Generator().manual_seed(7)
    return tuple(x if not x.is_floating_point() else torch.rand(x.shape, generator=g) for x in built.inputs)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


@pytest.mark.slow
def test_backbone_to_onnx_matches_eager_on_new_input(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "backbone.onnx"
    report = export("backbone", "onnx", out, model="terramind_v1_tiny", tile=TILE, repeats=1)
    assert report.path == out and report.size_bytes == out.stat().st_size > 0
    assert set(report.relative_errors) == {"features"} and report.relative_errors["features"] <= 1e-4
    built = build_part("backbone", "terramind_v1_tiny", None, None, TILE, 1)  # same seeded random weights
    (x,) = fresh_inputs(built)
    (got,) = ort.InferenceSession(str(out)).run(None, {"image": x.numpy()})
    with torch.inference_mode():
        expected = built.module(x)
    assert got.shape == (12, 1, 4, 192)  # tiny: 12 blocks, 2x2 tokens, width 192
    # fp32 with re-associated sums: rounding only, far below 1e-4 of the range
    assert relative(torch.from_numpy(got), expected) <= 1e-4


def test_tokenizer_encoder_to_onnx_gives_the_same_ids(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "encoder.onnx"
    report = export("tokenizer-encoder", "onnx", out, tile=TILE, repeats=1)
    assert set(report.relative_errors) == {"codes"}  # ids are integers: compared exactly
    built = build_part("tokenizer-encoder", "terramind_v1_tiny", None, "S2L2A", TILE, 1)
    (x,) = fresh_inputs(built)
    codes, ids = ort.InferenceSession(str(out)).run(None, {"image": x.numpy()})
    with torch.inference_mode():
        eager_codes, eager_ids = built.module(x)
    assert ids.dtype == np.int64 and np.array_equal(ids, eager_ids.numpy())
    assert relative(torch.from_numpy(codes), eager_codes) <= 1e-4


@pytest.mark.slow
def test_decoder_step_to_torch_export_runs_without_our_classes(tmp_path: Path) -> None:
    out = tmp_path / "step.pt2"
    report = export("decoder-step", "torch-export", out, modality="DEM", tile=TILE, batch=2, repeats=1)
    assert report.relative_errors["x0"] <= 1e-4
    program = torch.export.load(out).module()
    built = build_part("decoder-step", "terramind_v1_tiny", None, "DEM", TILE, 2)
    x_t, _, codes = fresh_inputs(built)
    with torch.inference_mode():
        got, expected = (
            program(x_t, torch.tensor([499]), codes),
            built.module(x_t, torch.tensor([499]), codes),
        )
    assert got.shape == (2, 1, TILE, TILE)
    assert relative(got, expected) <= 1e-4


def test_a_disagreeing_export_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "MAX_RELATIVE_ERROR", -1.0)  # nothing can pass
    out = tmp_path / "step.pt2"
    with pytest.raises(OutputError, match=r"differs from eager by .* the file was not written"):
        export("decoder-step", "torch-export", out, tile=TILE, repeats=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"part": "encoder", "fmt": "onnx", "output": "a.onnx"}, "unknown export part 'encoder'"),
        ({"part": "backbone", "fmt": "tflite", "output": "a.tflite"}, "unknown export format 'tflite'"),
        ({"part": "backbone", "fmt": "onnx", "output": "a.pt2"}, r"a onnx file should end in \.onnx"),
        (
            {"part": "decoder-step", "fmt": "torch-export", "output": "a.pt2", "modality": "LULC"},
            "no diffusion",
        ),
        ({"part": "backbone", "fmt": "torch-export", "output": "a.pt2", "tile": 40}, "multiple of 16"),
    ],
)
def test_bad_requests_are_refused(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    kwargs["output"] = tmp_path / str(kwargs["output"])
    with pytest.raises(InputError, match=match):
        export(**kwargs, model="terramind_v1_tiny")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
