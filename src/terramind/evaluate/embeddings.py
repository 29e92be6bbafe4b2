"""Tile embeddings from a backbone: mean-pooled (one vector per tile) or per token, written with names.

The backbone is any module mapping ``{modality: (B, C, H, W)}`` to a list of per-block ``(B, N, D)``
tensors (e.g. :class:`terramind.finetune.Backbone`), passed in by the caller: this layer does not build
models. Outputs are ``.npy`` (the array, plus ``<file>.names.txt`` with one tile name per row) or
``.parquet`` (columns ``file`` and ``embedding``; needs pyarrow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from terramind.core.errors import InputError
from terramind.core.files import atomic_path, check_output_path
from terramind.core.optional import require
from terramind.data.padding import pad_to_multiple
from terramind.data.tiles import GeoTiffDataset, ModalityInput

Pooling = Literal["mean", "tokens"]
SUFFIXES = (".npy", ".parquet")


def fit_inputs(
    inputs: Mapping[str, torch.Tensor], *, resize: int | None = None, categorical: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Bring a batch ``{modality: (B, C, H, W)}`` of any size to a size the model takes.

    Two protocols: by default sides that are not multiples of 16 are mirror-padded at the bottom and right
    (:func:`terramind.data.padding.pad_to_multiple`, the way ``generate`` handles any size); with
    ``resize`` every input is resampled to ``resize x resize`` (bilinear for values, nearest for the class
    ids of ``categorical`` modalities), the protocol that upsamples small patches (e.g. 120 px BigEarthNet
    or 64 px EuroSAT) to the 224 px the model was pretrained on.

    Args:
        inputs: Standardized inputs by modality (class ids for categorical ones).
        resize: Target side in pixels (a multiple of 16), or None to pad.
        categorical: Modalities holding class ids.

    Returns:
        The inputs, padded or resized, on the device and with the dtype they came with.
    """
    classes = set(categorical)
    out = {}
    for name, x in inputs.items():
        if resize is not None:
            mode = "nearest" if name in classes else "bilinear"
            extra = {} if mode == "nearest" else {"align_corners": False}
            y = torch.nn.functional.interpolate(x.float(), size=(resize, resize), mode=mode, **extra)
            out[name] = y.to(x.dtype)
        else:
            padded, _ = pad_to_multiple(x.cpu().numpy())
            out[name] = torch.from_numpy(padded).to(x.device)
    return out


@torch.no_grad()
def embed_batches(
    backbone: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    pooling: Pooling = "mean",
    layer: int = -1,
) -> np.ndarray:
    """Embed batches of standardized inputs.

    Args:
        backbone: Module returning one ``(B, N, D)`` tensor per block.
        batches: ``{modality: (B, C, H, W)}`` dicts.
        pooling: ``mean`` over tokens -> ``(n, D)``; ``tokens`` keeps them -> ``(n, N, D)``.
        layer: Which block's output (default the last, which is normalised).

    Returns:
        Float32 array of all samples in order.
    """
    was_training = backbone.training
    backbone.eval()
    out = []
    for inputs in batches:
        tokens = backbone(dict(inputs))[layer]  # (B, N, D)
        out.append((tokens.mean(dim=1) if pooling == "mean" else tokens).float().cpu().numpy())
    backbone.train(was_training)
    if not out:
        raise InputError("no samples to embed")
    return np.concatenate(out)


def embed_files(
    backbone: nn.Module,
    files: Sequence[Mapping[str, Path]],
    inputs: Sequence[ModalityInput],
    *,
    pooling: Pooling = "mean",
    layer: int = -1,
    batch_size: int = 8,
) -> np.ndarray:
    """Embed GeoTIFF tiles (one file per modality and tile), standardised as for fine-tuning.

    Args:
        backbone: Module returning per-block tokens.
        files: Per tile, modality -> file.
        inputs: How each modality is read (from :func:`terramind.data.tiles.modality_inputs`).
        pooling: ``mean`` or ``tokens``.
        layer: Which block's output.
        batch_size: Tiles per forward pass.

    Returns:
        ``(n, D)`` or ``(n, N, D)`` float32 array in the order of ``files``.
    """
    loader: DataLoader[dict[str, Any]] = DataLoader(GeoTiffDataset(files, inputs), batch_size=batch_size)
    return embed_batches(backbone, (b["inputs"] for b in loader), pooling=pooling, layer=layer)


def write_embeddings(
    path: str | Path, names: Sequence[str], embeddings: np.ndarray, overwrite: bool = True
) -> Path:
    """Write embeddings with their tile names (``.npy`` + ``.names.txt`` sidecar, or ``.parquet``).

    Raises:
        InputError: For another suffix, or a name count that differs from the rows.
    """
    out = check_output_path(path, overwrite=overwrite)
    if len(names) != len(embeddings):
        raise InputError(f"{len(names)} names for {len(embeddings)} embeddings")
    if out.suffix == ".npy":
        with atomic_path(out, overwrite=overwrite, verify=_npy_check(embeddings.shape)) as tmp:
            np.save(tmp, embeddings)
        with atomic_path(_names_path(out), overwrite=overwrite) as tmp:
            tmp.write_text("".join(f"{n}\n" for n in names))
        return out
    if out.suffix == ".parquet":
        pa = require("pyarrow", "embed")
        pq = require("pyarrow.parquet", "embed")
        table = pa.table({"file": list(names), "embedding": [row.reshape(-1).tolist() for row in embeddings]})
        table = table.replace_schema_metadata({"shape": ",".join(map(str, embeddings.shape[1:]))})
        with atomic_path(out, overwrite=overwrite, verify=pq.read_metadata) as tmp:  # the footer is last
            pq.write_table(table, tmp)
        return out
    raise InputError(f"embedding output must end in {' or '.join(SUFFIXES)}, got {out.name!r}")


def _npy_check(shape: tuple[int, ...]) -> Callable[[Path], None]:
    """Verify a written ``.npy``: memory-mapping checks its length against the header, then its shape."""

    def check(path: Path) -> None:
        found = np.load(path, mmap_mode="r").shape
        if found != shape:
            raise InputError(f"holds shape {found}, expected {shape}")

    return check


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read what :func:`write_embeddings` wrote: ``(names, embeddings)``.

    Raises:
        InputError: Missing or unreadable file or sidecar, unknown suffix, an array that is not
            ``(n, D)`` or ``(n, N, D)`` of real numbers, or names and rows that differ in number (each
            message names the file).
    """
    src = Path(path)
    if not src.is_file():
        raise InputError(f"embedding file {str(src)!r} does not exist")
    if src.suffix == ".npy":
        names, array = _read_npy(src)
    elif src.suffix == ".parquet":
        names, array = _read_parquet(src)
    else:
        raise InputError(f"embedding file must end in {' or '.join(SUFFIXES)}, got {src.name!r}")
    if array.ndim not in (2, 3) or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(
            f"{str(src)!r} holds a {array.dtype} array of shape {array.shape}: embeddings are (tiles, D) or "
            f"(tiles, tokens, D) real numbers, as `terramind embed` writes them"
        )
    if len(names) != len(array):
        raise InputError(
            f"{str(src)!r}: {len(names)} names (in {_names_path(src).name}) for {len(array)} embeddings"
            if src.suffix == ".npy"
            else f"{str(src)!r}: {len(names)} names for {len(array)} embeddings"
        )
    return names, array


def _read_npy(src: Path) -> tuple[list[str], np.ndarray]:
    names_file = _names_path(src)
    if not names_file.is_file():
        raise InputError(f"{str(names_file)!r} (the tile names of {src.name}) is missing")
    try:
        array = np.load(src, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        # numpy's own text may advise loading pickles, which is never right for a file of unknown origin
        raise InputError(
            f"{str(src)!r} is not an embeddings file (a .npy array of numbers, as `terramind embed` writes): "
            "write it again"
        ) from None
    return names_file.read_text().splitlines(), array


def _read_parquet(src: Path) -> tuple[list[str], np.ndarray]:
    pq = require("pyarrow.parquet", "embed")
    try:
        table = pq.read_table(src)
        shape = tuple(int(s) for s in table.schema.metadata[b"shape"].decode().split(","))
        names = table.column("file").to_pylist()
        array = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32).reshape(-1, *shape)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(
            f"{str(src)!r} is not an embedding table as `terramind embed` writes it ({err}): write it again"
        ) from None
    return names, array


def _names_path(path: Path) -> Path:
    return path.with_suffix(".names.txt")
