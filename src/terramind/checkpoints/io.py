"""Reading weight files (torch pickle or safetensors), fetching them from the hub, and strict loading.

Every loader in the library goes through :func:`read_state_dict`, :func:`fetch` and :func:`load_into`, so
missing files, corrupt files, an offline hub and mismatched keys give the same specific, actionable errors.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from terramind.core.errors import CheckpointError, TerraMindError
from terramind.core.files import verify_zip

_SHOW = 8  # keys listed in an error message before "... and N more"
# What torch.load and safetensors raise for truncated, corrupt or foreign files (a junk legacy file even gives
# a KeyError, a truncated zip an OSError).
READ_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    SafetensorError,
)


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

    Every floating tensor returned is checked to be finite.

    Raises:
        CheckpointError: If the file is missing, unreadable (truncated, corrupt, not a checkpoint, or holding
            pickled objects other than tensors), not a mapping of names to tensors, or holds NaN/Inf values.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file {str(p)!r} does not exist: check the path passed as weights=")
    try:
        obj = _read_safetensors(p, keep) if p.suffix == ".safetensors" else _read_torch(p)
    except READ_ERRORS as err:
        raise unreadable(p, err) from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{str(p)!r} does not hold a state dict (a mapping of names to tensors)")
    state = {k: v for k, v in obj.items() if keep is None or keep(k)}
    check_finite(state, f"weights file {str(p)!r}")
    return state


def unreadable(
    path: Path, err: BaseException, *, what: str = "weights file", advice: str = "download or save it again"
) -> CheckpointError:
    """Describe a file torch or safetensors cannot read, without quoting torch's advice to unpickle it.

    Args:
        path: The file.
        err: What reading it raised (one of ``READ_ERRORS``).
        what: What the file is, for the message (``"weights file"``, ``"checkpoint"``).
        advice: What to do about it.
    """
    text = str(err)
    foreign = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if foreign:
        return CheckpointError(
            f"{what} {str(path)!r} holds objects that are not plain tensors ({foreign.group(1)}) and "
            f"is refused for safety (weights are read without running code from the file): save a plain "
            f"state dict (torch.save(model.state_dict(), path)) or a .safetensors file"
        )
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    lines = text.strip().splitlines() or ["no details"]
    detail = unpickler.group(1) if unpickler else lines[0]
    if "weights_only" in detail or (isinstance(err, pickle.UnpicklingError) and not unpickler):
        detail = "not a tensor pickle"
    return CheckpointError(
        f"cannot read {what} {str(path)!r} ({type(err).__name__}: {detail[:200]}); the file is "
        f"truncated, corrupt or not a PyTorch/safetensors checkpoint: {advice}"
    )


RESUME_ADVICE = "resume from an earlier checkpoint or start afresh"


def check_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Check, without loading it, that a training checkpoint to resume from is a whole file.

    Torch checkpoints are zip archives whose central directory is written last, so a file cut short (a
    copy interrupted, a run killed mid-save by an older version) fails here before any model is built.

    Args:
        path: The ``.ckpt`` file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: Missing, a folder, truncated, corrupt or not a checkpoint.
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"checkpoint {str(p)!r} is a folder: give the .ckpt file")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    try:
        verify_zip(p)
    except READ_ERRORS as err:
        raise unreadable(p, err, what="checkpoint", advice=RESUME_ADVICE) from err
    except TerraMindError as err:  # an empty archive
        raise CheckpointError(f"checkpoint {str(p)!r}: {err}; {RESUME_ADVICE}") from err
    return p


def read_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the model weights (``state_dict``) of a Lightning checkpoint; refuse a cut-short or foreign one.

    Args:
        path: A ``.ckpt`` written by ``fit``.

    Returns:
        Its ``state_dict``.

    Raises:
        CheckpointError: Missing, truncated, corrupt, holding objects other than plain data, or without a
            ``state_dict``.
    """
    p = check_checkpoint(path)
    try:
        loaded = torch.load(p, map_location="cpu", weights_only=True)
    except READ_ERRORS as err:
        raise unreadable(p, err, what="checkpoint", advice=RESUME_ADVICE) from err
    state = loaded.get("state_dict") if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(p)!r} has no 'state_dict': give a checkpoint written by fit")
    check_finite(state, f"checkpoint {str(p)!r}")
    return state


def check_finite(state: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse floating tensors holding NaN or infinite values, naming the first such tensor.

    Args:
        state: The state dict.
        what: The source, for messages (``"weights file 'x.pt'"``).

    Raises:
        CheckpointError: For the first tensor with non-finite values.
    """
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int(
                (~torch.isfinite(tensor)).sum()
            )  # only on the error path: one pass per tensor otherwise
            raise CheckpointError(
                f"{what}: tensor {name!r} holds {bad} NaN/Inf values: the file is corrupt or was saved from "
                f"a diverged run"
            )


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


def _check_dtypes(own: Mapping[str, torch.Tensor], taken: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse a non-floating tensor for a floating slot of the module (integer buffers may stay integer)."""
    for key, value in taken.items():
        if own[key].is_floating_point() and not value.is_floating_point():
            raise CheckpointError(
                f"{what}: tensor {key!r} has dtype {str(value.dtype).removeprefix('torch.')}, expected a "
                f"floating type: the file was not saved from this model's weights"
            )


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

    Shape mismatches always fail (they mean a checkpoint of another size or modality), and so does a
    non-floating tensor for a floating parameter or buffer (integer buffers may hold integers). Missing and
    unused keys fail unless explicitly allowed; either way they are reported.

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
    own = module.state_dict()
    taken = {k: v for k, v in state_dict.items() if k not in report.unused}
    _check_dtypes(own, taken, what)
    if assign:  # assign keeps the file's dtypes: convert to the module's
        taken = {k: v.to(own[k].dtype) for k, v in taken.items()}
    module.load_state_dict(taken, strict=False, assign=assign)
    return report
