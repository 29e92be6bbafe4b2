"""Forward time of a Thinking-in-Modalities backbone: ours vs the reference (terratorch), same weights.

A TiM forward = one single-pass LULC generation by the frozen model + the trainable encoder over inputs and
generated tokens (tim/tim.py). Run with the reference venv (it imports terratorch; ours from ../src)::

    HF_HUB_OFFLINE=1 .peer-venv/bin/python benchmarks/bench_tim.py --out benchmarks/tim_results.json

Both run fp32 with full-precision matmuls (importing terratorch lowers them to "medium"; reset here),
interleaved (ours, ref, ours, ref, ...) in one process with 2 threads; medians. The tokens are sampled
(temperature 1, top-p 0.8) as in the reference's default, so only the time is compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.simplefilter("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402


def build(size: str, modalities: list[str], seed: int = 0):
    """The reference TiM model with perturbed random weights, and ours loaded from its state dict."""
    from terratorch.registry import BACKBONE_REGISTRY

    from terramind.checkpoints import load_into
    from terramind.checkpoints.models import load_backbone_weights
    from terramind.finetune.backbone import Backbone

    torch.manual_seed(seed)
    ref = BACKBONE_REGISTRY.build(
        f"terramind_v1_{size}_tim", pretrained=False, modalities=modalities, tim_modalities=["LULC"]
    )
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for _, p in sorted(ref.named_parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    sd = ref.state_dict()
    ours = Backbone(f"terramind_v1_{size}", modalities, tim_modalities=["LULC"])
    load_backbone_weights(
        ours.encoder, {k: v for k, v in sd.items() if not k.startswith(("sampler.", "tokenizer."))}, "ref"
    )
    gen = {k.removeprefix("sampler.model."): v for k, v in sd.items() if k.startswith("sampler.model.")}
    mine = ours.tim.model.state_dict()
    load_into(ours.tim.model, {k: v for k, v in gen.items() if k in mine}, what="ref generator")
    return ref.eval(), ours.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--modalities", default="S2L2A,S1RTC")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    modalities = args.modalities.split(",")
    ref, ours = build(args.size, modalities)
    torch.set_float32_matmul_precision("highest")
    channels = {"S2L2A": 12, "S1RTC": 2, "S1GRD": 2, "S2L1C": 13, "DEM": 1}
    rows = []
    for batch in map(int, args.batches.split(",")):
        g = torch.Generator().manual_seed(batch)
        x = {m: torch.randn(batch, channels[m], 224, 224, generator=g) for m in modalities}
        fns = {
            "ours": lambda x=x: ours(dict(x)),
            "ref": lambda x=x: ref({k: v.clone() for k, v in x.items()}),
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        with torch.inference_mode():
            for fn in fns.values():
                fn()
            for _ in range(args.repeats):
                for name, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = dict(size=args.size, batch=batch, times_s=med, ratio_ref_over_ours=med["ref"] / med["ours"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(
            json.dumps(dict(torch=torch.__version__, threads=args.threads, rows=rows), indent=1)
        )


if __name__ == "__main__":
    main()
