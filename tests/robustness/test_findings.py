"""Findings of issue 18 that no other robustness module covers (see README.md here for the full map).

Each case runs a command as a user would, through the ``run_cli`` harness: the exit code, no traceback, a
message naming the problem and the exact set of files before and after.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from terramind.build import build_model
from terramind.core.files import TMP_MARK

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TILE = "38D_378R_2_3.tif"
S2 = EXAMPLES / "S2L2A" / TILE
DEM = EXAMPLES / "DEM" / TILE
TINY = "terramind_v1_tiny"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TMP_MARK in p.name]


# --- a directory where an input file is expected: "is a folder", never "does not exist" ------------------


@pytest.mark.parametrize(
    "argv",
    [
        lambda d, t: ["inspect", d, "-m", "DEM"],
        lambda d, t: ["reconstruct", d, "-m", "DEM", "-o", t / "r.tif"],
        lambda d, t: ["generate", "--input", f"S2L2A={d}", "--to", "DEM", "-o", t / "new"],
        lambda d, t: ["pretrain", "-c", d],
        lambda d, t: ["train-tokenizer", "-c", d],
    ],
    ids=["inspect", "reconstruct", "generate", "pretrain", "train-tokenizer"],
)
def test_a_folder_given_as_input_file_is_called_a_folder(run_cli, tmp_path, argv) -> None:
    folder = tmp_path / "tile.tif"
    folder.mkdir()
    outcome = run_cli(argv(folder, tmp_path))
    outcome.expect_failure("tile.tif", "folder")
    assert "does not exist" not in outcome.err


# --- output paths under a file, into a missing folder ------------------------------------------------------


OUTPUTS = {
    "reconstruct-under-file": (
        lambda f, t: ["reconstruct", DEM, "-m", "DEM", "-o", f / "r.tif"],
        ["afile", "a file, not a folder"],
    ),
    "inspect-png-missing": (
        lambda f, t: ["inspect", DEM, "-m", "DEM", "--png", t / "no" / "q.png"],
        ["no'", "does not exist"],
    ),
    "embed-under-file": (
        lambda f, t: ["embed", "--input", f"S2L2A={S2}", "-o", f / "e.npy"],
        ["afile", "a file, not a folder"],
    ),
    "water-under-file": (
        lambda f, t: ["zeroshot", "water", "--input", f"S2L2A={S2}", "-o", f / "w.tif"],
        ["afile", "a folder"],
    ),
    "tokenize-missing": (
        lambda f, t: ["tokenize", DEM, "-m", "DEM", "-o", t / "no" / "t.npz"],
        ["no'", "does not exist"],
    ),
}


@pytest.mark.parametrize("argv,phrases", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_output_paths_are_checked_before_any_work(run_cli, tmp_path, argv, phrases) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a regular file")
    run_cli(argv(afile, tmp_path)).expect_failure(*phrases)


# --- a truncated checkpoint on resume: one line naming it, exit 2 -------------------------------------------


def _truncated_checkpoint(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 0, "global_step": 1}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy cut short, a run killed mid-save
    return path


PRETRAIN_YAML = """\
modalities: [{{name: S2L2A, input: pixel}}, {{name: DEM, input: pixel}}]
model:
  size: tiny
  overrides: {{dim: 32, encoder_depth: 1, decoder_depth: 1, num_heads: 2, mlp_hidden: 64}}
masking: {{num_input_tokens: 8, num_target_tokens: 8}}
data: {{shards: "{shards}", batch_size: 2, crop: 64, shuffle_buffer: 2}}
trainer: {{max_steps: 1, accelerator: cpu, devices: 1, out_dir: "{out}", progress_bar: false}}
"""


def test_pretrain_resume_from_a_truncated_last_ckpt(run_cli, tmp_path) -> None:
    pytest.importorskip("lightning")
    config = tmp_path / "pre.yaml"
    config.write_text(PRETRAIN_YAML.format(shards=tmp_path / "none" / "*.tar", out=tmp_path / "run"))
    _truncated_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    run_cli(["pretrain", "-c", config, "--resume", "last"]).expect_failure(
        "cannot read checkpoint", "last.ckpt", "truncated, corrupt", "resume from an earlier checkpoint"
    )


def test_finetune_fit_from_a_truncated_ckpt_path(run_cli, tmp_path) -> None:
    pytest.importorskip("lightning")
    ft = _load("ft_cli", ROOT / "tests" / "cli" / "test_finetune.py")
    config = ft._config(tmp_path, EXAMPLES)
    cut = _truncated_checkpoint(tmp_path / "best.ckpt")
    run = tmp_path / "run"
    outcome = run_cli(["finetune", "fit", "-c", config, "--resume", cut], watch=cut.parent)
    assert outcome.code == 2 and "Traceback" not in outcome.err, outcome.err
    assert "cannot read checkpoint" in outcome.err and "best.ckpt" in outcome.err
    assert not list(run.rglob("*.ckpt"))  # nothing trained, nothing saved


def test_finetune_scene_from_a_truncated_ckpt_path(run_cli, tmp_path) -> None:
    pytest.importorskip("lightning")
    ft = _load("ft_cli", ROOT / "tests" / "cli" / "test_finetune.py")
    config = ft._config(tmp_path, EXAMPLES)
    cut = _truncated_checkpoint(tmp_path / "cut" / "best.ckpt")
    inputs = [f"S2L2A={S2}", "--input", f"S1RTC={EXAMPLES / 'S1RTC' / TILE}"]
    argv = [
        "finetune",
        "scene",
        "-c",
        config,
        "--ckpt_path",
        cut,
        "--input",
        *inputs,
        "-o",
        cut.parent / "o.tif",
    ]
    run_cli(argv, watch=cut.parent).expect_failure("cannot read checkpoint", "best.ckpt")


# --- folders as units: --skip-bad skips a truncated tile, lists it and embeds the rest ---------------------


def test_embed_skip_bad_skips_a_truncated_tile_and_embeds_the_rest(run_cli, tmp_path, caplog) -> None:
    folder = tmp_path / "S2L2A"
    folder.mkdir()
    names = sorted(p.name for p in (EXAMPLES / "S2L2A").glob("*.tif"))[:3]
    for name in names:
        shutil.copy(EXAMPLES / "S2L2A" / name, folder / name)
    cut = folder / names[1]
    os.truncate(cut, cut.stat().st_size // 3)
    args = [
        "embed",
        "--input",
        f"S2L2A={folder}",
        "--model",
        TINY,
        "--weights",
        "random",
        "--batch-size",
        "2",
    ]
    run_cli([*args, "-o", tmp_path / "e.npy"]).expect_failure(names[1])  # without --skip-bad: named, stops
    outcome = run_cli([*args, "-o", tmp_path / "e.npy", "--skip-bad"])
    assert outcome.code == 0, outcome.err
    # listed with its reason (a logged warning: on stderr in a terminal, captured by pytest here)
    assert f"skipped 1 bad tile(s):\n  {Path(names[1]).stem}" in caplog.text and "truncated" in caplog.text
    kept = [Path(n).stem for n in (names[0], names[2])]
    assert (tmp_path / "e.names.txt").read_text().split() == kept
    assert np.load(tmp_path / "e.npy").shape[0] == 2


# --- a kill during the final write leaves the previous file untouched (tokenize, embed) --------------------


def _interrupted_after_some_bytes(monkeypatch, module, name: str) -> list[int]:
    """Make ``module.name`` (an array writer) write a few bytes, then raise KeyboardInterrupt (Ctrl-C)."""
    calls = [0]

    def killed(file, *args, **kwargs):
        calls[0] += 1
        if hasattr(file, "write"):
            file.write(b"PK\x03\x04 half")
        else:
            Path(file).write_bytes(b"\x93NUMPY half")
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, killed)
    return calls


def test_a_kill_while_tokenize_writes_keeps_the_old_npz(run_cli, tmp_path, monkeypatch) -> None:
    tok = _load("tok_cli", ROOT / "tests" / "cli" / "test_tokenize.py")
    monkeypatch.setattr(tok.api_tokenizers, "create_tokenizer", lambda m, weights=None: tok.tiny_tokenizer(m))
    out = tmp_path / "t.npz"
    out.write_bytes(b"previous ids")
    calls = _interrupted_after_some_bytes(monkeypatch, np, "savez_compressed")
    outcome = run_cli(["tokenize", DEM, "-m", "DEM", "-o", out, "--weights", "random", "--overwrite"])
    assert outcome.code == 130 and calls == [1], outcome.err
    assert out.read_bytes() == b"previous ids" and _temps(tmp_path) == []
    assert outcome.files_after == outcome.files_before


def test_a_kill_while_embed_writes_keeps_the_old_npy(run_cli, tmp_path, monkeypatch) -> None:
    out = tmp_path / "e.npy"
    out.write_bytes(b"previous embeddings")
    calls = _interrupted_after_some_bytes(monkeypatch, np, "save")
    args = ["embed", "--input", f"S2L2A={S2}", "-o", out, "--model", TINY, "--weights", "random"]
    outcome = run_cli([*args, "--overwrite"])
    assert outcome.code == 130 and calls == [1], outcome.err
    assert out.read_bytes() == b"previous embeddings" and _temps(tmp_path) == []
    assert outcome.files_after == outcome.files_before


# --- NaN weights: generate refuses them naming the tensor, before any output folder exists -----------------


def _nan_generate(run_cli, tmp_path):
    state = build_model(TINY).state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[name][0, :3] = float("nan")
    weights = tmp_path / "nan.pt"
    torch.save(state, weights)
    argv = ["generate", "--input", f"S2L2A={S2}", "--to", "DEM", "-o", tmp_path / "out", "--model", TINY]
    return name, run_cli([*argv, "--weights", weights, "--tokenizer-weights", "random"])


def test_generate_refuses_nan_weights_naming_the_tensor(run_cli, tmp_path) -> None:
    name, outcome = _nan_generate(run_cli, tmp_path)
    assert outcome.code == 2 and "Traceback" not in outcome.err, outcome.err
    assert f"tensor {name!r} holds 3 NaN/Inf values" in outcome.err and "nan.pt" in outcome.err
    assert not list((tmp_path / "out").rglob("*"))  # nothing written (an empty folder: see the next test)


def test_generate_with_nan_weights_leaves_no_output_folder(run_cli, tmp_path) -> None:
    _, outcome = _nan_generate(run_cli, tmp_path)
    outcome.expect_failure("NaN/Inf values")


def test_output_folder_is_removed_when_the_run_fails_before_writing(tmp_path) -> None:
    from terramind.core.files import output_folder
    from terramind.core.lock import folder_lock

    with pytest.raises(KeyboardInterrupt), output_folder(tmp_path / "a" / "b") as out, folder_lock(out):
        raise KeyboardInterrupt  # failed before any file: nothing of this run remains
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a").mkdir()
    with pytest.raises(RuntimeError), output_folder(tmp_path / "a" / "b") as out:
        (out / "progress.json").write_text("{}")  # resume state written: kept, and its parents
        raise RuntimeError
    assert (tmp_path / "a" / "b" / "progress.json").is_file()
    with output_folder(tmp_path / "c") as out:  # success keeps the folder
        pass
    assert out.is_dir()


# --- reconstruct honours nodata: never fed to the model as data, written back, left out of the scores ------


def test_reconstruct_masks_nodata_writes_it_back_and_scores_valid_pixels(
    run_cli, tmp_path, monkeypatch
) -> None:
    import json

    import rasterio

    from terramind.evaluate.reconstruction import reconstruction_scores
    from terramind.modalities import get_modality, standardize

    tok = _load("tok_cli", ROOT / "tests" / "cli" / "test_tokenize.py")
    seen: list[torch.Tensor] = []

    def factory(modality, weights=None):
        tokenizer = tok.tiny_tokenizer(modality).eval()
        encode = tokenizer.encode
        tokenizer.encode = lambda x, *a, **k: (seen.append(x.clone()), encode(x, *a, **k))[1]
        return tokenizer

    monkeypatch.setattr(tok.api_tokenizers, "create_tokenizer", factory)
    with rasterio.open(DEM) as src:
        data, profile = src.read().astype(np.float32), dict(src.profile, dtype="float32", nodata=-9999.0)
    data[:, 40:100, 50:120] = -9999.0  # a hole of 60 x 70 nodata pixels
    valid = data[0] != -9999.0
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    out = tmp_path / "rec.tif"
    outcome = run_cli(["reconstruct", path, "-m", "DEM", "-o", out, "--weights", "random", "--json",
                       "--diffusion-steps", "1"])  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert "4200 nodata pixel(s) of dem.tif filled with the DEM mean" in outcome.err
    (x,) = seen
    expected = standardize(get_modality("DEM"), data)
    assert torch.equal(x[0, :, ~torch.from_numpy(valid)], torch.zeros(1, 4200))  # the mean, not -9999
    np.testing.assert_array_equal(x[0].numpy()[:, valid], expected[:, valid])
    with rasterio.open(out) as f:
        rec = f.read()
        assert f.nodata == -9999.0
    assert (rec[:, ~valid] == -9999.0).all() and (rec[:, valid] != -9999.0).all()
    scores = json.loads(outcome.out)
    # scored over valid pixels only: the same numbers as scoring the valid pixels, computed independently
    span = float(data[:, valid].max() - data[:, valid].min())
    mse = float(np.mean((data[:, valid].astype(np.float64) - rec[:, valid]) ** 2))
    assert scores["psnr_db"] == pytest.approx(10 * np.log10(span**2 / mse), rel=1e-9)  # float64 round-off
    assert scores == reconstruction_scores(get_modality("DEM"), data, rec, valid) | {
        k: scores[k] for k in ("file", "modality", "output")
    }


# --- zeroshot --json: undefined scores are null, never NaN (valid JSON) -------------------------------------


def test_zeroshot_json_with_no_water_anywhere_is_valid_json(run_cli, tmp_path, monkeypatch) -> None:
    import json

    import rasterio

    import terramind.cli.zeroshot as zeroshot

    writes = _load("rob_writes", ROOT / "tests" / "robustness" / "test_writes.py")
    monkeypatch.setattr(zeroshot, "create_generator", lambda *a, **k: writes._Water())
    with rasterio.open(S2) as src:
        profile = dict(src.profile, count=1, dtype="uint8", nodata=None)
    label = tmp_path / "label.tif"
    with rasterio.open(label, "w", **profile) as dst:
        dst.write(np.zeros((1, profile["height"], profile["width"]), "uint8"))  # no water in the truth
    argv = ["zeroshot", "water", "--input", f"S2L2A={S2}", "-o", tmp_path / "w.tif", "--label", label]
    outcome = run_cli([*argv, "--tile", "112", "--json"])
    assert outcome.code == 0, outcome.err

    def no_nan(text: str) -> None:
        raise AssertionError(f"{text} in JSON output")

    scores = json.loads(outcome.out.splitlines()[-1], parse_constant=no_nan)
    assert scores["recall"] is None  # 0 / 0: undefined, said so


# --- garbage through the scene and folder commands: refused before the model loads ------------------------


def _huge_values(tmp_path: Path) -> Path:
    import rasterio

    with rasterio.open(S2) as src:
        data, profile = src.read().astype(np.float32), dict(src.profile, dtype="float32")
    data[3, :2, :5] = 1e30
    path = tmp_path / "S2L2A" / "huge.tif"
    path.parent.mkdir()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def _truncated_tile(tmp_path: Path) -> Path:
    import rasterio

    with rasterio.open(S2) as src:
        data, profile = src.read(), dict(src.profile, compress="deflate", tiled=False)
    path = tmp_path / "S2L2A" / "cut.tif"
    path.parent.mkdir()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    os.truncate(path, path.stat().st_size // 2)
    return path


def _tiny_generators(monkeypatch) -> None:
    """The tiny random generator for generate, the NDWI stand-in for zeroshot water."""
    import terramind.cli.zeroshot as zeroshot
    from terramind.api import generation as api_generation

    tiny = _load("gen_tiny", ROOT / "tests" / "generation" / "tiny.py")
    writes = _load("rob_writes", ROOT / "tests" / "robustness" / "test_writes.py")
    monkeypatch.setattr(
        api_generation, "create_generator", lambda n, **k: tiny.tiny_generator(k["inputs"], k["outputs"])
    )
    monkeypatch.setattr(zeroshot, "create_generator", lambda *a, **k: writes._Water())


BAD_TILES = {"1e30": (_huge_values, ["huge.tif", "1e+30"]), "truncated": (_truncated_tile, ["cut.tif"])}
SCENE_COMMANDS = {
    "generate": lambda p, t: ["generate", "--input", f"S2L2A={p}", "--to", "DEM", "-o", t / "out"],
    "embed": lambda p, t: ["embed", "--input", f"S2L2A={p}", "-o", t / "e.npy", "--model", TINY],
    "embed-folder": lambda p, t: [
        "embed",
        "--input",
        f"S2L2A={p.parent}",
        "-o",
        t / "e.npy",
        "--model",
        TINY,
    ],
    "water": lambda p, t: ["zeroshot", "water", "--input", f"S2L2A={p}", "-o", t / "w.tif"],
    "reconstruct": lambda p, t: ["reconstruct", p, "-m", "S2L2A", "-o", t / "r.tif"],
}


@pytest.mark.parametrize("bad", BAD_TILES, ids=BAD_TILES.keys())
@pytest.mark.parametrize("command", SCENE_COMMANDS, ids=SCENE_COMMANDS.keys())
def test_bad_tiles_are_refused_by_every_command(run_cli, tmp_path, monkeypatch, bad, command) -> None:
    _tiny_generators(monkeypatch)
    make, phrases = BAD_TILES[bad]
    path = make(tmp_path)
    outcome = run_cli([*SCENE_COMMANDS[command](path, tmp_path), "--weights", "random"])
    outcome.expect_failure(*phrases)


@pytest.mark.parametrize("bad", BAD_TILES, ids=BAD_TILES.keys())
@pytest.mark.parametrize("command", ["generate", "water"])
def test_scene_values_are_checked_before_the_model_loads(
    run_cli, tmp_path, monkeypatch, bad, command
) -> None:
    import terramind.cli.zeroshot as zeroshot
    from terramind.api import generation as api_generation

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the scene's values were checked")

    monkeypatch.setattr(api_generation, "create_generator", no_model)
    monkeypatch.setattr(zeroshot, "create_generator", no_model)
    make, phrases = BAD_TILES[bad]
    run_cli([*SCENE_COMMANDS[command](make(tmp_path), tmp_path), "--weights", "random"]).expect_failure(
        *phrases
    )


@pytest.mark.parametrize("command", ["generate", "water"])
def test_a_scene_refused_at_its_first_window_leaves_no_work_folder(
    run_cli, tmp_path, monkeypatch, command
) -> None:
    _tiny_generators(monkeypatch)
    path = _huge_values(tmp_path)
    run_cli([*SCENE_COMMANDS[command](path, tmp_path), "--weights", "random"]).expect_failure("1e+30")


# --- band descriptions are honoured by every reader (tokenize as well as inspect) --------------------------


def test_tokenize_reorders_reversed_bands_by_name(run_cli, tmp_path, monkeypatch) -> None:
    import rasterio

    from terramind.modalities import get_modality

    tok = _load("tok_cli", ROOT / "tests" / "cli" / "test_tokenize.py")
    monkeypatch.setattr(tok.api_tokenizers, "create_tokenizer", lambda m, weights=None: tok.tiny_tokenizer(m))
    bands = get_modality("S2L2A").bands
    with rasterio.open(S2) as src:
        data, profile = src.read(), dict(src.profile)
    paths = {}
    for name, order in (("right", list(range(12))), ("reversed", list(range(11, -1, -1)))):
        paths[name] = tmp_path / f"{name}.tif"
        with rasterio.open(paths[name], "w", **profile) as dst:
            dst.write(data[order])
            for i, b in enumerate(order, start=1):
                dst.set_band_description(i, bands[b])
    ids = {}
    for name, path in paths.items():
        out = tmp_path / f"{name}.npz"
        assert run_cli(["tokenize", path, "-m", "S2L2A", "-o", out, "--weights", "random"]).code == 0
        with np.load(out) as npz:
            ids[name] = npz["ids"]
    np.testing.assert_array_equal(ids["reversed"], ids["right"])


# --- a scene without one valid pixel is refused, not written empty ------------------------------------------


def test_generate_refuses_an_all_nodata_scene(run_cli, tmp_path, monkeypatch) -> None:
    import rasterio

    from terramind.api import generation as api_generation

    tiny = _load("gen_tiny", ROOT / "tests" / "generation" / "tiny.py")
    monkeypatch.setattr(
        api_generation, "create_generator", lambda n, **k: tiny.tiny_generator(k["inputs"], k["outputs"])
    )
    with rasterio.open(S2) as src:
        profile = dict(src.profile, dtype="float32", nodata=float("nan"))
    path = tmp_path / "nan.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((12, profile["height"], profile["width"]), np.nan, np.float32))
    outcome = run_cli(["generate", "--input", f"S2L2A={path}", "--to", "DEM", "-o", tmp_path / "out"])
    assert outcome.code == 2 and "Traceback" not in outcome.err, outcome.err
    assert "no valid pixels" in outcome.err and not list((tmp_path / "out").rglob("*.tif"))


# --- training output folders are checked before a model is built -------------------------------------------


TOKENIZER_YAML = """\
modality: DEM
encoder: {{dim: 32, depth: 1, heads: 2}}
unet: {{model_channels: 16, channel_mult: [1, 2], num_res_blocks: 1, attention_ds: [], groups: 8}}
data: {{shards: "{shards}", batch_size: 2, crop: 32, shuffle_buffer: 2}}
trainer: {{max_steps: 1, accelerator: cpu, devices: 1, out_dir: "{out}", progress_bar: false}}
"""


@pytest.mark.parametrize(
    "command,template", [("pretrain", PRETRAIN_YAML), ("train-tokenizer", TOKENIZER_YAML)]
)
def test_training_out_dir_that_is_a_file_is_refused(run_cli, tmp_path, command, template) -> None:
    pytest.importorskip("lightning")
    (tmp_path / "afile").write_text("a regular file")
    config = tmp_path / "run.yaml"
    config.write_text(template.format(shards=tmp_path / "none" / "*.tar", out=tmp_path / "afile"))
    run_cli([command, "-c", config]).expect_failure("output folder", "afile", "is a file: give a folder")
    config.write_text(template.format(shards=tmp_path / "none" / "*.tar", out=tmp_path / "run"))
    _truncated_checkpoint(tmp_path / "cut.ckpt")
    run_cli([command, "-c", config, "--resume", tmp_path / "cut.ckpt"]).expect_failure(
        "cannot read checkpoint", "cut.ckpt"
    )


# --- an unwritable output folder, also where the tests run as root (who may write anywhere) ---------------


@pytest.mark.parametrize(
    "argv",
    [
        lambda d: ["tokenize", DEM, "-m", "DEM", "-o", d / "t.npz"],
        lambda d: ["reconstruct", DEM, "-m", "DEM", "-o", d / "r.tif"],
        lambda d: ["embed", "--input", f"S2L2A={S2}", "-o", d / "e.npy"],
        lambda d: ["generate", "--input", f"S2L2A={S2}", "--to", "DEM", "-o", d / "new"],
        lambda d: ["zeroshot", "water", "--input", f"S2L2A={S2}", "-o", d / "w.tif"],
    ],
    ids=["tokenize", "reconstruct", "embed", "generate", "water"],
)
def test_an_unwritable_output_folder_is_named(run_cli, tmp_path, monkeypatch, argv) -> None:
    from terramind.core import files as core_files

    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    monkeypatch.setattr(core_files.os, "access", lambda p, mode: Path(p) != locked and access(p, mode))
    run_cli(argv(locked)).expect_failure("locked", "not writable")


# --- a full disk on tokenize's and embed's final write: one line, the previous file kept --------------------


def _disk_full_after_some_bytes(monkeypatch, name: str) -> None:
    import errno

    def full(file, *args, **kwargs):
        if hasattr(file, "write"):
            file.write(b"PK\x03\x04 half")
        else:
            Path(file).write_bytes(b"\x93NUMPY half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, name, full)


def test_disk_full_while_tokenize_writes_keeps_the_old_npz(run_cli, tmp_path, monkeypatch) -> None:
    tok = _load("tok_cli", ROOT / "tests" / "cli" / "test_tokenize.py")
    monkeypatch.setattr(tok.api_tokenizers, "create_tokenizer", lambda m, weights=None: tok.tiny_tokenizer(m))
    out = tmp_path / "t.npz"
    out.write_bytes(b"previous ids")
    _disk_full_after_some_bytes(monkeypatch, "savez_compressed")
    outcome = run_cli(["tokenize", DEM, "-m", "DEM", "-o", out, "--weights", "random", "--overwrite"])
    outcome.expect_failure("disk full while writing", "t.npz")
    assert out.read_bytes() == b"previous ids"


def test_disk_full_while_embed_writes_keeps_the_old_npy(run_cli, tmp_path, monkeypatch) -> None:
    out = tmp_path / "e.npy"
    out.write_bytes(b"previous embeddings")
    _disk_full_after_some_bytes(monkeypatch, "save")
    args = ["embed", "--input", f"S2L2A={S2}", "-o", out, "--model", TINY, "--weights", "random"]
    run_cli([*args, "--overwrite"]).expect_failure("disk full while writing", "e.npy")
    assert out.read_bytes() == b"previous embeddings"


# --- two runs at once: zeroshot water and prepare stop at once, naming the other run ------------------------


@pytest.mark.parametrize("command", ["water", "prepare"])
def test_a_second_writer_stops_naming_the_first(run_cli, tmp_path, monkeypatch, command) -> None:
    import subprocess
    import sys

    from terramind.core.lock import LOCK_NAME

    _tiny_generators(monkeypatch)
    writes = _load("rob_writes", ROOT / "tests" / "robustness" / "test_writes.py")
    out = tmp_path / "out"
    out.mkdir()
    if command == "water":
        argv, lock = ["zeroshot", "water", "--input", f"S2L2A={S2}", "-o", out / "w.tif"], out / LOCK_NAME
    else:
        pytest.importorskip("lightning")  # prepare needs the train extra
        argv, lock = ["prepare", "--src", EXAMPLES, "-o", out / "shards"], out / f".shards{LOCK_NAME}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    hold = writes.HOLD.replace("folder_lock(sys.argv[1])", "folder_lock(sys.argv[1], lock_file=sys.argv[2])")
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(out), str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        run_cli(argv).expect_failure("being written by another run", f"PID {proc.pid}")
    finally:
        proc.kill()
        proc.wait()
