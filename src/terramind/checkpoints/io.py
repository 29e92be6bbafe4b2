"""Reading weight files (torch pickle or safetensors), fetching them from the hub, and strict loading.

Every loader in the library goes through :func:`read_state_dict`, :func:`fetch` and :func:`load_into`, so
missing files, corrupt files, an offline hub and mismatched keys give the same specific, actionable errors.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from terramind.core.errors import CheckpointError

_SHOW = 8  # keys listed in an error message before "... and N more"


@dataclass(frozen=True)
class HubFile:
    """Where a released artefact lives on the Hugging Face hub."""

    repo_id: str
    filename: str
    revision: str | None = None
    sha256: str | None = None

    @property
    def url(self) -> str:
        """Direct download URL of the file."""
        return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision or 'main'}/{self.filename}"


@dataclass(frozen=True)
class LoadReport:
    """What happened when a state dict was loaded into a module."""

    missing: tuple[str, ...]  # model keys the checkpoint did not have
    unused: tuple[str, ...]  # checkpoint keys the model did not take
    mismatched: tuple[str, ...]  # "key: checkpoint (a, b) vs model (c, d)"

    @property
    def clean(self) -> bool:
        """True when every key matched exactly."""
        return not (self.missing or self.unused or self.mismatched)


def _listing(keys: tuple[str, ...]) -> str:
    more = f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def read_state_dict(
    path: str | os.PathLike[str], *, keep: Callable[[str], bool] | None = None
) -> dict[str, torch.Tensor]:
    """Read a flat state dict from a ``.pt``/``.pth``/``.ckpt`` (torch.save) or ``.safetensors`` file.

    A Lightning-style ``{"state_dict": {...}}`` wrapper is unwrapped. Loading never executes pickled code
    (``weights_only=True``). Torch files are memory-mapped when their format allows, so tensors that are
    left out (``keep``) never occupy memory.

    Args:
        path: The weights file.
        keep: Which keys to return (default: all); safetensors files do not even read the others.

    Raises:
        CheckpointError: If the file is missing, unreadable, or not a mapping of names to tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file {str(p)!r} does not exist: check the path passed as weights=")
    try:
        obj = _read_safetensors(p, keep) if p.suffix == ".safetensors" else _read_torch(p)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"cannot read weights file {str(p)!r} ({type(err).__name__}: {str(err)[:200]}); "
            f"the file is corrupt or not a PyTorch/safetensors checkpoint: download it again"
        ) from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{str(p)!r} does not hold a state dict (a mapping of names to tensors)")
    return {k: v for k, v in obj.items() if keep is None or keep(k)}


def _read_torch(path: Path) -> object:
    """``torch.load`` memory-mapped (zip format, torch >= 1.6), else read whole.

    Legacy files and file systems without mmap fall back to a plain read; a corrupt file fails there too.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        return torch.load(path, map_location="cpu", weights_only=True)


def _read_safetensors(path: Path, keep: Callable[[str], bool] | None) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as fh:
        keys = [k for k in fh.keys() if keep is None or keep(k)]  # noqa: SIM118
        return {k: fh.get_tensor(k) for k in keys}


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(hub: HubFile) -> Path:
    """Return the local path of a hub file, downloading it into the Hugging Face cache if needed.

    Raises:
        CheckpointError: When the hub cannot be reached (offline, ``HF_HUB_OFFLINE=1``) and the file is not
            cached, naming the URL to download and the ``weights=`` argument to pass instead; or when the
            file's checksum differs from the pinned one.
    """
    from huggingface_hub import hf_hub_download

    try:
        local = Path(hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision))
    except Exception as err:  # the hub raises many types (offline, HTTP, connection, gated repo)
        raise CheckpointError(
            f"cannot get {hub.filename} from the Hugging Face hub ({type(err).__name__}). Without network "
            f"(or with HF_HUB_OFFLINE=1), download {hub.url} yourself and pass its path as weights='PATH' "
            f"(CLI: --weights PATH)"
        ) from err
    if hub.sha256 is not None and sha256_of(local) != hub.sha256:
        raise CheckpointError(
            f"{local} does not match the published sha256 of {hub.filename}: delete it and download it again"
        )
    return local


def compare(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
    """Compare a state dict with a module's own keys and shapes, without loading anything."""
    own = module.state_dict()
    missing = tuple(k for k in own if k not in state_dict)
    unused = tuple(k for k in state_dict if k not in own)
    mismatched = tuple(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    )
    return LoadReport(missing, unused, mismatched)


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    allow_missing: bool = False,
    allow_unused: bool = False,
    what: str = "checkpoint",
    assign: bool = False,
) -> LoadReport:
    """Load ``state_dict`` into ``module``, failing loudly on anything that does not match.

    Shape mismatches always fail (they mean a checkpoint of another size or modality). Missing and unused
    keys fail unless explicitly allowed; either way they are reported.

    Args:
        module: The module to fill.
        state_dict: Tensors by the module's own key names.
        allow_missing: Accept model keys the checkpoint lacks (they keep their initial values).
        allow_unused: Accept checkpoint keys the model has no place for.
        what: Name of the checkpoint in error messages.
        assign: Make the checkpoint's tensors the module's (converted to the module's dtypes), instead of
            copying them: a module built on the meta device is filled without a second copy of its weights.
            Needs every key (``allow_missing`` would leave meta tensors behind).

    Returns:
        The :class:`LoadReport`.
    """
    report = compare(module, state_dict)
    problems = []
    if report.mismatched:
        problems.append(
            f"shapes differ for {_listing(report.mismatched)} (a checkpoint of another model size "
            f"or configuration?)"
        )
    if report.missing and not allow_missing:
        problems.append(f"{len(report.missing)} model keys are missing from it: {_listing(report.missing)}")
    if report.unused and not allow_unused:
        problems.append(f"{len(report.unused)} of its keys are unused: {_listing(report.unused)}")
    if problems:
        raise CheckpointError(f"cannot load {what}: " + "; ".join(problems))
    if assign and report.missing:
        raise ValueError("assign=True needs a checkpoint with every key of the module")
    taken = {k: v for k, v in state_dict.items() if k not in report.unused}
    if assign:  # assign keeps the file's dtypes: convert to the module's
        own = module.state_dict()
        taken = {k: v.to(own[k].dtype) for k, v in taken.items()}
    module.load_state_dict(taken, strict=False, assign=assign)
    return report
