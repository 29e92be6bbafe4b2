#!/usr/bin/env bash
# The learning proof of pretraining on the device (issue 13): a tiny TerraMind trains for a few thousand steps
# on random crops, at fresh offsets every step, of four example tiles and is judged on the fifth tile against
# the unigram baseline, per target. Writes $OUT/pretrain_proof.json (and prints it).
#
# It runs with PYTHONPATH=src on a python that has torch, numpy, pyyaml, safetensors, huggingface_hub and
# lightning, and needs none of rasterio, webdataset, zarr or diffusers: the example GeoTIFFs (uncompressed,
# stripped) are read by the small reader below, and the pretraining objective comes from
# terramind.train.objective, which imports neither the data pipeline nor the tokenizers.
#
# Targets are token ids of a frozen random-projection quantizer (BEST-RQ, Chiu et al. 2022, arXiv
# 2202.01855): each standardized 16x16 patch is projected onto as many random directions as the modality's
# FSQ code has levels, each projection is mapped through the normal CDF (fitted on crops of all five tiles,
# pixels only, as a tokenizer is trained on unlabelled data) and rounded to that level count, and the digits
# make the id, as FSQ makes them (tokenizers/fsq.py). The
# release's tokenizers cannot be downloaded on the device; a patch-local quantizer keeps crops at any offset
# meaningful, and masked-token accuracy above the unigram baseline shows that the model learned to predict
# masked patches from the visible ones and the other modalities.
#
# Usage: OUT=/tmp/out benchmarks/gpu_pretrain_proof.sh [--device cuda] [--steps 3000] [--seconds 200]
#        CPU check: OUT=/tmp/out benchmarks/gpu_pretrain_proof.sh --device cpu --steps 5
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_pretrain_proof}"
mkdir -p "$OUT"
PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" - "$OUT" "$@" <<'PY'
import argparse
import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch

from terramind.modalities import get_modality, standardize
from terramind.train.config import DataSection, MaskingSection, ModalityEntry, ModelSection, PretrainConfig
from terramind.train.objective import MaskDrawer, MaskedBatch, build_model, masked_modeling_loss, masking_config, resolve
from terramind.train.optim import build_optimizer

TARGETS = ("S2L2A", "S1RTC", "DEM", "NDVI")
INPUTS = {"S2L2A": "pixel", "S1RTC": "pixel", "DEM": "pixel", "NDVI": "token"}  # NDVI has no pixel input
PATCH = 16
# TIFF tags of an uncompressed, stripped GeoTIFF (TIFF 6.0): what the reader needs, nothing more.
WIDTH, HEIGHT, BITS, COMPRESSION, OFFSETS, SAMPLES, ROWS, COUNTS, PLANAR, FORMAT = (
    256, 257, 258, 259, 273, 277, 278, 279, 284, 339)
TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}
DTYPES = {(1, 8): "u1", (1, 16): "u2", (2, 16): "i2", (1, 32): "u4", (2, 32): "i4", (3, 32): "f4", (3, 64): "f8"}


def read_tiff(path: Path) -> np.ndarray:
    """Bands (C, H, W) of an uncompressed stripped TIFF (the example tiles), in its own dtype."""
    data = path.read_bytes()
    order = {b"II": "<", b"MM": ">"}[data[:2]]
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    tags = {}
    for i in range(count):
        tag, kind, n, raw = struct.unpack(order + "HHI4s", data[ifd + 2 + 12 * i : ifd + 14 + 12 * i])
        if kind not in TYPES:
            continue
        size = struct.calcsize(TYPES[kind]) * n
        where = raw if size <= 4 else data[struct.unpack(order + "I", raw)[0]:][:size]
        tags[tag] = struct.unpack(order + TYPES[kind] * n, where[:size])
    if tags.get(COMPRESSION, (1,))[0] != 1:
        raise SystemExit(f"{path}: compressed TIFF; this reader takes uncompressed tiles only")
    width, height, bands = tags[WIDTH][0], tags[HEIGHT][0], tags.get(SAMPLES, (1,))[0]
    dtype = np.dtype(order + DTYPES[(tags.get(FORMAT, (1,))[0], tags[BITS][0])])
    raw = b"".join(data[o : o + c] for o, c in zip(tags[OFFSETS], tags[COUNTS]))
    array = np.frombuffer(raw, dtype=dtype)
    if tags.get(PLANAR, (1,))[0] == 2:  # band-interleaved: all of band 1, then band 2, ...
        return array.reshape(bands, height, width).copy()
    return array.reshape(height, width, bands).transpose(2, 0, 1).copy()


class ProjectionQuantizer:
    """Frozen random-projection tokenizer of one modality (see the header): patches -> ids (B, h, w)."""

    def __init__(self, modality: str, channels: int, device: str, seed: int):
        self.modality, self.levels = modality, get_modality(modality).fsq_levels
        gen = torch.Generator().manual_seed(seed)
        dim = channels * PATCH * PATCH
        self.proj = (torch.randn(dim, len(self.levels), generator=gen) / math.sqrt(dim)).to(device)
        self.radix = torch.tensor([math.prod(self.levels[:i]) for i in range(len(self.levels))], device=device)
        self.top = torch.tensor(self.levels, device=device) - 1
        self.mean = self.std = None

    def project(self, raw: torch.Tensor) -> torch.Tensor:
        x = standardize(self.modality, raw)  # (B, C, H, W)
        b, c, h, w = x.shape
        patches = x.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5)
        return patches.reshape(b, h // PATCH, w // PATCH, -1) @ self.proj  # (B, h, w, D)

    def fit(self, raw: torch.Tensor) -> None:
        z = self.project(raw).reshape(-1, len(self.levels))
        self.mean, self.std = z.mean(0), z.std(0) + 1e-6

    @torch.no_grad()
    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        u = 0.5 * (1 + torch.erf((self.project(raw) - self.mean) / self.std / math.sqrt(2)))  # ~uniform
        digits = torch.minimum((u * (self.top + 1)).long(), self.top)
        return (digits * self.radix).sum(-1)  # (B, h, w)


def crops(tiles: list[dict], size: int, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``count`` crops of ``size`` px at random offsets (any pixel) of random tiles, all modalities alike."""
    out = {m: [] for m in TARGETS}
    for _ in range(count):
        tile = tiles[int(rng.integers(len(tiles)))]
        height, width = tile[TARGETS[0]].shape[1:]
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        for m in TARGETS:
            out[m].append(tile[m][:, top : top + size, left : left + size])
    return {m: np.stack(v).astype(np.float32) for m, v in out.items()}


class DeviceBatch:
    """What masked_modeling_loss reads from a data batch (terramind.data.sample.Batch needs rasterio)."""

    def __init__(self, pixels: dict, quantizers: dict, device: str):
        self.pixels = {m: torch.from_numpy(v).to(device) for m, v in pixels.items()}
        self.tokens = {m: quantizers[m](x) for m, x in self.pixels.items()}
        self.center_lonlat = torch.zeros(len(next(iter(pixels.values()))), 2, device=device)

    def to(self, device: str) -> "DeviceBatch":
        return self  # made on the device


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=200.0, help="stop training after this long")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--examples", default="examples")
    parser.add_argument("--draws", type=int, default=16, help="mask draws averaged on the held-out tile")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    names = sorted(p.stem for p in (Path(args.examples) / TARGETS[0]).glob("*.tif"))
    tiles = [{m: read_tiff(Path(args.examples) / m / f"{n}.tif") for m in TARGETS} for n in names]
    train, holdout = tiles[:-1], tiles[-1]
    config = PretrainConfig(
        modalities=tuple(ModalityEntry(m, input=INPUTS[m], target=True) for m in TARGETS),
        model=ModelSection(size="tiny", overrides={"dim": 192, "encoder_depth": 4, "decoder_depth": 4,
                                                   "num_heads": 3, "mlp_hidden": 768}),
        masking=MaskingSection(num_input_tokens=128, num_target_tokens=128),
        data=DataSection(crop=args.crop),
    )
    modalities = [resolve(e) for e in config.modalities]
    masking = masking_config(config)
    model = build_model(config, modalities).to(args.device).train()
    quantizers = {m: ProjectionQuantizer(m, get_modality(m).num_bands, args.device, seed=i) for i, m in enumerate(TARGETS)}
    fit = crops(tiles, args.crop, 64, rng)  # unlabelled pixels of all tiles, as a tokenizer's training set
    for m, q in quantizers.items():
        q.fit(torch.from_numpy(fit[m]).to(args.device))
    optimizer, schedule = build_optimizer(model, lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95),
                                          warmup_steps=max(1, args.steps // 20), total_steps=args.steps)
    drawer = MaskDrawer(masking, seed=0, rank=0)
    counts = {m: torch.ones(math.prod(q.levels), device=args.device) for m, q in quantizers.items()}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if args.device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    losses, started, step = [], time.perf_counter(), 0
    while step < args.steps and time.perf_counter() - started < args.seconds:
        data = DeviceBatch(crops(train, args.crop, args.batch, rng), quantizers, args.device)
        for m, ids in data.tokens.items():
            counts[m] += torch.bincount(ids.flatten(), minlength=counts[m].numel())
        images, sequences = drawer.draw(args.batch, step)
        with autocast:
            result = masked_modeling_loss(model, modalities, MaskedBatch(data, images, sequences).to(args.device))
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(result.loss))
        step += 1
    trained = time.perf_counter() - started
    report = evaluate(model, modalities, drawer, holdout, quantizers, counts, args, args.draws)
    k = max(1, len(losses) // 10)
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
        "steps": step,
        "train_seconds": round(trained, 1),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "train_tiles": names[:-1],
        "holdout_tile": names[-1],
        "crop": args.crop,
        "batch": args.batch,
        "tokenizer": "frozen random-projection quantizer (BEST-RQ style) on the catalog's FSQ levels",
        "loss_first_tenth": float(np.mean(losses[:k])) if losses else None,
        "loss_last_tenth": float(np.mean(losses[-k:])) if losses else None,
        "holdout": report,
    }
    text = json.dumps(result, indent=2)
    print(text)
    (Path(args.out) / "pretrain_proof.json").write_text(text + "\n")


@torch.no_grad()
def evaluate(model, modalities, drawer, tile, quantizers, counts, args, draws: int = 16) -> dict:
    """Masked-token accuracy and CE on crops of the held-out tile vs the unigram baseline of the training ids."""
    model.eval()
    grid = [(t, l) for t in range(0, tile[TARGETS[0]].shape[1] - args.crop + 1, 32)
            for l in range(0, tile[TARGETS[0]].shape[2] - args.crop + 1, 32)]
    pixels = {m: np.stack([tile[m][:, t : t + args.crop, l : l + args.crop] for t, l in grid]).astype(np.float32)
              for m in TARGETS}
    data = DeviceBatch(pixels, quantizers, args.device)
    ce, acc = {m: [] for m in TARGETS}, {m: [] for m in TARGETS}
    for draw in range(draws):
        images, sequences = drawer.draw(len(grid), 10**9 + draw)  # mask seeds never used in training
        result = masked_modeling_loss(model, modalities, MaskedBatch(data, images, sequences).to(args.device))
        for m in result.per_modality:
            ce[m].append(float(result.per_modality[m]))
            acc[m].append(float(result.accuracy[m]))
    report = {}
    for m in TARGETS:
        probs = counts[m] / counts[m].sum()
        ids = data.tokens[m].flatten()
        report[m] = {
            "accuracy": float(np.mean(acc[m])),
            "unigram_accuracy": float((ids == probs.argmax()).float().mean()),
            "ce": float(np.mean(ce[m])),
            "unigram_ce": float(-torch.log(probs[ids]).mean()),
            "distinct_ids_in_holdout": int(ids.unique().numel()),
        }
    return report


main()
PY
