"""Fine-tuning TerraMind on a user's task: backbone -> neck -> decoder -> head, Lightning tasks, writers.

A run is one :class:`terramind.finetune.config.FinetuneConfig` (see ``configs/finetune/``): ``task: {kind:
segmentation, ...}`` picks :class:`SegmentationTask` from a table, ``backbone:`` holds :class:`Backbone`'s
arguments; :mod:`terramind.finetune.run` builds and runs it on the engine of ``terramind.train``.
"""

from terramind.finetune.backbone import Backbone, model_config
from terramind.finetune.datamodule import GeoTiffDataModule
from terramind.finetune.decoders import DECODERS, FCNDecoder, UNetDecoder, UPerNetDecoder, build_decoder
from terramind.finetune.heads import PixelHead, PooledHead
from terramind.finetune.losses import LOSSES, build_loss
from terramind.finetune.model import DenseModel, PooledModel
from terramind.finetune.necks import PyramidNeck, default_layer_indices, tokens_to_map
from terramind.finetune.tasks import ClassificationTask, RegressionTask, SegmentationTask
from terramind.finetune.temporal import AGGREGATORS, TemporalBackbone, embed_series
from terramind.finetune.temporal_data import TemporalDataModule
from terramind.finetune.temporal_tasks import ChangeDetectionTask, TemporalSegmentationTask
from terramind.finetune.writer import GeoTiffPredictionWriter

__all__ = [
    "AGGREGATORS",
    "DECODERS",
    "LOSSES",
    "Backbone",
    "ChangeDetectionTask",
    "ClassificationTask",
    "DenseModel",
    "FCNDecoder",
    "GeoTiffDataModule",
    "GeoTiffPredictionWriter",
    "PixelHead",
    "PooledHead",
    "PooledModel",
    "PyramidNeck",
    "RegressionTask",
    "SegmentationTask",
    "TemporalBackbone",
    "TemporalDataModule",
    "TemporalSegmentationTask",
    "UNetDecoder",
    "UPerNetDecoder",
    "build_decoder",
    "build_loss",
    "default_layer_indices",
    "embed_series",
    "model_config",
    "tokens_to_map",
]
