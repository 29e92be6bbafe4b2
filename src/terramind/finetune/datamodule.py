"""The Lightning datamodule of GeoTIFF folders: one folder per modality, a label folder, matching names.

Layout (every folder name and file suffix can be configured; ``{split}`` in a folder name selects the
split by folder instead of by split file)::

    data_root/S2L2A/<id>.tif   data_root/S1RTC/<id>.tif   data_root/label/<id>.tif
    data_root/splits/{train,val,test}.txt   (one id or file name per line; else a seeded ratio split)

Reading, standardising and augmenting samples is Lightning-free and lives in :mod:`terramind.data.tiles`
(so that ``embed`` and the evaluation code work on a base install); this module adds the split logic and
the Lightning hooks. Every check that can fail — unknown modality or band, files missing in one folder,
misaligned grids, label values outside ``num_classes``, an empty split — runs in ``setup``, before the
first training step, and names the files involved.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from terramind.core.errors import InputError, ModalityError, TerraMindError
from terramind.data.geotiff import open_georef
from terramind.data.tiles import (
    LABEL,
    SHOW,
    SPLITS,
    GeoTiffDataset,
    TaskKind,
    check_tiles,
    collate,
    listing,
    match_files,
    modality_inputs,
    read_class_file,
    read_label,
)
from terramind.modalities import SensorSpec, using_catalog, with_sensors


class SplitDataModule(L.LightningDataModule):
    """A data module whose four Lightning dataloaders are one ``_loader(split, shuffle)`` per split.

    Subclasses define ``_loader``; the training split is shuffled, the others are read in order.
    """

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[dict[str, Any]]:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Return shuffled training batches (augmented where the data module augments)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Return the validation batches."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Return the test batches."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Return the prediction batches (every sample of the predict split; labels not needed)."""
        return self._loader("predict")


class GeoTiffDataModule(SplitDataModule):
    """Fine-tuning data from folders of GeoTIFFs with matching file names.

    Args:
        data_root: Dataset folder.
        modalities: Input modalities, in the order the model takes them.
        num_classes: Classes (segmentation, classification); checked against the labels before training.
        task: ``segmentation``, ``regression``, ``classification`` or ``multilabel``.
        bands: Per modality, the bands the model uses (a subset, by name); default all file bands.
        file_bands: Per modality, the bands the files hold, in order, when not the modality's full set.
        folders: Folder (relative to ``data_root``) per modality and for ``"label"``; default the modality
            name and ``label``. ``{split}`` in a folder name is replaced by the split's folder name.
        suffixes: File-name ending per modality / ``"label"`` (default ``.tif``); the id is the name
            without it, and ids must match across folders.
        split_folders: With ``{split}`` folders: the folder name of each split (default the split name).
        splits: Split name -> file (relative to ``data_root``) listing ids or file names, one per line
            (first CSV column); splits without a file come from ``split_ratio``.
        split_ratio: Train/val/test fractions of a seeded random split of the ids not in split files.
        label_file: Classification: CSV of ``id,class`` rows (relative to ``data_root``).
        ignore_index: Label value ignored by loss and metrics.
        label_nodata: Value in label files meaning "no label" (mapped to ``ignore_index``).
        offsets: Per modality, a value added to the mean before standardising (S2 +1000 DN products).
        scales: Per modality, a factor applied to the raw values first (reflectance 0-1 -> DN: 10000).
        split_id_suffixes: File-name endings removed from split-file entries, besides the folders' own
            suffixes (when split files name files of a folder the config does not use).
        augment: Random D4 transforms on the training split.
        crop_size: Random square training crops of this size (multiple of 16).
        batch_size: Samples per batch.
        num_workers: Data-loading worker processes.
        seed: Seed of the ratio split and of the training crops and flips (per worker and epoch).
        check_labels: Scan every label file for values outside ``num_classes`` in ``setup``.
        skip_bad: Leave out tiles with a missing, unreadable or off-grid file (logged with the reasons)
            instead of refusing the dataset.
        sensors: New sensors that ``modalities`` may name (:class:`terramind.modalities.SensorSpec`, in
            YAML ``{name, bands, mean, std, unit}``; the backbone's list): their files are read with their
            band count and standardised with their mean/std. The default catalog is left unchanged.
    """

    def __init__(
        self,
        data_root: str,
        modalities: list[str],
        num_classes: int | None = None,
        *,
        task: TaskKind = "segmentation",
        bands: dict[str, list[str]] | None = None,
        file_bands: dict[str, list[str]] | None = None,
        folders: dict[str, str] | None = None,
        suffixes: dict[str, str] | None = None,
        split_folders: dict[str, str] | None = None,
        splits: dict[str, str] | None = None,
        split_ratio: tuple[float, float, float] = (0.8, 0.1, 0.1),
        label_file: str | None = None,
        ignore_index: int = -1,
        label_nodata: float | None = None,
        offsets: dict[str, float] | None = None,
        scales: dict[str, float] | None = None,
        split_id_suffixes: list[str] | None = None,
        augment: bool = True,
        crop_size: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        check_labels: bool = True,
        skip_bad: bool = False,
        sensors: list[SensorSpec] | None = None,
    ) -> None:
        super().__init__()
        if not modalities:
            raise ModalityError("modalities is empty: name at least one input modality (e.g. [S2L2A])")
        if task in ("segmentation", "classification", "multilabel") and not num_classes:
            raise TerraMindError(f"a {task} task needs num_classes")
        self.root = Path(data_root).expanduser()
        with using_catalog(with_sensors(sensors)):  # inputs hold their records: no scope needed later
            self.inputs = modality_inputs(
                modalities, bands or {}, file_bands or {}, offsets or {}, scales or {}
            )
        self.modalities = [m.name for m in self.inputs]
        self.task, self.num_classes = task, num_classes
        self.folders = {m: m for m in self.modalities} | {LABEL: LABEL} | dict(folders or {})
        self.suffixes = {k: ".tif" for k in self.folders} | dict(suffixes or {})
        self.split_folders = {s: s for s in SPLITS} | dict(split_folders or {})
        self.id_suffixes = sorted(
            {*self.suffixes.values(), *(split_id_suffixes or [])}, key=len, reverse=True
        )
        self.split_files, self.split_ratio, self.seed = dict(splits or {}), split_ratio, seed
        self.label_file, self.ignore_index, self.label_nodata = label_file, ignore_index, label_nodata
        self.augment, self.crop_size, self.check_labels = augment, crop_size, check_labels
        self.batch_size, self.num_workers, self.skip_bad = batch_size, num_workers, skip_bad
        self.datasets: dict[str, GeoTiffDataset] = {}

    @property
    def _dense_labels(self) -> bool:
        return self.task in ("segmentation", "regression")

    def _folder(self, key: str, split: str) -> Path:
        return self.root / self.folders[key].format(split=self.split_folders[split])

    def _index(self, split: str, with_labels: bool) -> dict[str, dict[str, Path]]:
        """Id -> {modality/label: path} for the files of one split's folders; mismatches are errors."""
        keys = self.modalities + ([LABEL] if with_labels and self._dense_labels else [])
        return match_files(
            {k: self._folder(k, split) for k in keys},
            {k: self.suffixes[k] for k in keys},
            skip_bad=self.skip_bad,
        )

    def _split_ids(self, split: str, ids: Sequence[str]) -> list[str]:
        if split in self.split_files:
            return self._read_split_file(split, ids)
        if any("{split}" in folder for folder in self.folders.values()):
            return list(ids)  # the split's own folders hold exactly its ids
        taken = {i for s in self.split_files for i in self._read_split_file(s, ids)}
        rest = sorted(set(ids) - taken)
        random.Random(self.seed).shuffle(rest)
        bounds = np.cumsum([0, *self.split_ratio]) * len(rest)
        position = ("train", "val", "test").index(split) if split != "predict" else 2
        return rest[round(bounds[position]) : round(bounds[position + 1])]

    def _read_split_file(self, split: str, ids: Sequence[str]) -> list[str]:
        path = self.root / self.split_files[split]
        if not path.is_file():
            raise InputError(f"split file {str(path)!r} for {split!r} does not exist")
        lines = [ln.split(",")[0].strip() for ln in path.read_text().splitlines() if ln.strip()]
        known, out = set(ids), []
        for line in lines:
            name = Path(line).name
            stem = next((name[: -len(s)] for s in self.id_suffixes if name.endswith(s)), name)
            out.append(stem)
        unknown = [i for i in out if i not in known]
        if unknown:
            raise InputError(
                f"split file {str(path)!r} names {len(unknown)} id(s) without files: {listing(unknown)}"
            )
        return out

    def _check_tiles(self, split: str, ids: list[str], index: Mapping[str, Mapping[str, Path]]) -> list[str]:
        """Every tile readable and on one grid, and (without crops) every tile of the split one size."""
        try:
            good, _ = check_tiles({i: index[i] for i in ids}, self.inputs, skip_bad=self.skip_bad)
        except InputError as err:
            raise InputError(f"{split}: {err}") from None
        if split != "train" or not self.crop_size:
            sizes = {i: open_georef(next(iter(good[i].values()))) for i in good}
            ref = next(iter(sizes))
            for i, georef in sizes.items():
                if (georef.width, georef.height) != (sizes[ref].width, sizes[ref].height):
                    raise InputError(
                        f"{split}: tiles differ in size: {str(next(iter(good[ref].values())))!r} is "
                        f"{sizes[ref].width}x{sizes[ref].height}, {str(next(iter(good[i].values())))!r} is "
                        f"{georef.width}x{georef.height}; make every tile one size (or set crop_size)"
                    )
        return [i for i in ids if i in good]

    def _check_label_values(self, split: str, paths: Sequence[Mapping[str, Path]]) -> None:
        if self.task != "segmentation" or not self.check_labels or self.num_classes is None:
            return
        bad: dict[str, list[int]] = {}
        for sample in paths:
            if LABEL not in sample:
                continue
            values = np.unique(read_label(sample[LABEL]).data)
            values = values[np.isfinite(values)]
            allowed = {self.ignore_index} | ({self.label_nodata} if self.label_nodata is not None else set())
            out = [int(v) for v in values if (v < 0 or v >= self.num_classes) and v not in allowed]
            if out:
                bad[str(sample[LABEL])] = out
        if bad:
            listed = "; ".join(f"{p}: {v}" for p, v in list(bad.items())[:SHOW])
            raise InputError(
                f"{split}: {len(bad)} label file(s) hold classes outside 0..{self.num_classes - 1} "
                f"(ignore_index {self.ignore_index}): {listed}; fix num_classes, ignore_index or label_nodata"
            )

    def _build(self, split: str) -> GeoTiffDataset:
        with_labels = split != "predict"
        index = self._index(split, with_labels)
        ids = self._split_ids(split, list(index))
        labels = None
        if not self._dense_labels and with_labels:
            table = read_class_file(self.root / (self.label_file or "labels.csv"), self.task)
            missing = [i for i in ids if i not in table]
            if missing:
                raise InputError(
                    f"{split}: no class in the label file for {len(missing)} id(s): {listing(missing)}"
                )
            labels = [table[i] for i in ids]
            self._check_class_values(split, labels)
        if not ids:
            raise InputError(
                f"the {split!r} split is empty: give a split file (splits: {{{split}: ...}}) or a "
                f"split_ratio with a share for it ({len(index)} ids found)"
            )
        ids = self._check_tiles(split, ids, index)
        paths = [index[i] for i in ids]
        self._check_label_values(split, paths)
        return GeoTiffDataset(
            paths,
            self.inputs,
            task=self.task,
            labels=labels,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            label_nodata=self.label_nodata,
            augment=self.augment and split == "train",
            crop_size=self.crop_size if split == "train" else None,
            seed=self.seed,
        )

    def _check_class_values(self, split: str, labels: Sequence[Any]) -> None:
        flat = [v for lab in labels for v in (lab if isinstance(lab, list) else [lab])]
        out = sorted({v for v in flat if not 0 <= v < (self.num_classes or 0)})
        if out:
            raise InputError(
                f"{split}: classes {out} are outside 0..{(self.num_classes or 0) - 1}: fix num_classes"
            )

    def _check_model(self) -> None:
        """Refuse a task whose num_classes or ignore_index differs from the data's (wrong labels)."""
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        hparams = getattr(module, "hparams", None) or {}
        for key, ours in (("num_classes", self.num_classes), ("ignore_index", self.ignore_index)):
            theirs = hparams.get(key)
            if theirs is not None and ours is not None and theirs != ours:
                raise InputError(
                    f"the model's {key} is {theirs} but the data's is {ours}: set the same value in the "
                    f"model and data sections of the config"
                )

    def setup(self, stage: str | None = None) -> None:
        """Index and check the splits a stage needs (fit: train + val; validate; test; predict)."""
        self._check_model()
        needed = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["predict"]}
        for split in needed.get(stage or "fit", ["train", "val"]):
            if split not in self.datasets:
                self.datasets[split] = self._build(split)

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[dict[str, Any]]:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(split, split))
        trainer = self.trainer
        self.datasets[split].epoch = int(trainer.current_epoch) if trainer is not None else 0
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
