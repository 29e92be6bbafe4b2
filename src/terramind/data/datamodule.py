"""A multimodal GeoTIFF datamodule for fine-tuning: one folder per modality, a label folder, matching names.

Layout (every folder name and file suffix can be configured; ``{split}`` in a folder name selects the
split by folder instead of by split file)::

    data_root/S2L2A/<id>.tif   data_root/S1RTC/<id>.tif   data_root/label/<id>.tif
    data_root/splits/{train,val,test}.txt   (one id or file name per line; else a seeded ratio split)

Samples are standardised with the catalog's v1 statistics (:func:`terramind.modalities.standardize`),
nodata and non-finite pixels become 0 (the band mean) and the label there becomes ``ignore_index``, and
class maps given as inputs (LULC) stay class ids, nodata becoming class 0 ("no data"). LULC and NDVI enter
the model as tokenizer ids; :class:`terramind.finetune.Backbone` tokenizes what this module reads. Training
samples get one random D4 transform (rotation by k·90° and an optional flip) applied to every
modality and the label alike. Every check that can fail — unknown modality or band, files missing in one
folder, misaligned grids, label values outside ``num_classes``, an empty split — runs in ``setup``, before
the first training step, and names the files involved.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from terramind.core.errors import InputError, ModalityError, TerraMindError
from terramind.data.geotiff import open_georef, read_raster
from terramind.modalities import band_indices, get_modality, standardize

LABEL = "label"
SPLITS = ("train", "val", "test", "predict")
TaskKind = Literal["segmentation", "regression", "classification", "multilabel"]
_SHOW = 5  # names listed in an error before "... and N more"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(sorted(names)[:_SHOW])
    return shown + (f" ... and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def d4(arrays: Sequence[torch.Tensor], k: int, flip: bool) -> list[torch.Tensor]:
    """Apply one element of the dihedral group D4 to every array (rotate k·90° in (H, W), then flip W)."""
    out = [torch.rot90(a, k, dims=(-2, -1)) for a in arrays]
    return [a.flip(-1) for a in out] if flip else out


@dataclass(frozen=True)
class ModalityInput:
    """How one modality is read: which bands the model gets, out of which bands the file holds."""

    name: str
    bands: tuple[str, ...]
    index: tuple[int, ...]  # positions of ``bands`` among the file's bands
    file_band_count: int
    offset: float
    scale: float = 1.0


def modality_inputs(
    modalities: Sequence[str],
    bands: Mapping[str, Sequence[str]],
    file_bands: Mapping[str, Sequence[str]],
    offsets: Mapping[str, float],
    scales: Mapping[str, float],
) -> list[ModalityInput]:
    """Resolve modality names and band subsets up front, so that a typo fails at configuration time.

    Args:
        modalities: Modality names.
        bands: Per modality, the bands the model uses (default: all file bands).
        file_bands: Per modality, the bands the files hold (default: the modality's full set, in order).
        offsets: Per modality, the mean offset of :func:`terramind.modalities.standardize`.
        scales: Per modality, a factor applied to raw values before standardising.

    Returns:
        One :class:`ModalityInput` per modality.
    """
    unknown = [k for k in [*bands, *file_bands, *offsets, *scales] if k not in modalities]
    if unknown:
        raise ModalityError(f"bands/file_bands/offsets/scales name {unknown}, not in {list(modalities)}")
    out = []
    for name in modalities:
        spec = get_modality(name)
        if not spec.is_image:
            raise ModalityError(
                f"{spec.name} is not a raster modality: it cannot be read from GeoTIFF folders"
            )
        in_file = list(file_bands.get(name, spec.bands))
        band_indices(spec, in_file)  # raises on names that are not the modality's bands
        wanted = list(bands.get(name, in_file))
        missing = [b for b in wanted if b.upper() not in [f.upper() for f in in_file]]
        if missing:
            raise ModalityError(f"{spec.name}: bands {missing} are not among the file's bands {in_file}")
        index = tuple([f.upper() for f in in_file].index(b.upper()) for b in wanted)
        offset, scale = float(offsets.get(name, 0.0)), float(scales.get(name, 1.0))
        out.append(ModalityInput(name, tuple(wanted), index, len(in_file), offset, scale))
    return out


def prepare_input(
    mod: ModalityInput, data: np.ndarray, nodata: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Standardise the model's bands of one modality; nodata and non-finite pixels become 0 (the mean).

    Args:
        mod: How the modality is read.
        data: ``(C, H, W)`` raw values of ``mod.bands`` (already selected from the file's bands).
        nodata: The file's nodata value.

    Returns:
        ``(x, invalid)``: float32 ``(C, H, W)`` standardised values (class ids for a categorical modality,
        invalid pixels class 0) and the ``(H, W)`` mask of pixels invalid in any band.

    Raises:
        InputError: Class ids that are fractional or outside the modality's classes.
    """
    data = data.astype(np.float32)
    invalid = ~np.isfinite(data)
    if nodata is not None:
        invalid |= data == np.float32(nodata)
    classes = get_modality(mod.name).classes
    if classes is not None:
        ids = np.where(invalid, 0.0, np.nan_to_num(data))
        if (ids != np.round(ids)).any() or ids.min() < 0 or ids.max() >= len(classes):
            raise InputError(
                f"{mod.name} class ids must be whole numbers 0-{len(classes) - 1}, found "
                f"[{ids.min():g}, {ids.max():g}]; remap the classes or set the file's nodata"
            )
        return ids, invalid.any(axis=0)
    x = standardize(mod.name, np.nan_to_num(data) * mod.scale, bands=mod.bands, offset=mod.offset)
    x[invalid] = 0.0  # standardised 0 is the band mean: the least surprising fill
    return x, invalid.any(axis=0)


class GeoTiffDataset(Dataset[dict[str, Any]]):
    """Samples of one split: standardised inputs per modality, the label (if any) and the source path.

    Args:
        paths: Per sample, a mapping of modality name (and ``"label"``) to its file.
        inputs: How to read each modality.
        task: Kind of label.
        labels: Per-sample labels for classification (class id or multi-hot), else None.
        num_classes: Classes, for multi-hot labels.
        ignore_index: Label value for pixels to ignore.
        label_nodata: Label value in the files meaning "no label" (becomes ``ignore_index``).
        augment: Apply a random D4 transform.
        crop_size: Random square crop (training) of this size, None for the whole tile.
    """

    def __init__(
        self,
        paths: Sequence[Mapping[str, Path]],
        inputs: Sequence[ModalityInput],
        *,
        task: TaskKind = "segmentation",
        labels: Sequence[Any] | None = None,
        num_classes: int | None = None,
        ignore_index: int = -1,
        label_nodata: float | None = None,
        augment: bool = False,
        crop_size: int | None = None,
    ) -> None:
        self.paths, self.inputs, self.task, self.labels = list(paths), list(inputs), task, labels
        self.num_classes, self.ignore_index, self.label_nodata = num_classes, ignore_index, label_nodata
        self.augment, self.crop_size = augment, crop_size

    def __len__(self) -> int:
        return len(self.paths)

    def _read_input(self, mod: ModalityInput, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        raster = read_raster(path, allow_nonfinite=True)
        if raster.data.shape[0] != mod.file_band_count:
            raise InputError(
                f"{str(path)!r} has {raster.data.shape[0]} bands but {mod.name} files should have "
                f"{mod.file_band_count} (set file_bands to the bands the files hold)"
            )
        try:
            x, invalid = prepare_input(mod, raster.data[list(mod.index)], raster.georef.nodata)
        except InputError as err:
            raise InputError(f"{str(path)!r}: {err}") from None
        return torch.from_numpy(x), torch.from_numpy(invalid)

    def _read_label(self, index: int, invalid: torch.Tensor) -> torch.Tensor | None:
        if self.labels is not None:
            return _class_label(self.labels[index], self.task, self.num_classes)
        path = self.paths[index].get(LABEL)
        if path is None:
            return None
        data = read_raster(path, allow_nonfinite=True).data
        if self.task == "regression":
            label = torch.from_numpy(data.astype(np.float32))
            label[:, invalid] = float("nan")
            return label
        bad = ~np.isfinite(data) | invalid.numpy()[None]
        if self.label_nodata is not None:
            bad |= data == self.label_nodata
        ids = np.where(bad, self.ignore_index, np.nan_to_num(data).astype(np.int64))[0]
        return torch.from_numpy(ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        paths = self.paths[index]
        read = {m.name: self._read_input(m, paths[m.name]) for m in self.inputs}
        invalid = torch.stack([v for _, v in read.values()]).any(dim=0)
        tensors = {name: x for name, (x, _) in read.items()}
        label = self._read_label(index, invalid)
        if self.augment or self.crop_size:
            tensors, label = self._transform(tensors, label)
        sample: dict[str, Any] = {"inputs": tensors, "path": str(paths[self.inputs[0].name])}
        if label is not None:
            sample["label"] = label
        return sample

    def _transform(
        self, tensors: dict[str, torch.Tensor], label: torch.Tensor | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        dense = label is not None and label.ndim >= 2
        arrays = [*tensors.values(), *([label] if dense and label is not None else [])]
        if self.crop_size:
            h, w = arrays[0].shape[-2:]
            top, left = random.randint(0, h - self.crop_size), random.randint(0, w - self.crop_size)
            arrays = [a[..., top : top + self.crop_size, left : left + self.crop_size] for a in arrays]
        if self.augment:
            arrays = d4(arrays, random.randrange(4), random.random() < 0.5)
        out = dict(zip(tensors, arrays, strict=False))
        return {k: v.contiguous() for k, v in out.items()}, (arrays[-1].contiguous() if dense else label)


def _class_label(value: Any, task: TaskKind, num_classes: int | None) -> torch.Tensor:
    if task == "multilabel":
        hot = torch.zeros(num_classes or 0)
        hot[list(value)] = 1.0
        return hot
    return torch.tensor(int(value))


def match_files(
    folders: Mapping[str, Path], suffixes: Mapping[str, str] | None = None
) -> dict[str, dict[str, Path]]:
    """Pair the files of several folders by name.

    Args:
        folders: Key (modality or ``"label"``) -> folder.
        suffixes: Key -> file-name ending (default ``.tif``); the id is the name without it.

    Returns:
        Id -> {key: path}, sorted by id.

    Raises:
        InputError: A folder is missing or empty, or some ids lack a file in some folder (listed).
    """
    found: dict[str, dict[str, Path]] = {}
    for key, folder in folders.items():
        suffix = (suffixes or {}).get(key, ".tif")
        if not folder.is_dir():
            raise InputError(f"{key} folder {str(folder)!r} does not exist (set folders: {{{key}: ...}})")
        found[key] = {p.name[: -len(suffix)]: p for p in folder.iterdir() if p.name.endswith(suffix)}
        if not found[key]:
            raise InputError(f"{key} folder {str(folder)!r} has no files ending in {suffix!r}")
    all_ids = set().union(*(set(v) for v in found.values()))
    lacking = {key: sorted(all_ids - set(ids)) for key, ids in found.items()}
    problems = [
        f"{key} lacks {len(ids)} id(s) the other folders have: {_listing(ids)}"
        for key, ids in lacking.items()
        if ids
    ]
    if problems:
        raise InputError("files do not match across folders: " + "; ".join(problems))
    return {i: {key: found[key][i] for key in folders} for i in sorted(all_ids)}


def _read_class_file(path: Path, task: TaskKind) -> dict[str, Any]:
    """``id,label`` rows; multi-label rows list class ids separated by spaces (``id,1 4 7``)."""
    if not path.is_file():
        raise InputError(f"label file {str(path)!r} does not exist")
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    try:
        if task == "multilabel":
            return {r[0]: [int(v) for v in r[1].split()] for r in rows}
        return {r[0]: int(r[1]) for r in rows}
    except (IndexError, ValueError) as err:
        raise InputError(f"{str(path)!r}: rows must be 'id,class' (multi-label: 'id,1 4 7'): {err}") from err


class GeoTiffDataModule(L.LightningDataModule):
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
        seed: Seed of the ratio split.
        check_labels: Scan every label file for values outside ``num_classes`` in ``setup``.
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
    ) -> None:
        super().__init__()
        if not modalities:
            raise ModalityError("modalities is empty: name at least one input modality (e.g. [S2L2A])")
        if task in ("segmentation", "classification", "multilabel") and not num_classes:
            raise TerraMindError(f"a {task} task needs num_classes")
        self.root = Path(data_root).expanduser()
        self.inputs = modality_inputs(modalities, bands or {}, file_bands or {}, offsets or {}, scales or {})
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
        self.batch_size, self.num_workers = batch_size, num_workers
        self.datasets: dict[str, GeoTiffDataset] = {}

    @property
    def _dense_labels(self) -> bool:
        return self.task in ("segmentation", "regression")

    def _folder(self, key: str, split: str) -> Path:
        return self.root / self.folders[key].format(split=self.split_folders[split])

    def _index(self, split: str, with_labels: bool) -> dict[str, dict[str, Path]]:
        """Id -> {modality/label: path} for the files of one split's folders; mismatches are errors."""
        keys = self.modalities + ([LABEL] if with_labels and self._dense_labels else [])
        return match_files({k: self._folder(k, split) for k in keys}, {k: self.suffixes[k] for k in keys})

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
                f"split file {str(path)!r} names {len(unknown)} id(s) without files: {_listing(unknown)}"
            )
        return out

    def _check_grids(self, split: str, paths: Sequence[Mapping[str, Path]]) -> None:
        for sample in paths:
            items = list(sample.items())
            ref = open_georef(items[0][1])
            for key, path in items[1:]:
                problem = ref.same_grid(open_georef(path))
                if problem:
                    raise InputError(
                        f"{split}: {key} file {str(path)!r} is off the grid of {str(items[0][1])!r}: "
                        f"{problem}"
                    )

    def _check_label_values(self, split: str, paths: Sequence[Mapping[str, Path]]) -> None:
        if self.task != "segmentation" or not self.check_labels or self.num_classes is None:
            return
        bad: dict[str, list[int]] = {}
        for sample in paths:
            if LABEL not in sample:
                continue
            values = np.unique(read_raster(sample[LABEL], allow_nonfinite=True).data)
            values = values[np.isfinite(values)]
            allowed = {self.ignore_index} | ({self.label_nodata} if self.label_nodata is not None else set())
            out = [int(v) for v in values if (v < 0 or v >= self.num_classes) and v not in allowed]
            if out:
                bad[str(sample[LABEL])] = out
        if bad:
            listed = "; ".join(f"{p}: {v}" for p, v in list(bad.items())[:_SHOW])
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
            table = _read_class_file(self.root / (self.label_file or "labels.csv"), self.task)
            missing = [i for i in ids if i not in table]
            if missing:
                raise InputError(
                    f"{split}: no class in the label file for {len(missing)} id(s): {_listing(missing)}"
                )
            labels = [table[i] for i in ids]
            self._check_class_values(split, labels)
        if not ids:
            raise InputError(
                f"the {split!r} split is empty: give a split file (splits: {{{split}: ...}}) or a "
                f"split_ratio with a share for it ({len(index)} ids found)"
            )
        paths = [index[i] for i in ids]
        self._check_grids(split, paths)
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
        )

    def _check_class_values(self, split: str, labels: Sequence[Any]) -> None:
        flat = [v for lab in labels for v in (lab if isinstance(lab, list) else [lab])]
        out = sorted({v for v in flat if not 0 <= v < (self.num_classes or 0)})
        if out:
            raise InputError(
                f"{split}: classes {out} are outside 0..{(self.num_classes or 0) - 1}: fix num_classes"
            )

    def setup(self, stage: str | None = None) -> None:
        """Index and check the splits a stage needs (fit: train + val; validate; test; predict)."""
        needed = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["predict"]}
        for split in needed.get(stage or "fit", ["train", "val"]):
            if split not in self.datasets:
                self.datasets[split] = self._build(split)

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[dict[str, Any]]:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(split, split))
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Return shuffled, augmented training batches."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Return validation batches."""
        return self._loader("val")

    def test_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Return test batches."""
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader[dict[str, Any]]:
        """Return prediction batches (labels not needed)."""
        return self._loader("predict")
