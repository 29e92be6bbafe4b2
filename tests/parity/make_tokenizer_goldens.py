"""Reference outputs of the official tokenizers (terratorch), for our parity tests. Run in the PEER venv.

Two jobs:

``tiny``  builds down-sized reference tokenizers (the official DiVAE/VQVAE classes with small ViT/UNet parts
          swapped in), fills them with weights from a seeded recipe (:func:`recipes.recipe_weights`, shared
          with the test, so no weights are stored), runs encode + decode on 48 px inputs and writes the inputs
          and outputs to ``tests/parity/goldens/tokenizer_tiny_{divae,vqvae}.pt`` (~150 kB, committed for CI).
``fp32``  re-runs the full-size reference tokenizers saved by ``peer_terratorch.py`` under
          ``peer_out/tokenizers`` with fp32 matmuls and writes ``<tag>.fp32.io.pt`` beside them.

Why ``fp32``: importing ``terratorch.registry`` runs ``torch.set_float32_matmul_precision("medium")`` (in
terratorch's clay_v15 module), which on CPU makes every fp32 matmul of the process go through oneDNN in bf16.
The outputs ``peer_terratorch.py`` records are therefore bf16-matmul results; the fp32 re-run gives the
reference's true fp32 numbers. This script resets the precision to "highest" after the import.

    HF_HUB_OFFLINE=1 .peer-venv/bin/python tests/parity/make_tokenizer_goldens.py tiny
    HF_HUB_OFFLINE=1 .peer-venv/bin/python tests/parity/make_tokenizer_goldens.py fp32 [--only tokenizer_dem]
"""

from __future__ import annotations

import argparse
import glob
import os
import warnings
from pathlib import Path

import torch

warnings.simplefilter("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from recipes import recipe_weights  # noqa: E402  (tests/parity, next to this script)
from terratorch.models.backbones.terramind.tokenizer.models.unet.unet import PatchedUNetCondCat  # noqa: E402
from terratorch.models.backbones.terramind.tokenizer.models.vit_models import (  # noqa: E402
    ViTDecoder,
    ViTEncoder,
)
from terratorch.registry import FULL_MODEL_REGISTRY  # noqa: E402

torch.set_float32_matmul_precision("highest")  # undo terratorch's import-time "medium" (see docstring)

GOLDENS = Path(__file__).parent / "goldens"
SIZE = 48  # px: 3x3 tokens, the 4x4 position table is interpolated
STEPS = 5
SEED = 7
# Must match tests/parity/test_tokenizer_parity.py
TINY_VIT = dict(dim_tokens=32, depth=1, num_heads=2, patch_size=16, resolution=64, post_mlp=True)
TINY_UNET = dict(
    patch_size=4, model_channels=32, num_res_blocks=1, attention_resolutions=[2], channel_mult=(1, 1)
)


def tiny_divae() -> tuple[torch.nn.Module, torch.Tensor]:
    model = FULL_MODEL_REGISTRY.build("terratorch_terramind_v1_tokenizer_s1grd", pretrained=False)
    model.encoder = ViTEncoder(in_channels=2, **TINY_VIT)
    model.quant_proj = torch.nn.Conv2d(32, 5, 1)
    model.decoder = PatchedUNetCondCat(in_channels=2, out_channels=2, cond_channels=5, **TINY_UNET)
    x = torch.randn(1, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(1000))
    return model, x


def tiny_vqvae() -> tuple[torch.nn.Module, torch.Tensor]:
    model = FULL_MODEL_REGISTRY.build("terratorch_terramind_v1_tokenizer_lulc", pretrained=False)
    model.encoder = ViTEncoder(in_channels=10, **TINY_VIT)
    model.quant_proj = torch.nn.Conv2d(32, 5, 1)
    model.post_quant_proj = torch.nn.Conv2d(5, 32, 1)
    model.decoder = ViTDecoder(out_channels=10, **TINY_VIT)
    x = torch.randint(0, 10, (1, SIZE, SIZE), generator=torch.Generator().manual_seed(1000))
    return model, x


def run(model: torch.nn.Module, x: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        quant, _, tokens = model.encode(x.clone())
        kw = {}
        if type(model).__name__ == "DiVAE":
            kw = dict(timesteps=steps, generator=torch.Generator().manual_seed(3000))
        decoded = model.decode_tokens(tokens, image_size=(x.shape[-2], x.shape[-1]), **kw)
    return dict(quant=quant, tokens=tokens, decoded=decoded)


def make_tiny() -> None:
    GOLDENS.mkdir(parents=True, exist_ok=True)
    for kind, build in (("divae", tiny_divae), ("vqvae", tiny_vqvae)):
        torch.manual_seed(0)
        model, x = build()
        model.eval()
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        sd = recipe_weights(shapes, SEED)
        model.load_state_dict(sd, strict=True)
        out = run(model, x, STEPS)
        if kind == "divae":  # also the release's default 50 steps
            out["decoded_50"] = run(model, x, 50)["decoded"]
        checksum = sum(float(v.double().abs().sum()) for v in sd.values())
        path = GOLDENS / f"tokenizer_tiny_{kind}.pt"
        torch.save(dict(shapes=shapes, checksum=checksum, x=x, steps=STEPS, **out), path)
        print(path, f"{path.stat().st_size / 1e3:.0f} kB", {k: tuple(v.shape) for k, v in out.items()})


def make_fp32(out_dir: Path, only: str) -> None:
    for sd_path in sorted(glob.glob(str(out_dir / f"*{only}*.state_dict.pt"))):
        tag = Path(sd_path).name.removesuffix(".state_dict.pt")
        name = tag.split("_seed")[0]
        model = FULL_MODEL_REGISTRY.build(f"terratorch_{name}", pretrained=False).eval()
        model.load_state_dict(torch.load(sd_path, weights_only=True), strict=True)
        for io_path in sorted(glob.glob(str(out_dir / f"{tag}*.io.pt"))):
            if io_path.endswith(".fp32.io.pt"):
                continue
            io = torch.load(io_path, weights_only=False)
            steps = 50 if io_path.endswith("_T50.io.pt") else 5  # the tag names 50-step runs
            out = run(model, io["inputs"]["x"], steps)
            ref = io["outputs"]
            diff = int((out["tokens"] != ref["tokens"]).sum())
            torch.save(
                dict(inputs=io["inputs"], outputs=out, steps=steps), io_path.replace(".io.pt", ".fp32.io.pt")
            )
            print(Path(io_path).name, f"steps={steps}", f"ids differing from the bf16-matmul run: {diff}")
        del model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job", choices=["tiny", "fp32"])
    ap.add_argument("--out-dir", type=Path, default=Path("peer_out/tokenizers"))
    ap.add_argument("--only", default="", help="fp32: only tags containing this text (e.g. tokenizer_dem)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    make_tiny() if args.job == "tiny" else make_fp32(args.out_dir, args.only)


if __name__ == "__main__":
    main()
