"""Tokenizer training: FSQ-VAEs with a diffusion decoder (MSE on x0) or a ViT decoder (cross-entropy).

The released recipe (configs/tokenizer/): DiVAE tokenizers (S2L2A, S1, DEM, NDVI) learn to predict the clean
image x0 from a noised one, conditioned on the FSQ codes of the clean image, with an MSE loss over the 1000
training timesteps of the release's scheduler; the LULC tokenizer decodes codes to class logits with a ViT and
learns with cross-entropy. Both train end to end through FSQ's straight-through rounding.

Also here: the reconstruction metrics of the CPU proof (PSNR, pixel accuracy) and the baselines that store
the same number of bits per token by downsampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import Callback
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from terramind.build import build_image_tokenizer
from terramind.checkpoints.io import load_into, read_state_dict
from terramind.checkpoints.tokenizers import tokenizer_config
from terramind.core.errors import InputError
from terramind.core.files import atomic_path
from terramind.data.sample import Batch
from terramind.data.stream import SampleStream, StreamConfig
from terramind.modalities import PATCH_SIZE, get_modality, standardize
from terramind.tokenizers import (
    ImageTokenizer,
    PatchedUNet,
    TokenizerConfig,
    UNetConfig,
    ViTConfig,
    build_tokenizer,
)
from terramind.tokenizers.diffusion import make_scheduler
from terramind.train.config import DataSection, OptimSection, TrainerSection, from_dict, to_dict
from terramind.train.engine import check_identity, data_source, fit, record_identity, to_device
from terramind.train.optim import lightning_optimizers

TRAIN_TIMESTEPS = 1000
# Saved in every checkpoint: a resume must train the same tokenizer with the same seed.
IDENTITY = ("modality", "decoder", "encoder", "unet", "vit_decoder", "seed")


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """A tokenizer training run.

    Attributes:
        modality: Catalog modality (its FSQ levels and statistics come from the catalog).
        decoder: ``diffusion`` (DiVAE, MSE on x0) or ``vit`` (class logits, cross-entropy; LULC).
        encoder: Encoder ViT shape.
        unet: Diffusion decoder shape (``decoder: diffusion``).
        vit_decoder: ViT decoder shape (``decoder: vit``).
        data: Shards and reading (``crop`` sides must be multiples of 16).
        optim: Optimiser and schedule.
        trainer: Engine settings.
        seed: Seed of weights, noise and data order.
    """

    modality: str
    decoder: str = "diffusion"
    encoder: ViTConfig = field(default_factory=ViTConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    vit_decoder: ViTConfig = field(default_factory=ViTConfig)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=lambda: TrainerSection(out_dir="runs/tokenizer"))
    seed: int = 0

    def __post_init__(self) -> None:
        if self.decoder not in ("diffusion", "vit"):
            raise InputError(f"decoder must be 'diffusion' or 'vit', got {self.decoder!r}")
        spec = get_modality(self.modality)
        if spec.fsq_levels is None:
            raise InputError(f"{spec.name} has no image tokenizer (no FSQ levels in the catalog)")
        if self.decoder == "vit" and spec.classes is None:
            raise InputError(
                f"the vit decoder is for class maps (LULC); use decoder: diffusion for {spec.name}"
            )

    def tokenizer_config(self) -> TokenizerConfig:
        """Return the architecture this run trains: the catalog's facts, this run's sizes."""
        return tokenizer_config(
            self.modality,
            encoder=self.encoder,
            unet=self.unet,
            vit_decoder=self.vit_decoder,
            decoder_kind=self.decoder,
        )


def load_tokenizer_config(values: dict[str, Any], where: str = "config") -> TokenizerTrainConfig:
    """Build a :class:`TokenizerTrainConfig` from plain data (a parsed YAML file)."""
    return from_dict(TokenizerTrainConfig, values, where)


class TokenizerModule(L.LightningModule):
    """Trains one image tokenizer end to end."""

    def __init__(self, config: TokenizerTrainConfig):
        """Build the tokenizer and, for diffusion decoders, the noise scheduler."""
        super().__init__()
        self.config = config
        self.name = get_modality(config.modality).name
        self.tokenizer: ImageTokenizer = build_tokenizer(config.tokenizer_config())
        # The release's training noise schedule (linear betas rescaled to zero terminal SNR).
        self.alphas_cumprod = make_scheduler().alphas_cumprod.float()
        self.resume_batches = 0
        self.skips: dict[str, object] = {}  # the reader's skip summary (checkpointed)
        self.ema: AveragedModel | None = None
        if config.optim.ema_decay is not None:  # the release used EMA 0.9999 (DiVAE) / 0.99 (LULC)
            self.ema = AveragedModel(
                self.tokenizer, multi_avg_fn=get_ema_multi_avg_fn(config.optim.ema_decay)
            )
            self.ema.requires_grad_(False)

    def compute_loss(self, raw: torch.Tensor, step: int, rank: int = 0) -> torch.Tensor:
        """Loss of one batch of raw pixels ``(B, C, H, W)`` (LULC: class ids ``(B, 1, H, W)``)."""
        if self.config.decoder == "vit":
            classes = raw[:, 0].long()  # (B, H, W)
            codes, _ = self.tokenizer.encode_codes(classes)
            return F.cross_entropy(self.tokenizer.decode_codes(codes), classes)
        x = standardize(self.name, raw)
        codes, _ = self.tokenizer.encode_codes(x)
        # Noise and timesteps are a pure function of (seed, step, rank): exact resume, reproducible runs.
        gen = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.config.seed, step, rank]).generate_state(1)[0])
        )
        t = torch.randint(0, TRAIN_TIMESTEPS, (x.shape[0],), generator=gen).to(x.device)
        noise = torch.randn(x.shape, generator=gen).to(x.device)
        alpha_bar = self.alphas_cumprod.to(x.device)[t].view(-1, 1, 1, 1)
        noisy = alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * noise  # forward diffusion q(x_t | x0)
        decoder = self.tokenizer.decoder
        assert isinstance(decoder, PatchedUNet)  # decoder == "diffusion"
        return F.mse_loss(decoder(noisy, t, codes), x)  # x0-prediction (tokenizers/diffusion.py)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """One step: the loss of the batch of this rank."""
        loss = self.compute_loss(batch.pixels[self.name], self.global_step, self.global_rank)
        self.log("loss", loss, prog_bar=True, batch_size=len(batch))
        self.skips = batch.skips
        return loss

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a :class:`Batch` (our own type, which Lightning does not know) to the device."""
        return to_device(batch, device)

    def configure_optimizers(self) -> Any:
        """AdamW (no decay on norms, biases, position tables) with warmup + cosine."""
        return lightning_optimizers(self.tokenizer, self.config.optim, self.config.trainer.max_steps)

    def train_dataloader(self) -> DataLoader[Batch]:
        """Random crops of the modality from the shards."""
        d = self.config.data
        stream_config = StreamConfig(
            modalities=(self.name,),
            batch_size=d.batch_size,
            crop=d.crop,
            shuffle_buffer=d.shuffle_buffer,
            seed=self.config.seed,
            max_skip_fraction=d.max_skip_fraction,
        )
        stream: SampleStream[Batch] = SampleStream(
            data_source(d, needed=[self.name], names=[self.name]),
            stream_config,
            rank=self.global_rank,
            world_size=self.trainer.world_size,
            skip_batches=self.resume_batches,
        )
        return DataLoader(stream, batch_size=None, num_workers=d.num_workers)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the EMA weights after the optimiser step."""
        if self.ema is not None:
            self.ema.update_parameters(self.tokenizer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the run identity and the data position."""
        record_identity(checkpoint, self.config, IDENTITY)
        checkpoint["terramind_batches_consumed"] = self.global_step
        checkpoint["terramind_skipped_samples"] = self.skips

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another configuration; restore the data position."""
        check_identity(checkpoint, self.config, IDENTITY, "tokenizer training")
        self.resume_batches = int(checkpoint.get("terramind_batches_consumed", 0))


def save_tokenizer(module: TokenizerModule, out_dir: str | Path) -> Path:
    """Write ``tokenizer.safetensors`` (EMA weights if enabled) and the ``tokenizer.yaml`` that rebuilds it.

    Returns:
        The weights file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "tokenizer.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(module.config), sort_keys=False))
    weights = out / "tokenizer.safetensors"
    trained = module.ema.module if module.ema is not None else module.tokenizer  # EMA weights when kept
    state = {k: v.detach().cpu().contiguous() for k, v in trained.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    return weights


def train_tokenizer(
    config: TokenizerTrainConfig, *, resume: str | None = None, callbacks: list[Callback] | None = None
) -> TokenizerModule:
    """Train (or resume training) a tokenizer; the result is saved in ``trainer.out_dir``.

    Args:
        config: The run.
        resume: A checkpoint path, ``"last"`` or None.
        callbacks: Extra Lightning callbacks.

    Returns:
        The trained module (``.tokenizer`` is the :class:`~terramind.tokenizers.ImageTokenizer`).
    """
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = TokenizerModule(config)
    trainer = fit(
        module, config.trainer, clip_grad=config.optim.clip_grad, callbacks=callbacks or [], resume=resume
    )
    if trainer.is_global_zero:
        save_tokenizer(module, config.trainer.out_dir)
    return module


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB, the peak being the reference's value range (per image)."""
    mse = float(((reference.float() - estimate.float()) ** 2).mean())
    span = float(reference.max() - reference.min())
    return 10.0 * math.log10(span**2 / max(mse, 1e-12))


def bits_per_token(vocab_size: int) -> float:
    """Information in one token id: log2 of the vocabulary."""
    return math.log2(vocab_size)


def downsample_baseline(x: torch.Tensor, bits: float, patch: int = PATCH_SIZE) -> torch.Tensor:
    """Best bilinear-downsampling reconstruction that stores at most ``bits`` per ``patch`` x ``patch`` area.

    For block sides of 1, 2, 4, ... patches, every channel keeps one area-mean value per block, uniformly
    quantised over the image's range with as many bits as the budget allows (at least 1); the image is
    bilinearly upsampled back. The best PSNR over block sizes is returned, so the baseline is generous.

    Args:
        x: Image ``(C, H, W)`` in standardized units (H, W multiples of ``patch``).
        bits: Bits available per token (per patch).
        patch: Pixels per token side.
    """
    c, h, w = x.shape
    lo, hi = float(x.min()), float(x.max())
    best, best_score = x, -math.inf
    for blocks in (1, 2, 4, 7, 14):
        side = patch * blocks
        if h % side or w % side:
            continue
        b = int(bits * blocks * blocks // c)
        if b < 1:
            continue
        levels = 2 ** min(b, 16) - 1
        small = F.avg_pool2d(x[None].float(), side)  # (1, C, h/side, w/side)
        q = torch.round((small - lo) / max(hi - lo, 1e-12) * levels) / levels * (hi - lo) + lo
        up = F.interpolate(q, size=(h, w), mode="bilinear", align_corners=False)[0]
        if (score := psnr(x, up)) > best_score:
            best, best_score = up, score
    return best


def class_block_baseline(
    classes: torch.Tensor, bits: float, num_classes: int, patch: int = PATCH_SIZE
) -> torch.Tensor:
    """Class-map baseline with the same bits per token: majority class of square blocks, upsampled.

    Each block stores one class id (log2(num_classes) bits); the block side is the smallest that fits the
    budget. Block one-hot maps are bilinearly upsampled and the argmax taken.

    Args:
        classes: Class ids ``(H, W)``.
        bits: Bits available per ``patch`` x ``patch`` token.
        num_classes: Number of classes.
        patch: Pixels per token side.

    Returns:
        Reconstructed class ids ``(H, W)``.
    """
    per_label = math.log2(num_classes)
    side = math.ceil(math.sqrt(patch * patch * per_label / bits))
    h, w = classes.shape
    one_hot = F.one_hot(classes.long(), num_classes).permute(2, 0, 1).float()[None]  # (1, K, H, W)
    counts = F.adaptive_avg_pool2d(one_hot, (math.ceil(h / side), math.ceil(w / side)))
    majority = F.one_hot(counts.argmax(1), num_classes).permute(0, 3, 1, 2).float()
    return F.interpolate(majority, size=(h, w), mode="bilinear", align_corners=False)[0].argmax(0)


@torch.no_grad()
def reconstruct(tokenizer: ImageTokenizer, x: torch.Tensor, steps: int = 10, seed: int = 0) -> torch.Tensor:
    """Encode and decode one image ``(C, H, W)`` (standardized; LULC: class ids ``(1, H, W)``).

    Returns:
        The standardized reconstruction (LULC: class ids ``(H, W)``).
    """
    tokenizer.eval()
    if tokenizer.cfg.classes is not None:
        ids = tokenizer.encode(x[None, 0].long())
        return tokenizer.decode(ids)[0].argmax(0)
    ids = tokenizer.encode(x[None])
    return tokenizer.decode(ids, steps=steps, generator=torch.Generator().manual_seed(seed))[0]


def load_trained_tokenizer(run_dir: str | Path) -> ImageTokenizer:
    """Rebuild a tokenizer saved by :func:`train_tokenizer` (``tokenizer.yaml`` and its weights)."""
    folder = Path(run_dir)
    spec, weights = folder / "tokenizer.yaml", folder / "tokenizer.safetensors"
    if not spec.is_file() or not weights.is_file():
        raise InputError(
            f"{str(folder)!r} has no tokenizer.yaml/tokenizer.safetensors: run train-tokenizer first"
        )
    config = load_tokenizer_config(yaml.safe_load(spec.read_text()) or {}, str(spec))
    tokenizer = build_tokenizer(config.tokenizer_config())
    load_into(tokenizer, read_state_dict(weights), what=str(weights))
    return tokenizer.eval()


@torch.no_grad()
def tokenize_batch(tokenizer: ImageTokenizer, raw: torch.Tensor) -> torch.Tensor:
    """Token ids ``(B, h, w)`` of raw pixels ``(B, C, H, W)`` (class maps: ids ``(B, 1, H, W)``).

    Standardises with the catalog's statistics first; runs wherever ``tokenizer`` and ``raw`` are.
    """
    if tokenizer.cfg.classes is not None:
        return tokenizer.encode(raw[:, 0].long())
    return tokenizer.encode(standardize(tokenizer.modality, raw.float()))


def tokenize_function(tokenizer: ImageTokenizer) -> Callable[[np.ndarray], np.ndarray]:
    """Raw pixels ``(C, H, W)`` -> token ids ``(H/16, W/16)`` with ``tokenizer`` (for ``prepare``)."""

    def tokenize(raw: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(raw, dtype=np.float32))
        return tokenize_batch(tokenizer, x[None])[0].numpy()

    return tokenize


def load_frozen_tokenizer(modality: str, weights: str) -> ImageTokenizer:
    """Load the tokenizer that computes a modality's ids on the fly in pretraining (frozen, eval mode).

    Args:
        modality: Catalog modality with an image tokenizer.
        weights: ``hub``, ``random``, a weights file, or a ``train-tokenizer`` output folder.

    Raises:
        InputError: A ``train-tokenizer`` folder of another modality.
    """
    name = get_modality(modality).name
    folder = Path(weights)
    if (folder / "tokenizer.yaml").is_file():
        tokenizer = load_trained_tokenizer(folder)
        if tokenizer.modality != name:
            raise InputError(f"data.tokenize.{name}: {str(folder)!r} holds a {tokenizer.modality} tokenizer")
    else:
        tokenizer = build_image_tokenizer(name, weights)
    return tokenizer.requires_grad_(False).eval()
