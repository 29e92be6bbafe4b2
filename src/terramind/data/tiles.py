"""GeoTIFF tiles as samples, without Lightning: folders matched by name, inputs standardised.

One folder per modality (and a label folder) with matching file names, e.g.
``data_root/S2L2A/<id>.tif``, ``data_root/S1RTC/<id>.tif``, ``data_root/label/<id>.tif``.
:func:`match_files` pairs them, :func:`modality_inputs` resolves modality and band names up front, and
:class:`GeoTiffDataset` reads one sample. The Lightning datamodule that adds splits on top lives in
:mod:`terramind.finetune.datamodule`; this module imports no Lightning, so ``embed`` and the evaluation
code work on a base install.

Samples are standardised with the catalog's v1 statistics (:func:`terramind.modalities.standardize`),
nodata and non-finite pixels become 0 (the band mean) and the label there becomes ``ignore_index``, and
class maps given as inputs (LULC) stay class ids, nodata becoming class 0 ("no data"). LULC and NDVI enter
the model as tokenizer ids; :class:`terramind.finetune.Backbone` tokenizes what this module reads. Training
samples get one random D4 transform (rotation by k·90° and an optional flip) applied to every
modality and the label alike.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from terramind.core.errors import InputError, ModalityError, TerraMindError
from terramind.data.geotiff import GeoRef, Raster, band_positions, open_georef, read_raster
from terramind.modalities import ModalitySpec, band_indices, get_modality, standardize

log = logging.getLogger(__name__)

LABEL = "label"
SPLITS = ("train", "val", "test", "predict")
TaskKind = Literal["segmentation", "regression", "classification", "multilabel"]
SHOW = 5  # names listed in an error before "... and N more"


def listing(names: Sequence[str]) -> str:
    """Return the first few names, sorted, then "... and N more" (for error messages)."""
    shown = ", ".join(sorted(names)[:SHOW])
    return shown + (f" ... and {len(names) - SHOW} more" if len(names) > SHOW else "")


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
    file_bands: tuple[str, ...] = ()  # the bands files without band names hold, in order
    spec: ModalitySpec | None = None  # the record, resolved up front: a registered sensor needs no scope

    @property
    def record(self) -> ModalitySpec:
        """The modality's catalog record (held, so reading works outside a ``using_catalog`` block)."""
        return self.spec or get_modality(self.name)


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
        out.append(
            ModalityInput(name, tuple(wanted), index, len(in_file), offset, scale, tuple(in_file), spec)
        )
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
    classes = mod.record.classes
    if classes is not None:
        ids = np.where(invalid, 0.0, np.nan_to_num(data))
        if (ids != np.round(ids)).any() or ids.min() < 0 or ids.max() >= len(classes):
            raise InputError(
                f"{mod.name} class ids must be whole numbers 0-{len(classes) - 1}, found "
                f"[{ids.min():g}, {ids.max():g}]; remap the classes or set the file's nodata"
            )
        return ids, invalid.any(axis=0)
    x = standardize(mod.record, np.nan_to_num(data) * mod.scale, bands=mod.bands, offset=mod.offset)
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
        seed: Seed of the crops and flips: each data-loading worker draws from its own generator, seeded
            from ``seed``, the worker id and :attr:`epoch`; the global random state is never touched. A
            generator lives as long as its worker: with persistent workers (as the datamodule uses) or
            none, draws continue from epoch to epoch; with workers re-created each epoch, set ``epoch``.
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
        seed: int = 0,
    ) -> None:
        self.paths, self.inputs, self.task, self.labels = list(paths), list(inputs), task, labels
        self.num_classes, self.ignore_index, self.label_nodata = num_classes, ignore_index, label_nodata
        self.augment, self.crop_size, self.seed, self.epoch = augment, crop_size, seed, 0
        self._generators: dict[tuple[int, int], torch.Generator] = {}

    def generator(self) -> torch.Generator:
        """Return the random generator of the calling worker for the current epoch (created on first use)."""
        info = get_worker_info()
        key = (info.id if info is not None else -1, self.epoch)
        if key not in self._generators:
            state = np.random.SeedSequence([self.seed, self.epoch, key[0] + 1]).generate_state(1)[0]
            self._generators[key] = torch.Generator().manual_seed(int(state))
        return self._generators[key]

    def __len__(self) -> int:
        return len(self.paths)

    def _read_input(self, mod: ModalityInput, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        raster = read_raster(
            path, mod.record, bands=mod.bands, file_bands=mod.file_bands or None, allow_nonfinite=True
        )
        try:
            x, invalid = prepare_input(mod, raster.data, raster.georef.nodata)
        except InputError as err:
            raise InputError(f"{str(path)!r}: {err}") from None
        return torch.from_numpy(x), torch.from_numpy(invalid)

    def _read_label(self, index: int, invalid: torch.Tensor) -> torch.Tensor | None:
        if self.labels is not None:
            return _class_label(self.labels[index], self.task, self.num_classes)
        path = self.paths[index].get(LABEL)
        if path is None:
            return None
        data = read_label(path, integer=self.task != "regression").data
        if data.shape[-2:] != tuple(invalid.shape):
            raise InputError(
                f"label {str(path)!r} is {data.shape[-1]}x{data.shape[-2]} but its inputs are "
                f"{invalid.shape[-1]}x{invalid.shape[-2]}: labels must be on the inputs' grid"
            )
        if self.task == "regression":
            label = torch.from_numpy(data.astype(np.float32))
            label[:, invalid] = float("nan")
            return label
        bad = ~np.isfinite(data) | invalid.numpy()[None]
        if self.label_nodata is not None:
            bad |= data == self.label_nodata
        ids = np.where(bad, self.ignore_index, np.nan_to_num(data).astype(np.int64))[0]
        _check_classes(ids, self.num_classes, self.ignore_index, path)
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
        g = self.generator()
        if self.crop_size:
            h, w = arrays[0].shape[-2:]
            top = int(torch.randint(0, h - self.crop_size + 1, (), generator=g))
            left = int(torch.randint(0, w - self.crop_size + 1, (), generator=g))
            arrays = [a[..., top : top + self.crop_size, left : left + self.crop_size] for a in arrays]
        if self.augment:
            k, flip = (int(v) for v in torch.randint(0, 4, (2,), generator=g))
            arrays = d4(arrays, k, flip % 2 == 1)
        out = dict(zip(tensors, arrays, strict=False))
        return {k: v.contiguous() for k, v in out.items()}, (arrays[-1].contiguous() if dense else label)


def read_label(path: Path, *, integer: bool = True) -> Raster:
    """Read a one-band label raster; class labels must hold whole numbers.

    Args:
        path: The label GeoTIFF.
        integer: Class labels (whole numbers); False for regression targets.

    Returns:
        The raster: ``(1, H, W)`` values in the file's dtype (NaN left in place for the caller to mask).

    Raises:
        InputError: Not one band, a complex or boolean raster, or fractional class values (counted).
    """
    raster = read_raster(path, allow_nonfinite=True)
    data = raster.data
    if data.shape[0] != 1:
        raise InputError(
            f"label {str(path)!r} has {data.shape[0]} bands; a label has one: write the band that holds "
            f"the labels on its own"
        )
    if np.issubdtype(data.dtype, np.complexfloating) or data.dtype == np.bool_:
        raise InputError(
            f"label {str(path)!r} is {data.dtype}: write labels as integers (or floats for regression)"
        )
    if integer and np.issubdtype(data.dtype, np.floating):
        finite = data[np.isfinite(data)]
        fractional = finite[finite != np.round(finite)]
        if fractional.size:
            raise InputError(
                f"label {str(path)!r} has {fractional.size} fractional value(s) "
                f"(e.g. {float(fractional[0]):g}): class labels are whole numbers; write the classes, "
                f"not probabilities or resampled values"
            )
    return raster


def _check_classes(ids: np.ndarray, num_classes: int | None, ignore_index: int, path: Path) -> None:
    """Refuse class ids outside ``0..num_classes-1`` (``ignore_index`` aside), naming the file and values."""
    if num_classes is None:
        return
    values, counts = np.unique(ids[ids != ignore_index], return_counts=True)
    out = [(int(v), int(c)) for v, c in zip(values, counts, strict=True) if v < 0 or v >= num_classes]
    if out:
        listed = ", ".join(f"{v} ({c} px)" for v, c in out[:SHOW])
        raise InputError(
            f"label {str(path)!r} holds classes outside 0..{num_classes - 1}: {listed}; fix num_classes, "
            f"ignore_index or label_nodata"
        )


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples of one tile size; tiles of different sizes are an error naming both files.

    Raises:
        InputError: Two samples of the batch differ in size.
    """
    first = samples[0]
    for sample in samples[1:]:
        for name, x in sample["inputs"].items():
            ref = first["inputs"][name]
            if x.shape != ref.shape:
                raise InputError(
                    f"tiles of different sizes in one batch: {first['path']!r} is "
                    f"{ref.shape[-1]}x{ref.shape[-2]}, {sample['path']!r} is {x.shape[-1]}x{x.shape[-2]}; "
                    f"make every tile of a folder one size (or set crop_size)"
                )
    return dict(default_collate(list(samples)))


def _class_label(value: Any, task: TaskKind, num_classes: int | None) -> torch.Tensor:
    if task == "multilabel":
        hot = torch.zeros(num_classes or 0)
        hot[list(value)] = 1.0
        return hot
    return torch.tensor(int(value))


def match_files(
    folders: Mapping[str, Path], suffixes: Mapping[str, str] | None = None, *, skip_bad: bool = False
) -> dict[str, dict[str, Path]]:
    """Pair the files of several folders by name.

    Args:
        folders: Key (modality or ``"label"``) -> folder.
        suffixes: Key -> file-name ending (default ``.tif``); the id is the name without it.
        skip_bad: Skip ids that lack a file in some folder (logged with the reason) instead of refusing.

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
        f"{key} lacks {len(ids)} id(s) the other folders have: {listing(ids)}"
        for key, ids in lacking.items()
        if ids
    ]
    if problems and not skip_bad:
        raise InputError("files do not match across folders: " + "; ".join(problems) + " (or skip_bad)")
    skipped = [Skipped(i, f"no {key} file") for key, ids in lacking.items() for i in ids]
    report_skipped(skipped)
    keep = sorted(all_ids - {s.name for s in skipped})
    if not keep:
        raise InputError("no id has a file in every folder: " + "; ".join(problems))
    return {i: {key: found[key][i] for key in folders} for i in keep}


@dataclass(frozen=True)
class Skipped:
    """A tile left out by ``skip_bad``.

    Attributes:
        name: Tile id (or file).
        reason: What is wrong with it.
    """

    name: str
    reason: str


def report_skipped(skipped: Sequence[Skipped]) -> None:
    """Log the skipped tiles with their reasons (one warning listing them all)."""
    if skipped:
        lines = "".join(f"\n  {s.name}: {s.reason}" for s in skipped)
        log.warning("skipped %d bad tile(s):%s", len(skipped), lines)


def _check_tile(name: str, files: Mapping[str, Path], inputs: Sequence[ModalityInput], read: bool) -> None:
    """Header checks of one tile: readable, band names/count, all modalities on one grid; pixels if read."""
    mods = {m.name: m for m in inputs}
    first: tuple[str, GeoRef] | None = None
    for key, path in files.items():
        georef = open_georef(path)
        if key in mods:
            band_positions(georef, path, mods[key].record, mods[key].bands, mods[key].file_bands or None)
        if first is None:
            first = (str(path), georef)
        elif problem := first[1].same_grid(georef):
            raise InputError(
                f"tile {name!r}: {str(path)!r} is not on the grid of {first[0]!r} ({problem}); "
                f"reproject the inputs of a tile onto one grid (e.g. gdalwarp)"
            )
    if read:
        GeoTiffDataset([files], inputs)[0]


def check_tiles(
    files: Mapping[str, Mapping[str, Path]],
    inputs: Sequence[ModalityInput],
    *,
    skip_bad: bool = False,
    read: bool = False,
) -> tuple[dict[str, dict[str, Path]], list[Skipped]]:
    """Check every tile of a folder before the model loads, as one unit.

    Each tile's files must open, hold the modality's bands, and lie on one grid (CRS, transform, size).
    Without ``skip_bad`` the first bad tile stops everything, named with its reason; with it, bad tiles are
    left out, and their pixels are read too (so that truncated files or refused values are found now).

    Args:
        files: Tile id -> key (modality or ``"label"``) -> file, e.g. from :func:`match_files`.
        inputs: How each modality is read.
        skip_bad: Leave bad tiles out (logged with reasons at the end) instead of refusing.
        read: Read every tile's pixels now, also without ``skip_bad``.

    Returns:
        ``(good tiles, skipped tiles)``.

    Raises:
        InputError: A bad tile (without ``skip_bad``), or no good tile at all.
    """
    good: dict[str, dict[str, Path]] = {}
    skipped: list[Skipped] = []
    for name, tile in files.items():
        try:
            _check_tile(name, tile, inputs, read or skip_bad)
        except TerraMindError as err:
            if not skip_bad:
                raise
            skipped.append(Skipped(name, str(err)))
            continue
        good[name] = dict(tile)
    report_skipped(skipped)
    if not good:
        raise InputError(
            f"none of the {len(files)} tile(s) is usable: {skipped[0].name}: {skipped[0].reason}"
        )
    return good, skipped


def read_class_file(path: Path, task: TaskKind) -> dict[str, Any]:
    """Read a classification label file.

    Args:
        path: CSV of ``id,label`` rows; multi-label rows list class ids separated by spaces (``id,1 4 7``).
        task: Kind of label.

    Returns:
        Id -> class id (or list of class ids).

    Raises:
        InputError: The file is missing or a row is malformed.
    """
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
