"""Make the generation parity goldens with the reference implementation (run in .peer-venv, not in CI).

Two products:

1. ``tests/parity/goldens/generation_small.pt`` (committed, a few KB): a down-sized reference
   ``TerraMindGeneration`` (dim 32, 2+2 layers, 64 px -> 4x4 tokens, outputs LULC then DEM) whose weights come
   from a seeded recipe that the test repeats (:func:`recipe_weights`), so no weights are stored; greedy
   (temperature 0) token ids of both outputs and the 8 largest logits of every token.
2. ``peer_out/generation/parity_full.pt`` (not committed): the registry model ``terramind_v1_tiny_generate``
   with full-size LULC and DEM tokenizers, loaded from the peer harness' state dict, run greedily with 5
   diffusion steps; token ids, LULC logits, the decoded DEM and the DEM's initial diffusion noise (recorded
   where the reference draws it: ``torch.randn`` in its diffusion pipeline, from the global RNG).

Importing terratorch sets ``torch.set_float32_matmul_precision("medium")`` for the whole process (a module of
another backbone does it at import), which on CPUs with bf16 units makes every "fp32" matmul of the reference
lose precision (errors ~1e-2). Both products are made with the precision reset to "highest".

Usage (from the repository root)::

    HF_HUB_OFFLINE=1 .peer-venv/bin/python tests/parity/make_generation_goldens.py [--full]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "tests" / "parity" / "goldens" / "generation_small.pt"
PEER = ROOT / "peer_out" / "generation"
FULL_TAG = "terramind_v1_tiny_generate_seed0_S2L2A_to_LULC-DEM_B1_perturb0.02"
SMALL_CONFIG = dict(dim=32, encoder_depth=2, decoder_depth=2, num_heads=2, mlp_ratio=4.0, img_size=64)
SEED = 1234


def recipe_weights(shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict[str, torch.Tensor]:
    """Seeded weights for a state dict layout (the parity test repeats this exactly).

    Every tensor is N(0, 0.05) from its own generator (seed + position in sorted key order); norm weights get
    1 added. Tied tensors are made equal: ``to_logits.weight`` takes its ``token_emb.weight`` and a decoder
    ``mod_emb`` takes the encoder's of the same key.
    """
    out = {}
    for i, key in enumerate(sorted(shapes)):
        g = torch.Generator().manual_seed(seed + i)
        value = torch.randn(shapes[key], generator=g) * 0.05
        out[key] = value + 1.0 if "norm" in key and key.endswith("weight") else value
    for key in out:
        if key.endswith("to_logits.weight"):
            out[key] = out[key.replace("to_logits.weight", "token_emb.weight")]
        if key.startswith("decoder_embeddings.") and key.endswith(".mod_emb"):
            enc = key.replace("decoder_embeddings.", "encoder_embeddings.", 1)
            out[key] = out.get(enc, out[key])
    return out


class _NoDecode(nn.Module):
    """Stands in for a tokenizer: the small golden checks tokens only."""

    patch_size = 16

    def decode_tokens(self, tokens: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return torch.zeros(tokens.shape[0], 1, 1, 1)


def _capture_tokens(model: nn.Module) -> dict[str, torch.Tensor]:
    """Wrap the sampler so every generated output's token ids (and each step's logits) are recorded."""
    captured: dict[str, torch.Tensor] = {}
    sampler = model.sampler
    generate, forward = sampler.generate, sampler.forward_enc_dec_roar_batched

    def record_generate(*a, **k):
        result = generate(*a, **k)
        for key in model.output_modalities:
            captured[f"tokens_{key}"] = result[key]["tensor"].clone()
        return result

    def record_logits(mod_dict, target_mod, num_select, seed=None):
        logits, positions = forward(mod_dict, target_mod, num_select, seed=seed)
        order = positions.argsort(-1)  # undo the random query order: logits in raster order
        captured[f"logits_{target_mod}"] = torch.gather(logits, 1, order[..., None].expand_as(logits)).clone()
        return logits, positions

    sampler.generate, sampler.forward_enc_dec_roar_batched = record_generate, record_logits
    return captured


def make_small() -> None:
    """The down-sized golden (weights from the recipe, so the file stays tiny)."""
    from functools import partial

    from terratorch.models.backbones.terramind.model.terramind_generation import TerraMindGeneration
    from terratorch.models.backbones.terramind.model.tm_utils import LayerNorm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TerraMindGeneration(
            modalities=["S2L2A"], output_modalities=["LULC", "DEM"], temps=0.0, tokenizer_dict={},
            norm_layer=partial(LayerNorm, eps=1e-6, bias=False), **SMALL_CONFIG,
        )  # fmt: skip
    model.tokenizer = nn.ModuleDict({"tok_lulc@224": _NoDecode(), "tok_dem@224": _NoDecode()})
    inner = {k: tuple(v.shape) for k, v in model.sampler.model.state_dict().items()}
    weights = recipe_weights(inner)
    model.sampler.model.load_state_dict(weights, strict=True)
    model.eval()
    x = torch.randn(2, 12, 64, 64, generator=torch.Generator().manual_seed(SEED))
    captured = _capture_tokens(model)
    with torch.inference_mode():
        model({"S2L2A": x.clone()})
    for key in [k for k in captured if k.startswith("logits_")]:  # keep the golden small: the top 8 per token
        top = captured.pop(key).topk(8, dim=-1)
        captured[key.replace("logits_", "top8_values_")] = top.values
        captured[key.replace("logits_", "top8_ids_")] = top.indices
    golden = {"config": SMALL_CONFIG, "shapes": inner, "seed": SEED, **captured}
    SMALL.parent.mkdir(parents=True, exist_ok=True)
    torch.save(golden, SMALL)
    print("wrote", SMALL, {k: tuple(v.shape) for k, v in captured.items()})


def make_full() -> None:
    """The full comparison data from the peer harness' tiny generate model (needs its state dict)."""
    sys.path.insert(0, str(ROOT.parent / "shared" / "peer"))
    import peer_terratorch as peer

    args = argparse.Namespace(
        modalities=["S2L2A"], output_modalities=["LULC", "DEM"], timesteps=5, temps=0.0, perturb=0.0
    )
    model, _ = peer.build("terramind_v1_tiny_generate", 0, args)
    torch.set_float32_matmul_precision("highest")  # peer.build imported terratorch, which set "medium"
    model.load_state_dict(torch.load(PEER / f"{FULL_TAG}.state_dict.pt"), strict=True)
    io = torch.load(PEER / f"{FULL_TAG}.io.pt", weights_only=False)
    captured = _capture_tokens(model)
    noise: list[torch.Tensor] = []
    randn = torch.randn

    def record_randn(*a, **k):
        value = randn(*a, **k)
        if value.ndim == 4:
            noise.append(value.clone())
        return value

    torch.randn = record_randn
    with torch.inference_mode():
        peer.seed_all(2000)
        out = model({"S2L2A": io["inputs"]["S2L2A"].clone()})
    torch.randn = randn
    result = {"inputs": io["inputs"], "LULC": out["LULC"], "DEM": out["DEM"], "noise_DEM": noise[-1]}
    result.update(captured)
    torch.save(result, PEER / "parity_full.pt")
    shapes = {k: tuple(v.shape) for k, v in result.items() if hasattr(v, "shape")}
    print("wrote", PEER / "parity_full.pt", shapes)


def main() -> None:
    """Make the small golden, and with ``--full`` the full comparison data."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also run the full-size tiny generate model")
    opts = ap.parse_args()
    torch.set_num_threads(2)
    import terratorch  # noqa: F401  (sets float32 matmul precision to "medium" as a side effect)

    torch.set_float32_matmul_precision("highest")
    make_small()
    if opts.full:
        make_full()


if __name__ == "__main__":
    main()
