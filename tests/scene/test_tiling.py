"""The tiling engine with fake tile functions: exact blending, seamless output, nodata, resume, batching."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from terramind.core.errors import InputError
from terramind.scene.engine import Carry, TileLayout, blend_window, run_tiles


class MemorySource:
    def __init__(self, data: dict[str, np.ndarray], valid: np.ndarray | None = None):
        self.data = data
        h, w = next(iter(data.values())).shape[1:]
        self.valid = np.ones((h, w), bool) if valid is None else valid
        self.reads: list[tuple[int, int]] = []

    def read_rows(self, top: int, height: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        self.reads.append((top, height))
        rows = slice(top, top + height)
        return {k: v[:, rows].copy() for k, v in self.data.items()}, self.valid[rows]


class MemorySink:
    def __init__(self, channels: Mapping[str, int], h: int, w: int):
        self.out = {k: np.full((c, h, w), np.nan, np.float32) for k, c in channels.items()}
        self.valid = np.zeros((h, w), bool)
        self.rows: list[int] = []

    def write_strip(self, row: int, top: int, data: Mapping[str, np.ndarray], valid: np.ndarray) -> None:
        self.rows.append(row)
        for k, v in data.items():
            assert np.isnan(self.out[k][:, top : top + v.shape[1]]).all(), "a row was written twice"
            self.out[k][:, top : top + v.shape[1]] = v
        self.valid[top : top + valid.shape[0]] = valid


def identity(tiles: Mapping[str, np.ndarray], indices: Sequence[int]) -> dict[str, np.ndarray]:
    return {"out": tiles["x"]}


def run(data, fn, *, tile=64, overlap=16, batch=2, valid=None, fill=0.0):
    c, h, w = data.shape
    layout = TileLayout(h, w, tile, overlap)
    sink = MemorySink({"out": c}, h, w)
    run_tiles(
        layout,
        MemorySource({"x": data}, valid),
        fn,
        sink,
        channels={"out": c},
        fill={"x": np.full(c, fill)},
        batch=batch,
    )
    return sink


@pytest.mark.parametrize("shape", [(150, 230), (64, 64), (40, 90), (200, 50), (17, 5)])
def test_identity_tiles_reproduce_the_scene_exactly(shape):
    """Weights sum correctly everywhere (and small scenes are padded, then cropped back)."""
    data = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    data[0] += (np.indices(shape).sum(0) % 2) * 5  # a checkerboard: any misplaced pixel shows
    sink = run(data, identity)
    # sum(w x) / sum(w) over <= 4 overlapping tiles in fp32: a few ulps (2^-24 = 6e-8 relative) of |x| <= 10,
    # i.e. < 1e-5; a misplaced pixel is off by ~5 (the checkerboard)
    np.testing.assert_allclose(sink.out["out"], data, rtol=1e-5, atol=1e-5)
    assert sink.valid.all()


def test_constant_input_gives_seamless_output():
    data = np.full((1, 150, 230), 3.0, np.float32)
    sink = run(data, lambda t, i: {"out": t["x"] * 2 + 1})
    assert np.all(sink.out["out"] == pytest.approx(7.0, abs=1e-5))  # blend of 7s: a few fp32 ulps of 7 (5e-7)


def test_blending_is_smooth_across_tile_borders():
    """Each tile returns its own constant; the blend must ramp, not jump, between neighbours."""
    data = np.zeros((1, 150, 230), np.float32)
    sink = run(data, lambda t, i: {"out": np.stack([np.full((1, 64, 64), k % 7.0) for k in i])}, overlap=32)
    out = sink.out["out"][0]
    jumps = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert jumps < 0.6  # values span 0..6; a hard seam would jump by up to 6
    assert out.max() - out.min() > 3  # the tiles really differed


def test_window_is_positive_and_flat_inside():
    w = blend_window(64, 16)
    assert w.min() > 0
    assert np.all(w[16:48, 16:48] == 1.0)
    np.testing.assert_allclose(w, w.T)


def test_nodata_is_filled_for_the_model_and_masked_in_outputs():
    data = np.random.default_rng(1).normal(size=(1, 100, 120)).astype(np.float32)
    valid = np.ones((100, 120), bool)
    valid[10:20, 30:70] = False
    seen = []

    def fn(tiles, idx):
        seen.append(tiles["x"].copy())
        return {"out": tiles["x"]}

    sink = run(data, fn, valid=valid, fill=-123.0)
    assert not sink.valid[10:20, 30:70].any() and sink.valid[:10].all()
    assert any((s == -123.0).any() for s in seen)  # invalid pixels were replaced before the model saw them
    np.testing.assert_allclose(sink.out["out"][0][valid], data[0][valid], rtol=1e-5, atol=1e-5)  # as above


def test_all_nodata_tiles_are_skipped():
    data = np.zeros((1, 64, 200), np.float32)
    valid = np.zeros((64, 200), bool)
    valid[:, :40] = True  # tile 1 starts at column 48
    calls = []
    run(data, lambda t, i: (calls.extend(i), {"out": t["x"]})[1], valid=valid, batch=1)
    assert calls == [0]  # only the tile touching the valid block ran


def test_batch_size_does_not_change_results_and_indices_are_global():
    data = np.random.default_rng(2).normal(size=(1, 150, 230)).astype(np.float32)

    def fn(tiles, idx):
        return {"out": tiles["x"] + np.asarray(idx, np.float32)[:, None, None, None]}

    a, b = run(data, fn, batch=1), run(data, fn, batch=5)
    np.testing.assert_array_equal(a.out["out"], b.out["out"])


def test_resume_after_interruption_gives_the_same_scene():
    data = np.random.default_rng(3).normal(size=(1, 200, 150)).astype(np.float32)
    layout = TileLayout(200, 150, 64, 16)
    fn = lambda t, i: {"out": t["x"] * 3 + np.asarray(i, np.float32)[:, None, None, None]}  # noqa: E731
    full = MemorySink({"out": 1}, 200, 150)
    run_tiles(layout, MemorySource({"x": data}), fn, full, channels={"out": 1}, fill={"x": np.zeros(1)})

    saved: dict[int, Carry | None] = {}

    class CrashError(Exception):
        pass

    def on_row(row, carry):
        saved[row] = carry
        if row == 1:
            raise CrashError

    part = MemorySink({"out": 1}, 200, 150)
    with pytest.raises(CrashError):
        run_tiles(
            layout,
            MemorySource({"x": data}),
            fn,
            part,
            channels={"out": 1},
            fill={"x": np.zeros(1)},
            on_row=on_row,
        )
    source = MemorySource({"x": data})
    run_tiles(
        layout, source, fn, part, channels={"out": 1}, fill={"x": np.zeros(1)}, start_row=2, carry=saved[1]
    )
    assert source.reads[0][0] == layout.rows[2]  # finished rows were not recomputed
    np.testing.assert_array_equal(part.out["out"], full.out["out"])


def test_layout_rejects_bad_overlap_and_covers_the_scene():
    with pytest.raises(InputError, match="overlap"):
        TileLayout(100, 100, 64, 64)
    layout = TileLayout(1000, 333, 224, 32)
    assert layout.rows[-1] + 224 == 1000 and layout.cols[-1] + 224 == 333
    assert all(b - a <= 192 for a, b in zip(layout.rows, layout.rows[1:], strict=False))


def test_wrong_tile_output_shape_is_reported():
    data = np.zeros((1, 64, 64), np.float32)
    with pytest.raises(InputError, match="shape"):
        run(data, lambda t, i: {"out": t["x"][:, :, :10]})


@pytest.mark.parametrize("keep", [False, True])
def test_tile_function_keeps_decoders_resident_only_when_told(keep: bool) -> None:
    from terramind.generation import GenerationOptions
    from terramind.generation.scene import generator_tile_fn
    from terramind.scene import SceneOutput

    class Recorder:
        def __init__(self) -> None:
            self.events: list[str] = []
            self.options: list[object] = []

        def keep_loaded(self) -> None:
            self.events.append("keep")

        def generate(self, batch: dict, *, options: object, **kwargs: object) -> dict:
            self.events.append("generate")
            self.options.append(options)
            return {"DEM": torch.zeros(1, 1, 32, 32)}

    gen, opts = Recorder(), GenerationOptions(steps=3)
    fn = generator_tile_fn(gen, [SceneOutput.for_modality("DEM", Path("DEM.tif"))], opts, keep_decoders=keep)  # type: ignore[arg-type]
    assert gen.events == []  # nothing is loaded before the first batch
    tile = {"S2L2A": np.zeros((1, 12, 32, 32), np.float32)}
    for i in range(3):
        fn(tile, [i])
    # told to keep: resident before the first batch, once; not told (one-batch scenes): one decoder at a time
    assert gen.events == (["keep"] if keep else []) + ["generate"] * 3
    assert all(o is opts for o in gen.options)  # the caller's options travel unchanged
