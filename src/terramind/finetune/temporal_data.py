"""The Lightning datamodule of time series: GeoTIFF stacks or ImpactMesh zarr zips, split and batched.

Layouts (:func:`terramind.data.series.find_samples`): ``data_root/<MODALITY>/<name>/*_<date>.tif`` (one file
per date), ``data_root/<MODALITY>/<name>.tif`` (static, e.g. DEM), ``data_root/<MODALITY>/<name>.zarr.zip``
(ImpactMesh; label folder ``MASK``), optional ``data_root/series/<name>.csv`` lists, and labels in
``data_root/<label_folder>/<name>.tif|.zarr.zip``. Splits come from ``data_root/splits/<split>.txt`` (one
sample name per line) or a seeded ratio split. Reading is Lightning-free (:mod:`terramind.data.series`);
batches are ``{"inputs": Series, "label": (B, H, W), "path": [str], "name": [str], "grid": [dict | None]}``
(``predict`` names each output ``<name>_pred.tif`` and writes it on ``grid``, the sample's grid as
:func:`terramind.data.series.grid_record`). Training samples get one random D4 transform, the same for every
date, modality and the label.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from terramind.core.errors import InputError
from terramind.data.series import IMPACTMESH_LABEL, SeriesDataset, SeriesSample, collate_series, find_samples
from terramind.data.tiles import SPLITS, modality_inputs
from terramind.finetune.datamodule import SplitDataModule
from terramind.modalities import SensorSpec, using_catalog, with_sensors


class TemporalDataModule(SplitDataModule):
    """Time-series fine-tuning data.

    Args:
        data_root: Dataset folder.
        modalities: Input modalities, in the order the model takes them.
        label_folder: Folder of the labels (None: no labels, prediction only); default ``label``, or
            ``MASK`` for ``layout="impactmesh"``.
        layout: ``geotiff`` or ``impactmesh`` (only the default label folder differs; files are recognised
            by their suffix).
        bands: Per modality, the bands the model uses.
        file_bands: Per modality, the bands the files hold, in order, when not the modality's full set.
        offsets: Per modality, the mean offset of standardising (S2 +1000 DN products).
        scales: Per modality, a factor applied to raw values first.
        num_classes: Refuse label values outside ``0..num_classes-1`` (``ignore_index`` aside) when read.
        max_steps: Refuse series with more dates than this.
        split_ratio: Train/val/test fractions of the seeded split of names not in ``splits/<split>.txt``.
        augment: Random D4 transforms on the training split, identical across dates.
        batch_size: Samples per batch.
        num_workers: Data-loading worker processes.
        ignore_index: Label value for pixels without valid input at any date.
        seed: Seed of the ratio split and of the augmentations.
        sensors: New sensors ``modalities`` may name (as for the backbone).
    """

    def __init__(
        self,
        data_root: str,
        modalities: Sequence[str],
        *,
        label_folder: str | None = "",
        layout: str = "geotiff",
        bands: Mapping[str, Sequence[str]] | None = None,
        file_bands: Mapping[str, Sequence[str]] | None = None,
        offsets: Mapping[str, float] | None = None,
        scales: Mapping[str, float] | None = None,
        num_classes: int | None = None,
        max_steps: int | None = None,
        split_ratio: Sequence[float] = (0.8, 0.1, 0.1),
        augment: bool = True,
        batch_size: int = 2,
        num_workers: int = 0,
        ignore_index: int = -1,
        seed: int = 0,
        sensors: list[SensorSpec] | None = None,
    ) -> None:
        super().__init__()
        if layout not in ("geotiff", "impactmesh"):
            raise InputError(f"layout must be 'geotiff' or 'impactmesh', got {layout!r}")
        if label_folder == "":
            label_folder = IMPACTMESH_LABEL if layout == "impactmesh" else "label"
        self.root, self.label_folder = Path(data_root), label_folder
        self.max_steps, self.split_ratio, self.augment = max_steps, tuple(split_ratio), augment
        self.num_classes = num_classes
        self.batch_size, self.num_workers, self.ignore_index, self.seed = (
            batch_size,
            num_workers,
            ignore_index,
            seed,
        )
        with using_catalog(with_sensors(sensors)):
            self.inputs = modality_inputs(
                modalities, bands or {}, file_bands or {}, offsets or {}, scales or {}
            )
        self.datasets: dict[str, SeriesDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        """Find the samples and split them (every folder and file-name check runs here)."""
        samples = find_samples(self.root, [m.name for m in self.inputs], self.label_folder)
        for split, chosen in self._split(samples).items():
            self.datasets[split] = SeriesDataset(
                chosen,
                self.inputs,
                max_steps=self.max_steps,
                ignore_index=self.ignore_index,
                augment=self.augment and split == "train",
                seed=self.seed,
                num_classes=self.num_classes,
            )

    def _split(self, samples: Sequence[SeriesSample]) -> dict[str, list[SeriesSample]]:
        """Named splits from ``splits/<split>.txt``; the rest split by ``split_ratio`` (seeded)."""
        by_name = {s.name: s for s in samples}
        out: dict[str, list[SeriesSample]] = {}
        for split in SPLITS:
            listed = self.root / "splits" / f"{split}.txt"
            if listed.is_file():
                names = [n.strip() for n in listed.read_text().splitlines() if n.strip()]
                unknown = [n for n in names if n not in by_name]
                if unknown:
                    raise InputError(f"{str(listed)!r} names samples that do not exist: {unknown[:5]}")
                out[split] = [by_name[n] for n in names]
        rest = [s for s in samples if not any(s in v for v in out.values())]
        random.Random(self.seed).shuffle(rest)
        start = 0
        for split, fraction in zip(SPLITS[:3], self.split_ratio, strict=False):
            count = round(fraction * len(rest))
            out.setdefault(split, rest[start : start + count])
            start += count
        out.setdefault("predict", list(samples))
        return out

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[dict[str, Any]]:
        if split not in self.datasets:
            self.setup()
        dataset = self.datasets[split]
        if not len(dataset):
            raise InputError(
                f"the {split} split of {str(self.root)!r} is empty: add samples or splits/{split}.txt"
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_series,
        )
