"""The CPU proof that both training stages learn, on the five example tiles (four to train, one held out).

1. Small tokenizers for S2L2A, S1RTC, DEM (diffusion decoders) and LULC (ViT decoder) train on random crops of
   four tiles; on the fifth, reconstruction PSNR (LULC: pixel accuracy) is compared with a downsampling
   baseline that stores the same number of bits per token.
2. The four tiles are tokenized with those tokenizers and a small TerraMind (a few million parameters)
   pretrains on them; on the fifth tile, masked-token accuracy and cross-entropy per target modality are
   compared with the unigram baseline (the training tokens' frequencies, add-one smoothed).

Run: ``python -m terramind.train.proof --out runs/proof`` (``scripts/proof_pretrain.sh``); ``--quick`` is the
reduced form used in CI. Prints a markdown report and writes it with the raw numbers to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from terramind.core.errors import InputError
from terramind.core.files import atomic_path
from terramind.data.sample import Batch, Sample
from terramind.data.shards import GeoTiffFolderSource, read_samples, shard_stream, write_sample_shards
from terramind.data.stream import StreamConfig
from terramind.data.terramesh import TerraMeshSource
from terramind.modalities import get_modality, standardize
from terramind.tokenizers import UNetConfig, ViTConfig
from terramind.train.config import (
    DataSection,
    MaskingSection,
    ModalityEntry,
    ModelSection,
    OptimSection,
    PretrainConfig,
    TrainerSection,
)
from terramind.train.pretrain import PretrainModule, pretrain
from terramind.train.tokenizer import (
    TokenizerTrainConfig,
    bits_per_token,
    class_block_baseline,
    downsample_baseline,
    psnr,
    reconstruct,
    tokenize_function,
    train_tokenizer,
)

MODALITIES = ("S2L2A", "S1RTC", "DEM", "LULC")


@dataclass(frozen=True)
class ProofSizes:
    """Sizes and lengths of one proof run.

    Attributes:
        tokenizer_steps: Optimizer steps per tokenizer.
        tokenizer_crop: Training crop of the tokenizers (px).
        tokenizer_batch: Crops per tokenizer step.
        tokenizer_dim: Width of the tokenizer ViTs.
        unet_channels: Base width of the diffusion UNets.
        pretrain_steps: Optimizer steps of the pretraining.
        model_dim: Width of the pretrained model.
        model_depth: Encoder and decoder blocks.
        crop: Pretraining crop (px); smaller than the tiles, so that random crops vary the few samples.
        tokens: Input and target tokens per sample.
        batch: Samples per pretraining step (and held-out crops evaluated).
        eval_masks: Mask draws averaged on the held-out tile.
        ddim_steps: Diffusion steps when decoding held-out tokens.
    """

    tokenizer_steps: int = 200
    tokenizer_crop: int = 64
    tokenizer_batch: int = 4
    tokenizer_dim: int = 64
    unet_channels: int = 16
    pretrain_steps: int = 400
    model_dim: int = 128
    model_depth: int = 3
    crop: int = 128
    tokens: int = 32
    batch: int = 8
    eval_masks: int = 16
    ddim_steps: int = 10


QUICK = ProofSizes(
    tokenizer_steps=6,
    tokenizer_crop=32,
    tokenizer_dim=32,
    unet_channels=16,
    pretrain_steps=16,
    model_dim=32,
    model_depth=1,
    crop=64,
    tokens=16,
    batch=2,
    eval_masks=2,
    ddim_steps=2,
)


class LossRecorder(Callback):
    """Collects the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Record the step's loss."""
        self.losses.append(float(outputs["loss"]))

    def summary(self) -> dict[str, float]:
        """Mean loss of the first and of the last fifth of the steps."""
        k = max(1, len(self.losses) // 5)
        return {"first_loss": float(np.mean(self.losses[:k])), "last_loss": float(np.mean(self.losses[-k:]))}


def _trainer(out: Path, steps: int) -> TrainerSection:
    return TrainerSection(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        out_dir=str(out),
        progress_bar=False,
        log_every=max(1, steps // 20),
        checkpoint_every=steps,
    )


def tokenizer_config(modality: str, shards: str, out: Path, sizes: ProofSizes) -> TokenizerTrainConfig:
    """Small tokenizer of the proof."""
    vit = ViTConfig(dim=sizes.tokenizer_dim, depth=2, heads=2)
    unet = UNetConfig(
        model_channels=sizes.unet_channels,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        attention_ds=(),
        groups=8,
    )
    return TokenizerTrainConfig(
        modality=modality,
        decoder="vit" if get_modality(modality).classes is not None else "diffusion",
        encoder=vit,
        unet=unet,
        vit_decoder=vit,
        data=DataSection(
            shards=shards, batch_size=sizes.tokenizer_batch, crop=sizes.tokenizer_crop, shuffle_buffer=8
        ),
        optim=OptimSection(lr=2e-3, warmup_steps=max(1, sizes.tokenizer_steps // 20), weight_decay=0.01),
        trainer=_trainer(out, sizes.tokenizer_steps),
    )


def pretrain_config(shards: str, out: Path, sizes: ProofSizes) -> PretrainConfig:
    """Small pretraining run of the proof: pixels of S2L2A, S1RTC, DEM and LULC tokens in; all tokens out."""
    # Raw pixels where the model has a patch embedding (S2L2A, S1RTC, DEM), else the tokens (LULC).
    modalities = tuple(
        ModalityEntry(m, input="pixel" if get_modality(m).pixel_key else "token") for m in MODALITIES
    )
    heads = max(1, sizes.model_dim // 64)
    overrides = {
        "dim": sizes.model_dim,
        "encoder_depth": sizes.model_depth,
        "decoder_depth": sizes.model_depth,
        "num_heads": heads,
        "mlp_hidden": 4 * sizes.model_dim,
    }
    return PretrainConfig(
        modalities=modalities,
        model=ModelSection(size="tiny", overrides=overrides),
        masking=MaskingSection(num_input_tokens=sizes.tokens, num_target_tokens=sizes.tokens),
        optim=OptimSection(lr=1e-3, warmup_steps=max(1, sizes.pretrain_steps // 10), weight_decay=0.05),
        data=DataSection(shards=shards, batch_size=sizes.batch, crop=sizes.crop, shuffle_buffer=8),
        trainer=_trainer(out, sizes.pretrain_steps),
    )


def holdout_batch(
    shard: Path, modalities: Sequence[str], tokens: Sequence[str], crop: int, batch: int
) -> Batch:
    """Read ``batch`` seeded random crops of the held-out tile as one batch."""
    stream = shard_stream(
        [shard],
        StreamConfig(
            modalities=tuple(modalities),
            token_modalities=tuple(tokens),
            batch_size=batch,
            crop=crop,
            shuffle_buffer=1,
        ),
    )
    return next(iter(stream))


def evaluate_tokenizer(module: Any, raw: np.ndarray, modality: str, ddim_steps: int) -> dict[str, float]:
    """Reconstruction quality on the held-out tile vs the equal-bits downsampling baseline."""
    spec = get_modality(modality)
    assert spec.vocab_size is not None
    bits = bits_per_token(spec.vocab_size)
    tokenizer = module.tokenizer
    if spec.classes is not None:
        classes = torch.from_numpy(raw.astype(np.int64))  # (1, H, W)
        rec = reconstruct(tokenizer, classes)
        base = class_block_baseline(classes[0], bits, len(spec.classes))
        return {
            "pixel_accuracy": float((rec == classes[0]).float().mean()),
            "baseline_pixel_accuracy": float((base == classes[0]).float().mean()),
            "bits_per_token": bits,
        }
    x = standardize(modality, torch.from_numpy(raw.astype(np.float32)))
    rec = reconstruct(tokenizer, x, steps=ddim_steps)
    return {
        "psnr_db": psnr(x, rec),
        "baseline_psnr_db": psnr(x, downsample_baseline(x, bits)),
        "bits_per_token": bits,
    }


def unigram(shards: Sequence[Path], modality: str, vocab: int) -> np.ndarray:
    """Add-one smoothed token frequencies of the training shards."""
    counts = np.ones(vocab)
    for shard in shards:
        for sample in read_samples(shard):
            ids = np.asarray(sample.tokens[modality]).ravel()
            counts += np.bincount(ids.astype(np.int64), minlength=vocab)
    return counts / counts.sum()


@torch.no_grad()
def evaluate_pretrain(
    module: PretrainModule, batch: Batch, train_shards: Sequence[Path], draws: int
) -> dict[str, dict[str, float]]:
    """Masked-token CE and accuracy on the held-out tile (mean over mask draws) vs the unigram baseline."""
    module.eval()
    ce: dict[str, list[float]] = {}
    acc: dict[str, list[float]] = {}
    for draw in range(draws):
        result = module.compute_loss(batch, step=10**9 + draw)  # mask seeds never used in training
        for name, value in result.per_modality.items():
            ce.setdefault(name, []).append(float(value))
            acc.setdefault(name, []).append(float(result.accuracy[name]))
    report = {}
    for name in ce:
        vocab = get_modality(name).vocab_size
        assert vocab is not None
        probs = unigram(train_shards, name, vocab)
        ids = batch.tokens[name].ravel().numpy()
        report[name] = {
            "ce": float(np.mean(ce[name])),
            "accuracy": float(np.mean(acc[name])),
            "unigram_ce": float(-np.log(probs[ids]).mean()),
            "unigram_accuracy": float((ids == probs.argmax()).mean()),
        }
    return report


def load_tiles(src: Path, subset: str | None = None) -> dict[str, Sample]:
    """Read the proof's tiles from a folder of modality folders, or from a TerraMesh root (``subset`` set).

    Returns:
        Tile name -> sample with the proof's modalities, in name order.
    """
    if subset is None:
        source: Any = GeoTiffFolderSource(src)
    else:
        source = TerraMeshSource(src, "train", MODALITIES, subset=subset)  # type: ignore[arg-type]
    samples = [source.decode(k, raw) for unit in range(len(source.units())) for k, raw in source.items(unit)]
    return {s.key: s for s in sorted(samples, key=lambda s: s.key)}


def _split(tiles: dict[str, Sample], holdout: str) -> tuple[list[Sample], list[Sample]]:
    return [s for k, s in tiles.items() if k != holdout], [tiles[holdout]]


def run_proof(
    src: Path, out: Path, sizes: ProofSizes, holdout: str | None = None, subset: str | None = None
) -> dict[str, Any]:
    """Run both stages and return every number (see the module docstring).

    Args:
        src: Folder of modality folders (``examples/``), or a TerraMesh root when ``subset`` is given.
        out: Work folder (shards, runs, report).
        sizes: Model sizes and run lengths.
        holdout: Tile to hold out (default: the last tile name).
        subset: TerraMesh subset (``majortom``, ``ssl4eos12``); None: ``src`` is a GeoTIFF folder.
    """
    samples = load_tiles(src, subset)
    tiles = list(samples)
    holdout = holdout or tiles[-1]
    if holdout not in tiles or len(tiles) < 2:
        raise InputError(f"need at least two tiles and a held-out tile among {tiles}")
    started = time.perf_counter()
    train_samples, hold_samples = _split(samples, holdout)
    raw_train = write_sample_shards(train_samples, out / "raw" / "train", shard_size=1, overwrite=True)
    raw_hold = write_sample_shards(hold_samples, out / "raw" / "holdout", overwrite=True)
    tok_report, tokenizers = {}, {}
    for modality in MODALITIES:
        tok_config = tokenizer_config(
            modality, str(out / "raw" / "train" / "*.tar"), out / "tok" / modality, sizes
        )
        recorder = LossRecorder()
        tok_module = train_tokenizer(tok_config, callbacks=[recorder])
        raw = np.asarray(next(read_samples(raw_hold[0])).pixels[modality])
        tok_report[modality] = {
            **evaluate_tokenizer(tok_module, raw, modality, sizes.ddim_steps),
            **recorder.summary(),
        }
        tokenizers[modality] = tokenize_function(tok_module.tokenizer)
    tokenized = {m: tokenizers[m] for m in MODALITIES}
    train = write_sample_shards(
        train_samples, out / "tokens" / "train", tokenizers=tokenized, shard_size=1, overwrite=True
    )
    hold = write_sample_shards(hold_samples, out / "tokens" / "holdout", tokenizers=tokenized, overwrite=True)
    config = pretrain_config(str(out / "tokens" / "train" / "*.tar"), out / "pretrain", sizes)
    recorder = LossRecorder()
    module = pretrain(config, callbacks=[recorder])
    pixels = [e.name for e in config.modalities if e.input == "pixel"]
    batch = holdout_batch(hold[0], pixels, MODALITIES, sizes.crop, sizes.batch)
    params = sum(int(p.numel()) for p in module.model.parameters())
    return {
        "holdout": holdout,
        "train_tiles": [t for t in tiles if t != holdout],
        "sizes": dataclasses.asdict(sizes),
        "tokenizers": tok_report,
        "pretrain": {
            "params": params,
            **recorder.summary(),
            "holdout": evaluate_pretrain(module, batch, train, sizes.eval_masks),
        },
        "raw_train_shards": len(raw_train),
        "seconds": time.perf_counter() - started,
    }


def markdown(results: dict[str, Any]) -> str:
    """Format the proof's numbers as markdown tables."""
    lines = [
        f"Held-out tile: `{results['holdout']}`; trained on {len(results['train_tiles'])} tiles; "
        f"{results['seconds'] / 60:.1f} min in all.",
        "",
        "| tokenizer | metric | ours | equal-bits baseline | train loss first -> last |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["tokenizers"].items():
        key = "pixel_accuracy" if "pixel_accuracy" in r else "psnr_db"
        unit = "pixel accuracy" if key == "pixel_accuracy" else "PSNR (dB)"
        lines.append(
            f"| {name} | {unit} | {r[key]:.3f} | {r['baseline_' + key]:.3f} | "
            f"{r['first_loss']:.4f} -> {r['last_loss']:.4f} |"
        )
    p = results["pretrain"]
    lines += [
        "",
        f"Pretrained model: {p['params'] / 1e6:.2f} M parameters; training loss {p['first_loss']:.3f} -> "
        f"{p['last_loss']:.3f}.",
        "",
        "| target | masked-token CE | unigram CE | accuracy | unigram accuracy |",
        "|---|---|---|---|---|",
    ]
    for name, r in p["holdout"].items():
        lines.append(
            f"| {name} | {r['ce']:.3f} | {r['unigram_ce']:.3f} | {r['accuracy']:.3f} | "
            f"{r['unigram_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry of the proof."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", default="examples", help="folder of modality folders, or a TerraMesh root")
    parser.add_argument(
        "--terramesh-subset",
        choices=("majortom", "ssl4eos12"),
        help="read --src as a TerraMesh root (train/<MODALITY>/<subset>_shard_*.tar) of this subset",
    )
    parser.add_argument("--out", default="runs/proof", help="work folder")
    parser.add_argument("--quick", action="store_true", help="the reduced CI form (seconds)")
    parser.add_argument("--tokenizer-steps", type=int, help="override the tokenizer steps")
    parser.add_argument("--pretrain-steps", type=int, help="override the pretraining steps")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else ProofSizes()
    overrides = {"tokenizer_steps": args.tokenizer_steps, "pretrain_steps": args.pretrain_steps}
    sizes = dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_proof(Path(args.src), out, sizes, subset=args.terramesh_subset)
    report = markdown(results)
    print(report)
    with atomic_path(out / "proof.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    with atomic_path(out / "proof.md") as tmp:
        tmp.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
