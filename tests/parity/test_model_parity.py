"""Parity of the TerraMind model with the official implementation (terratorch).

The golden tests run everywhere: small reduced-size reference models (fp16-exact weights, token tables cut
to 64 rows, see make_model_goldens.py) whose inputs and outputs are committed. The ``parity`` tests compare
every released size against the reference's own outputs under peer_out/model/ and skip when those are absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from terramind.checkpoints.io import load_into
from terramind.model import CONFIGS, TerraMind, TerraMindBackbone, TerraMindConfig

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = Path(__file__).parent / "goldens"
PEER = ROOT / "peer_out" / "model"
TOL = 1e-4
SIX = ["S2L2A", "S2L1C", "S2RGB", "S1GRD", "S1RTC", "DEM"]
TARGETS = ("tok_lulc@224", "tok_sen2l2a@224")


def rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref.double()).norm() / ref.double().norm())


def golden_model(case: dict) -> TerraMind:
    """Our model with the golden's reduced config and the reference's weights (tables zero-padded)."""
    c = case["config"]
    swiglu = c["mlp"] == "swiglu"
    hidden = int(2 * 4 * c["dim"] / 3) if swiglu else 4 * c["dim"]
    depths = (c["encoder_depth"], c["decoder_depth"])
    bias = not swiglu
    cfg = TerraMindConfig("golden", c["dim"], *depths, c["num_heads"], c["mlp"], hidden, bias, bias, bias)
    sd = {k: v.float() for k, v in case["state_dict"].items()}
    enc = sorted({k.split(".")[1] for k in sd if k.startswith("encoder_embeddings.")})
    dec = sorted({k.split(".")[1] for k in sd if k.startswith("decoder_embeddings.")})
    model = TerraMind(cfg, encoder_keys=enc, decoder_keys=dec).eval()
    own = model.state_dict()
    for key, value in own.items():
        if key.endswith("pos_emb"):
            sd[key] = value  # sin-cos buffers are not stored: ours must agree with the reference's math
        elif key in sd and sd[key].shape != value.shape:  # token table cut to its first rows
            full = torch.zeros_like(value)
            full[: sd[key].shape[0]] = sd[key]
            sd[key] = full
    assert load_into(model, sd).clean
    return model


@pytest.fixture(scope="module", params=["gelu", "swiglu"])
def golden(request: pytest.FixtureRequest) -> tuple[dict, TerraMind]:
    case = torch.load(GOLDENS / f"model_{request.param}.pt", weights_only=True)
    case["inputs"] = {k: v.float() if v.is_floating_point() else v.long() for k, v in case["inputs"].items()}
    return case, golden_model(case)


def test_golden_encoder_layers_unmasked(golden: tuple[dict, TerraMind]) -> None:
    case, model = golden
    with torch.no_grad():
        layers = model.forward_encoder_layers(case["inputs"])
    assert len(layers) == len(case["layers_nomask"])
    for ours, ref in zip(layers, case["layers_nomask"], strict=True):
        assert rel(ours, ref) < TOL


def test_golden_encoder_layers_masked(golden: tuple[dict, TerraMind]) -> None:
    case, model = golden
    with torch.no_grad():
        layers = model.forward_encoder_layers(case["inputs"], case["masks"])
        encoded = model.encode(case["inputs"], case["masks"])
    assert encoded.mask is not None and torch.equal(encoded.mask, case["real"])
    for ours, ref in zip(layers, case["layers"], strict=True):
        assert rel(ours, ref) < TOL
    assert rel(encoded.tokens, case["layers"][-1]) < TOL


def test_golden_decoder_logits(golden: tuple[dict, TerraMind]) -> None:
    """Separate decode calls reproduce the reference's joint decoding of three targets."""
    case, model = golden
    keep = 64  # the goldens hold only the first 64 rows of every vocabulary
    with torch.no_grad():
        encoded = model.encode(case["inputs"], case["masks"])
        for key in TARGETS:
            logits = model.decode_logits(encoded, key, case["targets"][key].long(), (14, 14))
            assert rel(logits[..., :keep], case["logits"][key]) < TOL
        ids = case["coords_ids"].long()
        logits = model.decode_sequence_logits(encoded, "coords", ids[:, :-1])
    assert rel(logits[..., :keep], case["logits"]["coords"]) < TOL


# ------------------------------------------------------------------------------------------- parity
SIZES = ["tiny", "small", "base", "large"]


def _peer_files(size: str) -> list[Path]:
    return sorted((PEER / size).glob("terramind_v1_*.io.pt")) if (PEER / size).is_dir() else []


def _backbone(size: str, state_dict_glob: str, modalities: list[str]) -> TerraMindBackbone:
    files = sorted((PEER / size).glob(state_dict_glob))
    if not files:
        pytest.skip(f"no reference state dict {state_dict_glob} under {PEER / size} (make_model_goldens.py)")
    sd = torch.load(files[0], weights_only=True)
    model = TerraMindBackbone(CONFIGS[f"terramind_v1_{size}"], modalities, merge=None).eval()
    load_into(model, {k: v for k, v in sd.items() if not k.startswith("tokenizer.")})
    return model


def _record(size: str, name: str, err: float) -> None:
    """Append a measured error to peer_out/model/errors.jsonl (for the closing note)."""
    with open(PEER / "errors.jsonl", "a") as fh:
        fh.write(json.dumps({"size": size, "case": name, "max_rel_err": err}) + "\n")


@pytest.mark.parity
@pytest.mark.parametrize("size", SIZES)
def test_parity_backbone_layers(size: str) -> None:
    """Every block output, raw and mean-merged, for every peer run of this size."""
    runs = [f for f in _peer_files(size) if "encdec" not in f.name and "lulc" not in f.name]
    if not runs:
        pytest.skip(f"no reference outputs under {PEER / size}: see make_model_goldens.py (peer command)")
    model = _backbone(size, "*_seed0_S2L2A_B1_perturb0.02.state_dict.pt", SIX)
    for path in runs:
        io = torch.load(path, weights_only=False)
        errs = []
        with torch.no_grad():
            for merge, key in ((None, "layers_raw"), ("mean", "layers_mean")):
                model.merge = merge
                out = model(dict(io["inputs"]))
                errs += [rel(o, r) for o, r in zip(out, io["outputs"][key], strict=True)]
        _record(size, path.name, max(errs))
        assert max(errs) < TOL, f"{path.name}: {max(errs):.2e}"


@pytest.mark.parity
@pytest.mark.parametrize("size", SIZES)
def test_parity_backbone_lulc_ids(size: str) -> None:
    io_path = PEER / size / f"terramind_v1_{size}_lulc_ids.io.pt"
    if not io_path.exists():
        pytest.skip(f"{io_path} missing: run make_model_goldens.py lulc --size {size}")
    model = _backbone(size, "*_lulc_ids.state_dict.pt", ["S2L2A", "LULC"])
    io = torch.load(io_path, weights_only=True)
    errs = []
    with torch.no_grad():
        for merge, key in ((None, "layers_raw"), ("mean", "layers_mean")):
            model.merge = merge
            errs += [rel(o, r) for o, r in zip(model(io["inputs"]), io["outputs"][key], strict=True)]
    _record(size, io_path.name, max(errs))
    assert max(errs) < TOL


@pytest.mark.parity
@pytest.mark.parametrize("size", SIZES)
def test_parity_encoder_decoder(size: str) -> None:
    """Masked encoding (batch 2, different counts) and jointly decoded LULC, S2L2A-token and coords logits."""
    io_path = PEER / size / f"terramind_v1_{size}_encdec.io.pt"
    if not io_path.exists():
        pytest.skip(f"{io_path} missing: run make_model_goldens.py encdec --size {size}")
    case = torch.load(io_path, weights_only=True)
    sd = torch.load(PEER / size / f"terramind_v1_{size}_encdec.state_dict.pt", weights_only=True)
    enc = list(dict.fromkeys(k.split(".")[1] for k in sd if k.startswith("encoder_embeddings.")))
    dec = list(dict.fromkeys(k.split(".")[1] for k in sd if k.startswith("decoder_embeddings.")))
    model = TerraMind(CONFIGS[f"terramind_v1_{size}"], encoder_keys=enc, decoder_keys=dec).eval()
    assert load_into(model, sd).clean
    with torch.no_grad():
        layers = model.forward_encoder_layers(case["inputs"], case["masks"])
        encoded = model.encode(case["inputs"], case["masks"])
        errs = [rel(o, r) for o, r in zip(layers, case["layers"], strict=True)]
        for key in TARGETS:
            errs.append(
                rel(model.decode_logits(encoded, key, case["targets"][key], (14, 14)), case["logits"][key])
            )
        ids = case["coords_ids"]
        errs.append(
            rel(model.decode_sequence_logits(encoded, "coords", ids[:, :-1]), case["logits"]["coords"])
        )
    _record(size, io_path.name, max(errs))
    assert max(errs) < TOL, errs
