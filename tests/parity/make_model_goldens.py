"""Reference outputs for the model parity tests, made with the official implementation (terratorch).

Run with the reference venv only (``.peer-venv/bin/python``); the package never imports this file.

Why the ``peer`` wrapper exists: importing terratorch runs ``torch.set_float32_matmul_precision("medium")``
(in ``terratorch/models/backbones/clay_v15/model.py``), so on a CPU with bf16 support every fp32 matmul of the
reference afterwards runs with bf16 internals (relative error ~2e-3 already after the patch embedding).
Parity at 1e-4 needs the reference in true fp32, so every command here resets the precision to "highest"
after importing terratorch.

Commands (from the repository root, ``export HF_HUB_OFFLINE=1``)::

    # per-layer backbone outputs, any peer_terratorch.py arguments, in true fp32; the parity tests expect, per
    # SIZE, a first run with the state dict and the others with --no-state-dict (same seed, same weights):
    M="--model terramind_v1_SIZE --seed 0 --perturb 0.02 --modalities S2L2A,S2L1C,S2RGB,S1GRD,S1RTC,DEM
       --out-dir peer_out/model/SIZE"
    .peer-venv/bin/python tests/parity/make_model_goldens.py peer $M --inputs S2L2A
    ... peer $M --no-state-dict --inputs S2L2A,S1RTC   (also: all six; --batch 2;
        --img-size 256 --tag terramind_v1_SIZE_img256; --s2-tif examples/S2L2A/38D_378R_2_3.tif)
    # backbone with LULC token ids fed directly (the reference tokenizer is removed from the model)
    .peer-venv/bin/python tests/parity/make_model_goldens.py lulc --size tiny --out-dir peer_out/model/tiny
    # full encoder-decoder: masked encoding and jointly decoded logits of three targets
    .peer-venv/bin/python tests/parity/make_model_goldens.py encdec --size tiny --out-dir peer_out/model/tiny
    # the small committed goldens (reduced configs, fp16-exact weights, token tables cut to 64 rows)
    .peer-venv/bin/python tests/parity/make_model_goldens.py goldens --out-dir tests/parity/goldens
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import warnings
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.simplefilter("ignore")

import terratorch  # noqa: E402,F401  (sets matmul precision "medium" as a side effect)
import torch  # noqa: E402

torch.set_float32_matmul_precision("highest")
torch.set_num_threads(2)

PEER_SCRIPT = Path("/work/shared/peer/peer_terratorch.py")
SIX = ["S2L2A", "S2L1C", "S2RGB", "S1GRD", "S1RTC", "DEM"]
VOCAB_KEEP = 64  # rows of every token table kept in the committed goldens
SEQ_KEYS = ("coords",)


def perturb(model: torch.nn.Module, seed: int, scale: float = 0.02, fp16_exact: bool = False) -> None:
    """The peer harness's recipe: seeded N(0, scale) noise on every parameter (sorted by name)."""
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.is_floating_point():
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
                if fp16_exact:
                    p.copy_(p.half().float())


# ---------------------------------------------------------------------------------------------- peer
def cmd_peer(argv: list[str]) -> None:
    """Run the peer harness unchanged, but with fp32 matmuls in full precision."""
    sys.argv = [str(PEER_SCRIPT), *argv]
    runpy.run_path(str(PEER_SCRIPT), run_name="__main__")


# ---------------------------------------------------------------------------------------------- lulc
def cmd_lulc(args: argparse.Namespace) -> None:
    """Backbone parity with LULC token ids given directly (no tokenizer inside the reference)."""
    from terratorch.registry import BACKBONE_REGISTRY

    name = f"terramind_v1_{args.size}"
    torch.manual_seed(args.seed)
    model = BACKBONE_REGISTRY.build(f"terratorch_{name}", pretrained=False, modalities=["S2L2A", "LULC"])
    perturb(model, args.seed)
    # TerraMindViT tokenizes a modality only when its key is in model.tokenizer: without the entry the
    # ids go straight into the token embedding.
    del model.tokenizer["tok_lulc@224"]
    model.eval()
    g = torch.Generator().manual_seed(args.seed + 1000)
    inputs = {
        "S2L2A": torch.randn(args.batch, 12, 224, 224, generator=g),
        "LULC": torch.randint(0, 4375, (args.batch, 14, 14), generator=g),
    }
    outputs = {}
    with torch.inference_mode():
        for merge, key in ((None, "layers_raw"), ("mean", "layers_mean")):
            model.merge_method = merge
            outputs[key] = torch.stack(list(model(dict(inputs))))
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("tokenizer")}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(sd, out / f"{name}_lulc_ids.state_dict.pt")
    torch.save({"inputs": inputs, "outputs": outputs}, out / f"{name}_lulc_ids.io.pt")
    print("wrote", out / f"{name}_lulc_ids.io.pt")


# -------------------------------------------------------------------------------------------- encdec
def build_encdec(size: str | None, cfg: dict | None, enc_keys, dec_keys, vocab: int | None):
    """The reference TerraMind encoder-decoder: a released size via the registry, or a reduced config."""
    from terratorch.models.backbones.terramind.model.modality_info import MODALITY_INFO
    from terratorch.models.backbones.terramind.model.terramind import TerraMind
    from terratorch.models.backbones.terramind.model.tm_utils import LayerNorm
    from terratorch.registry import FULL_MODEL_REGISTRY

    def emb(key, side):
        # as terratorch's build_modality_embeddings: the partial plus the whole MODALITY_INFO entry
        info = dict(MODALITY_INFO[key])
        if vocab and "vocab_size" in info:
            info["vocab_size"] = vocab
        return info[f"{side}_embedding"](image_size=224, **info)

    kw = dict(
        encoder_embeddings={k: emb(k, "encoder") for k in enc_keys},
        decoder_embeddings={k: emb(k, "decoder") for k in dec_keys},
        modality_info=MODALITY_INFO,
    )
    if size in ("base", "large"):
        return FULL_MODEL_REGISTRY.build(f"terratorch_terramind_v1_{size}_encdec", pretrained=False, **kw)
    if size is not None:
        # terratorch 1.2.11's tiny/small _encdec registry entries pass pretrained_bands= on to TerraMind(),
        # which rejects it (TypeError): build the class with the registry's own hyper-parameters instead.
        cfg = RELEASED[size]
    swiglu = cfg["mlp"] == "swiglu"
    return TerraMind(
        **kw,
        dim=cfg["dim"],
        encoder_depth=cfg["encoder_depth"],
        decoder_depth=cfg["decoder_depth"],
        num_heads=cfg["num_heads"],
        mlp_ratio=4,
        qkv_bias=not swiglu,
        proj_bias=not swiglu,
        mlp_bias=not swiglu,
        norm_layer=partial(LayerNorm, eps=1e-6, bias=False),
        act_layer=torch.nn.SiLU if swiglu else torch.nn.GELU,
        gated_mlp=swiglu,
    )


def make_case(model, seed: int, batch: int, sizes: dict[str, tuple[int, int]], id_max: int) -> dict:
    """Inputs, encoder masks, jointly decoded targets and the reference's outputs for one model."""
    g = torch.Generator().manual_seed(seed + 1000)
    inputs, masks = {}, {}
    for key, (h, w) in sizes.items():
        if key.startswith("untok_"):
            c = model.encoder_embeddings[key].num_channels
            inputs[key] = torch.randn(batch, c, h, w, generator=g).half().float()
        elif key in SEQ_KEYS:
            inputs[key] = torch.randint(1, id_max, (batch, 4), generator=g)
        else:
            inputs[key] = torch.randint(0, id_max, (batch, h, w), generator=g)
        n = (
            inputs[key].shape[1]
            if key in SEQ_KEYS
            else (h // 16) * (w // 16)
            if key.startswith("untok_")
            else h * w
        )
        keep = torch.rand(batch, n, generator=g) < 0.7  # True = input; counts differ per sample
        keep[:, 0] = True
        masks[key] = keep
    targets = {}
    for key, n in (("tok_lulc@224", 20), ("tok_sen2l2a@224", 15)):
        pos = torch.stack([torch.randperm(196, generator=g)[:n].sort().values for _ in range(batch)])
        targets[key] = pos
    coords_ids = torch.randint(1, id_max, (batch, 4), generator=g)
    ref = run_reference(model, inputs, masks, targets, coords_ids)
    return {"inputs": inputs, "masks": masks, "targets": targets, "coords_ids": coords_ids, **ref}


def run_reference(model, inputs, masks, targets, coords_ids) -> dict:
    """Replays TerraMind.forward step by step to also keep every encoder layer and the per-modality logits."""
    from einops import rearrange

    enc = {}
    for key, x in inputs.items():
        d = {"tensor": x, "input_mask": ~masks[key]}  # reference: True = not an input
        enc[key] = model.encoder_embeddings[key](d)
    dec = {}
    for key, pos in targets.items():
        b = pos.shape[0]
        tm = torch.ones(b, 196, dtype=torch.bool)
        tm.scatter_(1, pos, False)  # False = is a target
        attn = torch.zeros(b, 196, dtype=torch.int64)
        attn.scatter_(1, pos[:, :1], pos.shape[1])  # all targets of the modality attend to each other
        ids = torch.zeros(b, 196, dtype=torch.int64)
        dec[key] = model.decoder_embeddings[key].forward_embed(
            {"tensor": ids, "target_mask": tm, "decoder_attention_mask": attn}
        )
    b = coords_ids.shape[0]
    dec["coords"] = model.decoder_embeddings["coords"].forward_embed(
        {
            "tensor": coords_ids,
            "target_mask": torch.zeros(b, 4, dtype=torch.bool),
            "decoder_attention_mask": torch.ones(b, 4, dtype=torch.int64),  # causal
        }
    )
    n_enc = max(int(m.sum(1).max()) for m in [torch.cat([masks[k] for k in inputs], 1)])
    n_dec = sum(p.shape[1] for p in targets.values()) + 3
    with torch.inference_mode():
        tokens, emb, enc_mask, _ = model.forward_mask_encoder(enc, n_enc)
        x = tokens + emb
        layers = []
        for blk in model.encoder:
            x = blk(x, mask=enc_mask)
            layers.append(x)
        layers[-1] = model.encoder_norm(x)
        dtok, demb, _, _, dattn, dmod = model.forward_mask_decoder(dec, n_dec)
        context = model.decoder_proj_context(layers[-1]) + emb
        y = model.forward_decoder(dtok + demb, context, encoder_mask=enc_mask, decoder_attention_mask=dattn)
        logits = {}
        for key in dec:
            idx = model.modality_info[key]["id"]
            flat = model.decoder_embeddings[key].forward_logits(y[dmod == idx])
            logits[key] = rearrange(flat, "(b n) v -> b n v", b=b)
        # no masks at all (backbone semantics): sequence positions then count every token
        plain_enc = {k: model.encoder_embeddings[k](v) for k, v in inputs.items()}
        unmasked = torch.cat([d["x"] + d["emb"] for d in plain_enc.values()], 1)
        plain = []
        for blk in model.encoder:
            unmasked = blk(unmasked)
            plain.append(unmasked)
        plain[-1] = model.encoder_norm(unmasked)
    real = ~enc_mask[:, 0]
    return {
        "layers": torch.stack(layers),
        "real": real,
        "logits": logits,
        "layers_nomask": torch.stack(plain),
    }


def _keys(pixel_keys=("untok_sen2l2a@224", "untok_sen1rtc@224")):
    enc = [*pixel_keys, "tok_lulc@224", "tok_sen2l2a@224", "coords"]
    dec = ["tok_lulc@224", "tok_sen2l2a@224", "coords"]
    return enc, dec


def cmd_encdec_full(args: argparse.Namespace) -> None:
    """Full-size encoder-decoder parity data (state dict too large for git: under peer_out/)."""
    enc, dec = _keys()
    torch.manual_seed(args.seed)
    model = build_encdec(args.size, None, enc, dec, None)
    perturb(model, args.seed)
    model.eval()
    sizes = {
        "untok_sen2l2a@224": (224, 224),
        "untok_sen1rtc@224": (224, 224),
        "tok_lulc@224": (14, 14),
        "tok_sen2l2a@224": (14, 14),
        "coords": (0, 0),
    }
    case = make_case(model, args.seed, 2, sizes, id_max=4375)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"terramind_v1_{args.size}_encdec"
    torch.save(model.state_dict(), out / f"{name}.state_dict.pt")
    torch.save(case, out / f"{name}.io.pt")
    print("wrote", out / f"{name}.io.pt")


# The hyper-parameters of the registry's terramind_v1_{tiny,small}_encdec entries.
RELEASED = {
    "tiny": dict(dim=192, encoder_depth=12, decoder_depth=4, num_heads=3, mlp="gelu"),
    "small": dict(dim=384, encoder_depth=12, decoder_depth=6, num_heads=6, mlp="gelu"),
}

# ------------------------------------------------------------------------------------------- goldens
# Reduced configs of both block flavours; pixel keys and sizes chosen to keep each file small, with
# non-square images (interpolated positions) and per-sample masks (padding) exercised in both.
GOLDEN_CONFIGS = {
    "gelu": dict(dim=24, encoder_depth=2, decoder_depth=2, num_heads=2, mlp="gelu"),
    "swiglu": dict(dim=32, encoder_depth=2, decoder_depth=2, num_heads=2, mlp="swiglu"),
}
GOLDEN_PIXELS = {
    "gelu": {"untok_sen2l2a@224": (32, 32), "untok_sen1rtc@224": (48, 80)},
    "swiglu": {"untok_sen2rgb@224": (48, 48), "untok_dem@224": (32, 64)},
}


def cmd_goldens(args: argparse.Namespace) -> None:
    """Small committed goldens: reduced configs, fp16-exact weights, small and non-square inputs."""
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, cfg in GOLDEN_CONFIGS.items():
        enc, dec = _keys(tuple(GOLDEN_PIXELS[name]))
        torch.manual_seed(args.seed)
        model = build_encdec(None, cfg, enc, dec, VOCAB_KEEP)
        perturb(model, args.seed, fp16_exact=True)
        model.eval()
        sizes = {**GOLDEN_PIXELS[name], "tok_lulc@224": (8, 8), "tok_sen2l2a@224": (6, 6), "coords": (0, 0)}
        case = make_case(model, args.seed, 2, sizes, id_max=VOCAB_KEEP)
        sd = {k: v.half() for k, v in model.state_dict().items() if not k.endswith("pos_emb")}
        case = {
            "config": cfg,
            "state_dict": sd,
            "inputs": {
                k: v.half() if v.is_floating_point() else v.short() for k, v in case["inputs"].items()
            },
            "masks": case["masks"],
            "targets": {k: v.short() for k, v in case["targets"].items()},
            "coords_ids": case["coords_ids"].short(),
            "layers": case["layers"],
            "real": case["real"],
            "layers_nomask": case["layers_nomask"],
            "logits": case["logits"],
        }
        path = out / f"model_{name}.pt"
        torch.save(case, path)
        print("wrote", path, path.stat().st_size // 1024, "KB")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        cmd_peer(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("lulc", "encdec"):
        p = sub.add_parser(cmd)
        p.add_argument("--size", default="tiny", choices=["tiny", "small", "base", "large"])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--batch", type=int, default=1)
        p.add_argument("--out-dir", default="peer_out/model")
    p = sub.add_parser("goldens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="tests/parity/goldens")
    args = ap.parse_args()
    {"lulc": cmd_lulc, "encdec": cmd_encdec_full, "goldens": cmd_goldens}[args.cmd](args)


if __name__ == "__main__":
    main()
