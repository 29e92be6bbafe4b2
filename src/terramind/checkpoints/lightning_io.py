"""Lightning checkpoints written through :func:`terramind.core.files.atomic_path`.

A checkpoint is saved to a temporary sibling, fsynced, checked (a torch checkpoint is a zip archive whose
central directory sits at its end, so a truncated file fails to open) and only then renamed to its final name:
a crash or a full disk never leaves a truncated ``best-epoch=000.ckpt`` (or ``last.ckpt``) behind, and the
previous one stays intact. Reading one back (``--resume``, ``--ckpt_path``) turns a truncated or corrupt file
into a one-line :class:`~terramind.core.errors.CheckpointError` naming it. Pretraining, tokenizer training and
fine-tuning all use this plugin; Lightning is imported only here, so ``train`` and ``finetune`` share it
without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO

from terramind.checkpoints.io import READ_ERRORS, RESUME_ADVICE, unreadable
from terramind.core.files import atomic_path, verify_zip


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint IO that publishes a checkpoint only once it is completely and verifiably on disk."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` atomically to ``path`` (its folder is created).

        Raises:
            DiskFullError: The disk filled up; the previous checkpoint at ``path`` is untouched.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target, verify=verify_zip) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> Any:
        """Load a checkpoint to resume from; a missing file keeps Lightning's ``FileNotFoundError``.

        Raises:
            CheckpointError: The file is truncated, corrupt or not a checkpoint (named, with what to do).
        """
        kwargs = {} if map_location is None else {"map_location": map_location}
        try:
            return super().load_checkpoint(path, weights_only=weights_only, **kwargs)
        except FileNotFoundError:
            raise
        except READ_ERRORS as err:
            raise unreadable(Path(path), err, what="checkpoint", advice=RESUME_ADVICE) from err


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """Trainer ``plugins`` plus :class:`AtomicCheckpointIO`, unless they already name a checkpoint IO.

    Args:
        plugins: A trainer's ``plugins`` setting (None, one plugin, or a list).
    """
    given = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if any(isinstance(p, CheckpointIO) for p in given):
        return given
    return [*given, AtomicCheckpointIO()]
