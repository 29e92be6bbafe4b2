"""Generation across time (documented experiment): fill a cloudy date's S2L2A from S1RTC + the previous date.

TerraMind has no time axis, but its generator conditions on any set of inputs. Here the inputs are the
cloudy date's S1RTC (radar sees through clouds) and the previous clear date's S2L2A (raw, through the
``untok_sen2l2a`` input embedding); the output is the cloudy date's S2L2A (tokens, ``tok_sen2l2a``), pasted
into the cloudy pixels only. Compared under the cloud against the clear truth:

- ``persistence``: copy the previous clear date (the usual gap-filling baseline);
- ``s1_only``: generate S2L2A from the same date's S1RTC alone;
- ``s1_plus_prior``: generate S2L2A from S1RTC plus the previous clear S2L2A.

Constructed data, from the example tile ``examples/*/38D_378R_2_3.tif``: the previous date is the S2L2A
tile; the cloudy date's truth is the same tile "greener" (NIR bands x1.2, red x0.9); its cloud is a disc of
radius 64 px at the centre set to 8000 DN; its S1RTC is the example S1RTC tile.

LIMITS. By default the weights are random (no network here), so the numbers say nothing about quality: they
only show that the pipeline runs end to end and how the comparison is made. With ``--weights hub
--tokenizer-weights hub`` the same script measures the released model. TerraMind v1 was pretrained on
co-registered single-date samples: giving a *previous* date as S2L2A input is outside its training
distribution (it will tend to copy it; the S1 of the cloudy date is the only same-date evidence), and the
constructed "change" is a band scaling, not real phenology. A real evaluation needs real cloudy/clear pairs.

The public generator refuses an output that is also an input (``check_modalities``); this script adds the
prior date to the conditioning in a small subclass (``_prepare`` is internal API). Run::

    PYTHONPATH=src .venv/bin/python benchmarks/series_fill_example.py --model tiny --diffusion-steps 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from terramind.api.models import create_model  # noqa: E402
from terramind.api.tokenizers import create_tokenizer  # noqa: E402
from terramind.build import resolve_tokenizer_weights  # noqa: E402
from terramind.generation import GenerationOptions  # noqa: E402
from terramind.generation.generate import Generator  # noqa: E402
from terramind.modalities import get_modality, standardize  # noqa: E402

TILE = "38D_378R_2_3"
CLOUD_DN, CLOUD_RADIUS = 8000.0, 64
GREENING = {"NIR_BROAD": 1.2, "NIR_NARROW": 1.2, "RED": 0.9}  # the constructed change between the dates


class PriorDateGenerator(Generator):
    """A generator whose conditioning also holds a previous date's S2L2A (raw input embedding)."""

    prior: torch.Tensor | None = None  # (B, 12, H, W) DN of the previous clear date

    def _prepare(
        self, inputs: Mapping[str, torch.Tensor], standardize_: bool, offset: Mapping[str, object]
    ) -> Any:
        cond = super()._prepare(inputs, standardize_, offset)
        if self.prior is not None:
            s2 = get_modality("S2L2A")
            cond.add(s2.pixel_key, standardize(s2, self.prior.float()).to(self.device))
        return cond


def constructed(examples: Path) -> dict[str, torch.Tensor]:
    """Previous clear S2L2A, the cloudy date's truth, its cloudy S2L2A, S1RTC and the cloud mask."""
    with rasterio.open(examples / "S2L2A" / f"{TILE}.tif") as src:
        prior = torch.from_numpy(src.read().astype(np.float32))[None]  # (1, 12, 224, 224)
    with rasterio.open(examples / "S1RTC" / f"{TILE}.tif") as src:
        s1 = torch.from_numpy(src.read().astype(np.float32))[None]
    bands = get_modality("S2L2A").bands
    gain = torch.tensor([GREENING.get(b, 1.0) for b in bands])[None, :, None, None]
    truth = (prior * gain).clamp(0, 10000)
    h, w = truth.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cloud = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < CLOUD_RADIUS**2  # (H, W)
    cloudy = torch.where(cloud, torch.tensor(CLOUD_DN), truth)
    return {"prior": prior, "truth": truth, "cloudy": cloudy, "s1": s1, "cloud": cloud}


def build(model: str, weights: str | None, tokenizer_weights: str | None) -> PriorDateGenerator:
    """The full model (the S2L2A input embedding kept) and a decode-only S2L2A tokenizer."""
    path = resolve_tokenizer_weights("S2L2A", tokenizer_weights)
    loaders = {"S2L2A": partial(create_tokenizer, "S2L2A", weights=path, decode_only=True)}
    full = create_model(model, weights=weights)
    return PriorDateGenerator(full, {}, inputs=["S1RTC"], outputs=["S2L2A"], loaders=loaders)


def errors(filled: torch.Tensor, data: dict[str, torch.Tensor]) -> dict[str, float]:
    """MAE and RMSE (DN) under the cloud, all bands."""
    diff = (filled - data["truth"])[..., data["cloud"]]
    return {"mae_dn": float(diff.abs().mean()), "rmse_dn": float(diff.square().mean().sqrt())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="terramind_v1_tiny")
    ap.add_argument("--weights", default=None, help="None: random (default); hub; a path")
    ap.add_argument("--tokenizer-weights", default=None)
    ap.add_argument("--diffusion-steps", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if not args.model.startswith("terramind_"):
        args.model = f"terramind_v1_{args.model}"
    data = constructed(ROOT / "examples")
    gen = build(args.model, args.weights, args.tokenizer_weights)
    opts = GenerationOptions(diffusion_steps=args.diffusion_steps, temperature=0.0)
    cloud = data["cloud"]
    results = {"persistence": errors(torch.where(cloud, data["prior"], data["cloudy"]), data)}
    for name, prior in (("s1_only", None), ("s1_plus_prior", data["prior"])):
        gen.prior = prior
        generated = gen.generate({"S1RTC": data["s1"]}, opts, seed=args.seed)["S2L2A"]
        results[name] = errors(torch.where(cloud, generated, data["cloudy"]), data)
    summary = {
        "model": args.model,
        "weights": args.weights or "random",
        "tokenizer_weights": args.tokenizer_weights or "random",
        "cloud_pixels": int(cloud.sum()),
        "results": results,
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
