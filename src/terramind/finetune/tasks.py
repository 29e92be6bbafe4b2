"""Lightning tasks: semantic segmentation, pixel regression, multi-class and multi-label classification.

Each task owns a model from :mod:`terramind.finetune.model`, a loss from :mod:`terramind.finetune.losses`
and torchmetrics collections; the optimiser is AdamW over the trainable parameters with a plateau, cosine
or no learning-rate schedule (the official fine-tuning example uses AdamW with ReduceLROnPlateau(0.5, 5),
configs/finetune/), each optionally after a linear warmup over the first ``warmup_steps`` steps. Warmup +
cosine is pretraining's per-step schedule (:mod:`terramind.train.optim`); beside the plateau schedule the
warmup is torch's ``LinearLR``.

Batches are dicts ``{"inputs": {modality: (B, C, H, W)}, "label": ..., "path": [str]}`` as
:class:`terramind.finetune.datamodule.GeoTiffDataModule` produces them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
import torchmetrics
from torch import nn
from torchmetrics import classification as tmc
from torchmetrics import regression as tmr

from terramind.core.errors import TerraMindError
from terramind.data.padding import crop_to, pad_to_multiple, padding_to_multiple
from terramind.finetune.losses import build_loss
from terramind.finetune.model import DenseModel, PooledModel
from terramind.layers.decay import param_groups
from terramind.train.optim import build_optimizer

Scheduler = Literal["plateau", "cosine", "none"]
ADAMW_BETAS = (0.9, 0.999)  # torch's AdamW default, which fine-tuning has always used
Batch = dict[str, Any]


class _Task(L.LightningModule):
    """What every task shares: steps, logging, metrics per stage, optimiser and schedule."""

    monitor = "val/loss"

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        metrics: torchmetrics.MetricCollection,
        *,
        lr: float,
        weight_decay: float,
        scheduler: Scheduler,
        freeze_backbone: bool,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if warmup_steps < 0:
            raise TerraMindError(f"warmup_steps must be >= 0 (0 = no warmup), got {warmup_steps}")
        self.warmup_steps = warmup_steps
        self.model = model
        self.loss_fn = loss
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.lr, self.weight_decay, self.scheduler = lr, weight_decay, scheduler
        if freeze_backbone:
            # A frozen backbone keeps its weights; the neck, decoder and head still train.
            self.model.backbone.requires_grad_(False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw model outputs (logits or regression values)."""
        return self.model(inputs)

    def _targets(self, label: torch.Tensor) -> torch.Tensor:
        return label

    def _metric_inputs(self, out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out, target

    def _step(self, batch: Batch, metrics: torchmetrics.MetricCollection, stage: str) -> torch.Tensor:
        out = self(batch["inputs"])
        target = self._targets(batch["label"])
        loss = self.loss_fn(out, target)
        batch_size = target.shape[0]
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=True,
            batch_size=batch_size,
            on_epoch=True,
            on_step=stage == "train",
        )
        metrics.update(*self._metric_inputs(out.detach(), target))
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss."""
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Accumulate validation loss and metrics."""
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Accumulate test loss and metrics."""
        self._step(batch, self.test_metrics, "test")

    def _log_metrics(self, metrics: torchmetrics.MetricCollection) -> None:
        values = metrics.compute()
        flat: dict[str, torch.Tensor] = {}
        for name, value in values.items():
            if value.ndim == 0:
                flat[name] = value
            else:  # per-class values (IoU per class) are logged one scalar each
                flat.update({f"{name}_{i}": v for i, v in enumerate(value)})
        self.log_dict(flat, prog_bar=False)
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        """Log and reset the training metrics."""
        self._log_metrics(self.train_metrics)

    def on_validation_epoch_end(self) -> None:
        """Log and reset the validation metrics."""
        self._log_metrics(self.val_metrics)

    def on_test_epoch_end(self) -> None:
        """Log and reset the test metrics."""
        self._log_metrics(self.test_metrics)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        """Predictions for a batch plus the source paths (for georeferenced output).

        Tiles of any size are predicted: inputs whose sides are not multiples of the 16 px patch are
        reflect-padded (:func:`terramind.data.padding.pad_to_multiple`) and dense outputs cropped back to
        the input's size, so a 120 px tile gives a 120 px map on the tile's grid.
        """
        out = self.predict_inputs(batch["inputs"])
        return {"prediction": self.postprocess(out), "path": batch.get("path")}

    def predict_inputs(self, inputs: Any) -> torch.Tensor:
        """Raw outputs for a batch's inputs, padded to the patch multiple and cropped back (dense outputs)."""
        height, width = next(iter(inputs.values())).shape[-2:]
        out = self(_pad_inputs(inputs))
        if out.ndim == 4:  # dense (B, C, H, W): back to the input's pixels
            out = crop_to(out, height, width)
        return out

    def postprocess(self, out: torch.Tensor) -> torch.Tensor:
        """Turn raw outputs into the values written by ``predict`` (identity for regression)."""
        return out

    def configure_optimizers(self) -> Any:
        """AdamW over trainable parameters (``layers.decay`` policy), the chosen schedule and warmup.

        ``cosine`` is :func:`terramind.train.optim.build_optimizer`'s per-step warmup + cosine, the schedule
        of pretraining (the same learning rate per step as torch's ``LinearLR`` then ``CosineAnnealingLR``).
        """
        if self.scheduler == "cosine":
            steps = max(int(self.trainer.estimated_stepping_batches), 1)
            optimizer, schedule = build_optimizer(
                self, lr=self.lr, weight_decay=self.weight_decay, betas=ADAMW_BETAS,
                warmup_steps=self.warmup_steps, total_steps=steps,
            )  # fmt: skip
            return [optimizer], [{"scheduler": schedule, "interval": "step"}]
        optimizer = torch.optim.AdamW(param_groups(self, self.weight_decay), lr=self.lr, betas=ADAMW_BETAS)
        schedules: list[dict[str, Any]] = []
        if (warmup := self._warmup(optimizer)) is not None:
            schedules.append({"scheduler": warmup, "interval": "step"})
        if self.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5)
            schedules.append({"scheduler": plateau, "monitor": self.monitor})
        return ([optimizer], schedules) if schedules else optimizer

    def _warmup(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        """Linear warmup, or None: step ``i < warmup_steps`` runs at ``lr * (i + 1) / warmup_steps``."""
        if not self.warmup_steps:
            return None
        return torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0 / self.warmup_steps, total_iters=max(self.warmup_steps - 1, 1)
        )


def _pad_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reflect-pad each ``(B, C, H, W)`` input to sides that are multiples of the patch (unchanged if so)."""
    padded = {}
    for name, x in inputs.items():
        if not any(padding_to_multiple(x.shape[-2], x.shape[-1])):
            padded[name] = x
            continue
        array, _ = pad_to_multiple(x.detach().cpu().numpy())  # numpy mirrors repeatedly for long pads
        padded[name] = torch.from_numpy(array).to(x.device)
    return padded


def _check_weights(class_weights: Sequence[float] | None, num_classes: int) -> None:
    if class_weights is not None and len(class_weights) != num_classes:
        raise TerraMindError(f"class_weights has {len(class_weights)} values for {num_classes} classes")


class SegmentationTask(_Task):
    """Semantic segmentation: per-pixel class logits, CE/dice/focal loss, mIoU, per-class IoU, F1, accuracy.

    Args:
        backbone: Module returning per-block tokens (e.g. ``TerraMindBackbone``).
        num_classes: Number of classes; labels are ids ``0..num_classes-1`` or ``ignore_index``.
        loss: ``ce``, ``dice`` or ``focal``.
        class_weights: Optional weight per class.
        ignore_index: Label value excluded from loss and metrics.
        layer_indices: Backbone blocks fed to the neck (None: four evenly spaced).
        decoder: ``unet``, ``upernet`` or ``fcn``.
        decoder_kwargs: Extra decoder arguments, e.g. ``{"channels": [256, 128, 64, 32]}``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``plateau`` (on the monitored metric), ``cosine`` (per step) or ``none``.
        warmup_steps: Optimiser steps of linear learning-rate warmup before the schedule (0: none).
        freeze_backbone: Train only neck, decoder and head.
        head_dropout: Dropout before the output convolution.
    """

    monitor = "val/loss"
    model: DenseModel

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        loss: str = "ce",
        class_weights: list[float] | None = None,
        ignore_index: int = -1,
        layer_indices: list[int] | None = None,
        decoder: str = "unet",
        decoder_kwargs: dict[str, Any] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        scheduler: Scheduler = "plateau",
        warmup_steps: int = 0,
        freeze_backbone: bool = False,
        head_dropout: float = 0.1,
    ) -> None:
        _check_weights(class_weights, num_classes)
        model = DenseModel(
            backbone,
            num_classes,
            layer_indices=layer_indices,
            decoder=decoder,
            decoder_kwargs=decoder_kwargs,
            head_dropout=head_dropout,
        )
        k, ignore = num_classes, ignore_index
        metrics = torchmetrics.MetricCollection(
            {
                "mIoU": tmc.MulticlassJaccardIndex(k, ignore_index=ignore, average="macro"),
                "IoU": tmc.MulticlassJaccardIndex(k, ignore_index=ignore, average="none"),
                "F1": tmc.MulticlassF1Score(k, ignore_index=ignore, average="macro"),
                "accuracy": tmc.MulticlassAccuracy(k, ignore_index=ignore, average="micro"),
            }
        )
        super().__init__(
            model,
            build_loss(loss, class_weights=class_weights, ignore_index=ignore_index),
            metrics,
            lr=lr,
            weight_decay=weight_decay,
            scheduler=scheduler,
            freeze_backbone=freeze_backbone,
            warmup_steps=warmup_steps,
        )
        self.save_hyperparameters(ignore=["backbone"])

    def _targets(self, label: torch.Tensor) -> torch.Tensor:
        return label.long()

    def postprocess(self, out: torch.Tensor) -> torch.Tensor:
        """Class map ``(B, H, W)`` (uint8 when classes fit)."""
        return out.argmax(dim=1).to(torch.uint8 if out.shape[1] <= 256 else torch.int32)


class RegressionTask(_Task):
    """Pixel regression: ``out_channels`` values per pixel, MSE or L1 over valid pixels, RMSE/MAE/R².

    The metrics are logged as ``<stage>/RMSE``, ``<stage>/MAE`` and ``<stage>/R2``, each over the valid
    pixel values of the whole epoch with all channels pooled (R² against the pooled mean of the targets).

    Args:
        backbone: Module returning per-block tokens.
        out_channels: Target channels per pixel.
        loss: ``mse`` or ``l1``.
        ignore_value: Target value excluded from the loss (non-finite targets are always excluded).
        layer_indices: Backbone blocks fed to the neck.
        decoder: ``unet``, ``upernet`` or ``fcn``.
        decoder_kwargs: Extra decoder arguments.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``plateau``, ``cosine`` or ``none``.
        warmup_steps: Optimiser steps of linear learning-rate warmup before the schedule (0: none).
        freeze_backbone: Train only neck, decoder and head.
        head_dropout: Dropout before the output convolution.
    """

    model: DenseModel

    def __init__(
        self,
        backbone: nn.Module,
        out_channels: int = 1,
        *,
        loss: str = "mse",
        ignore_value: float = float("nan"),
        layer_indices: list[int] | None = None,
        decoder: str = "unet",
        decoder_kwargs: dict[str, Any] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        scheduler: Scheduler = "plateau",
        warmup_steps: int = 0,
        freeze_backbone: bool = False,
        head_dropout: float = 0.0,
    ) -> None:
        model = DenseModel(
            backbone,
            out_channels,
            layer_indices=layer_indices,
            decoder=decoder,
            decoder_kwargs=decoder_kwargs,
            head_dropout=head_dropout,
        )
        metrics = torchmetrics.MetricCollection(
            {"RMSE": tmr.MeanSquaredError(squared=False), "MAE": tmr.MeanAbsoluteError(), "R2": tmr.R2Score()}
        )
        super().__init__(
            model,
            build_loss(loss, ignore_index=ignore_value),
            metrics,
            lr=lr,
            weight_decay=weight_decay,
            scheduler=scheduler,
            freeze_backbone=freeze_backbone,
            warmup_steps=warmup_steps,
        )
        self.ignore_value = ignore_value
        self.save_hyperparameters(ignore=["backbone"])

    def _targets(self, label: torch.Tensor) -> torch.Tensor:
        return label.float() if label.ndim == 4 else label.float().unsqueeze(1)  # (B, C, H, W)

    def _metric_inputs(self, out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = torch.isfinite(target) & (target != self.ignore_value)
        return out[valid].float(), target[valid]


class ClassificationTask(_Task):
    """Per-image classification from mean-pooled tokens: multi-class (CE/focal) or multi-label (BCE).

    Args:
        backbone: Module returning per-block tokens.
        num_classes: Number of classes.
        multilabel: Labels are multi-hot ``(B, K)`` vectors instead of class ids ``(B,)``.
        loss: ``ce`` or ``focal`` (multi-class), ``bce`` (multi-label); None picks ``ce`` / ``bce``.
        class_weights: Optional weight per class (``pos_weight`` for multi-label).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        scheduler: ``plateau``, ``cosine`` or ``none``.
        warmup_steps: Optimiser steps of linear learning-rate warmup before the schedule (0: none).
        freeze_backbone: Train only the head.
        head_dropout: Dropout before the linear layer.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        multilabel: bool = False,
        loss: str | None = None,
        class_weights: list[float] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        scheduler: Scheduler = "plateau",
        warmup_steps: int = 0,
        freeze_backbone: bool = False,
        head_dropout: float = 0.1,
    ) -> None:
        _check_weights(class_weights, num_classes)
        metrics = torchmetrics.MetricCollection(
            {
                "accuracy": tmc.MultilabelAccuracy(num_labels=num_classes)
                if multilabel
                else tmc.MulticlassAccuracy(num_classes=num_classes, average="micro"),
                "F1": tmc.MultilabelF1Score(num_labels=num_classes, average="macro")
                if multilabel
                else tmc.MulticlassF1Score(num_classes=num_classes, average="macro"),
            }
        )
        loss_fn = build_loss(loss or ("bce" if multilabel else "ce"), class_weights=class_weights)
        super().__init__(
            PooledModel(backbone, num_classes, head_dropout),
            loss_fn,
            metrics,
            lr=lr,
            weight_decay=weight_decay,
            scheduler=scheduler,
            freeze_backbone=freeze_backbone,
            warmup_steps=warmup_steps,
        )
        self.multilabel = multilabel
        self.save_hyperparameters(ignore=["backbone"])

    def _targets(self, label: torch.Tensor) -> torch.Tensor:
        return label.float() if self.multilabel else label.long()

    def _metric_inputs(self, out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out, target.long()

    def postprocess(self, out: torch.Tensor) -> torch.Tensor:
        """Class ids ``(B,)`` or multi-hot ``(B, K)`` predictions."""
        return (out > 0).long() if self.multilabel else out.argmax(dim=1)
